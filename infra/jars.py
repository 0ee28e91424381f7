"""Pinned jar sets fetched from Maven Central into a cache outside the repo.

Each set is described by ``infra/jars/<name>/pom.xml``; its exact versions are
the pin. The resolved jars land in ``<cache_dir>/jars/<name>-<pom digest>/`` so
changing the pom fetches a fresh set and an unchanged pom never touches the
network again.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from infra._console import StackError, step

POM_DIR = Path(__file__).resolve().parent / "jars"
_DONE = ".complete"


def jar_dir(name: str, cache_dir: Path) -> Path:
    pom = POM_DIR / name / "pom.xml"
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:12]
    return cache_dir / "jars" / f"{name}-{digest}"


def ensure_jars(name: str, cache_dir: Path) -> Path:
    """Return the directory holding jar set ``name``, downloading it once if needed."""
    pom = POM_DIR / name / "pom.xml"
    if not pom.exists():
        raise StackError(f"unknown jar set {name!r}: {pom} does not exist")
    target = jar_dir(name, cache_dir)
    if (target / _DONE).exists():
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError(
            f"Maven (mvn) not found, needed once to fetch the {name} jars: "
            "`apt-get install maven`, or copy the jars into " + str(target)
        )
    step(f"downloading {name} jars from Maven Central into {target}")
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    result = subprocess.run(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={tmp}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise StackError(f"fetching {name} jars with Maven failed:\n{tail}")
    (tmp / _DONE).write_text(pom.read_text())
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target
