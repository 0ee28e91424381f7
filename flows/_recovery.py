"""The recovery directory of a worker: created once, even by a cluster's processes at once.

Bytewax keeps a dataflow's snapshots in a fixed set of recovery partitions
(SQLite files) that the cluster's workers share: every process of a flow points
at the same directory, the workers elect one owner per partition, and a resumed
cluster may have a different number of workers than the one that wrote them (a
single-process flow's directory resumes a two-process cluster, and back). The
partition count is fixed at creation: choose the most workers a flow will have.

When several processes start together, each may find the directory missing:
the partitions are written in a private directory and renamed into place, so
exactly one set wins and nobody sees a half-created one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from bytewax.recovery import init_db_dir


def ensure_recovery_dir(db_dir: Path, partitions: int) -> bool:
    """Create ``db_dir`` with ``partitions`` recovery partitions unless it exists.

    Returns whether this call created it.
    """
    if db_dir.exists():
        return False
    db_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{db_dir.name}-", dir=db_dir.parent))
    try:
        init_db_dir(staging, partitions)  # type: ignore[no-untyped-call]  # untyped in its stubs
        try:
            os.rename(staging, db_dir)  # atomic; fails if another process got there first
        except OSError:
            if not db_dir.exists():
                raise
            return False
        return True
    finally:
        shutil.rmtree(staging, ignore_errors=True)
