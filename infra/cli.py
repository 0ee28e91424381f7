"""How every program of CryptoViz ends: one helper, one exit-code scheme.

Each ``python -m`` program (``api``, ``flows.run``, ``flows.import_prices``,
``spark_batch.run``, ``spark_batch.report``, ``infra.stack``, ``infra.migrate``,
``infra.topics``, ``infra.monitor``, ``infra.latency``, ``infra.timescale_pglite`` and
the benchmarks; ``tests/infra/test_cli.py`` finds them from the sources) parses its
flags, then hands its body to :func:`run_program`, which catches the project's
exception root (:class:`handlers.CryptoVizError`) once and turns it into one line on
stderr and an exit status (``infra.spark_cluster`` alone replaces itself with a Spark
daemon, after refusing a bad command with status 2):

====  ===========================================================================
code  meaning
====  ===========================================================================
0     done; for a program that runs until stopped: stopped on request (Ctrl-C,
      SIGTERM)
1     failed: a server unreachable, a migration or query failed, or an unexpected
      error (its traceback is printed)
2     usage or configuration error (:class:`handlers.ConfigError`): a bad flag, a
      malformed or missing variable, an unknown worker or topic; nothing ran
130   interrupted by Ctrl-C before a program that ends by itself had finished
====  ===========================================================================
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from enum import IntEnum

from handlers import ConfigError, CryptoVizError


class ExitCode(IntEnum):
    """The exit statuses of every program (see the module docstring)."""

    OK = 0
    FAILED = 1
    USAGE = 2
    INTERRUPTED = 130


def run_program(label: str, body: Callable[[], int | None]) -> int:
    """Run a program's ``body``; its errors become one ``label: detail`` line and a code.

    ``body`` returns its own status (``None`` means :attr:`ExitCode.OK`) for outcomes
    that are not exceptions (a query that failed, a check that did not pass).
    """
    try:
        code = body()
    except ConfigError as exc:
        print(f"{label}: {exc.detail}", file=sys.stderr, flush=True)
        return ExitCode.USAGE
    except CryptoVizError as exc:
        print(f"{label}: {exc.detail}", file=sys.stderr, flush=True)
        return ExitCode.FAILED
    except KeyboardInterrupt:
        print(f"{label}: interrupted", file=sys.stderr, flush=True)
        return ExitCode.INTERRUPTED
    except Exception:
        traceback.print_exc()
        print(f"{label}: unexpected error (traceback above)", file=sys.stderr, flush=True)
        return ExitCode.FAILED
    return ExitCode.OK if code is None else code
