"""Locate a Java 17+ runtime for the Kafka broker and Spark."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from infra._console import StackError

MIN_JAVA = 17


def find_java() -> Path:
    """Return the ``java`` executable, checking it is version 17 or newer."""
    home = os.environ.get("JAVA_HOME")
    candidate = Path(home) / "bin" / "java" if home else None
    java = str(candidate) if candidate and candidate.exists() else shutil.which("java")
    if java is None:
        raise StackError(
            "Java 17+ not found: install a JDK (e.g. `apt-get install openjdk-17-jre-headless`) "
            "or set JAVA_HOME"
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)', out.stderr + out.stdout)
    major = int(match.group(1)) if match else 0
    if major < MIN_JAVA:
        raise StackError(f"Java {MIN_JAVA}+ required, found {major or 'unknown'} at {java}")
    return Path(java)
