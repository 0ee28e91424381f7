"""One-line progress and failure messages for the command-line entry points."""

from __future__ import annotations

import sys

from handlers import CryptoVizError


class StackError(CryptoVizError):
    """A component of the embedded stack could not be prepared or started.

    ``detail`` says what failed and how to fix it; the program prints it and exits 1.
    """


def step(message: str) -> None:
    """Print one progress line (``==> message``), flushed at once."""
    print(f"==> {message}", file=sys.stderr, flush=True)
