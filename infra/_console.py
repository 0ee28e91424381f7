"""One-line progress and failure messages for the command-line entry points."""

from __future__ import annotations

import sys


class StackError(Exception):
    """A component of the embedded stack could not be prepared or started.

    ``detail`` says what failed and how to fix it; the CLI prints it and exits 1.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def step(message: str) -> None:
    """Print one progress line (``==> message``), flushed at once."""
    print(f"==> {message}", file=sys.stderr, flush=True)
