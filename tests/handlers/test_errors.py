"""One exception root: the tree in handlers/_errors.py's docstring is the real one."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

import handlers._errors
from handlers import ConfigError, CryptoVizError, HandlerError, UnknownTopicError

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("handlers", "flows", "spark_batch", "api", "infra")
_CLASS = re.compile(r"^class \w+\((?P<bases>[^)]*)\):", re.MULTILINE)
_LINE = re.compile(r"^(?P<indent>[ │├└─]*)(?P<name>[A-Z]\w+)\s")


def _documented_tree() -> dict[str, str | None]:
    """``{class name: parent name}`` as drawn in the module docstring."""
    doc = handlers._errors.__doc__ or ""
    block = doc.split("::", 1)[1].split("\n\n", 2)[1]
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in block.splitlines():
        match = _LINE.match(line.strip("\n")[4:])
        if match is None:
            continue  # a continuation line of a description
        depth = len(match["indent"])
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[match["name"]] = stack[-1][1] if stack else None
        stack.append((depth, match["name"]))
    return parents


def _all_subclasses(cls: type) -> set[type]:
    found: set[type] = set()
    sub: type
    for sub in cls.__subclasses__():
        if sub.__module__.split(".")[0] in PACKAGES:
            found |= {sub} | _all_subclasses(sub)
    return found


def _defining_modules(names: set[str]) -> list[str]:
    """Modules of the packages with a class deriving from a documented error (so that
    ``__subclasses__`` sees them whatever else the test session imported)."""
    found = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if "node_modules" in path.parts:
                continue
            for match in _CLASS.finditer(path.read_text()):
                bases = {b.strip().split(".")[-1] for b in match["bases"].split(",")}
                if bases & names:
                    found.append(".".join(path.relative_to(REPO).with_suffix("").parts))
                    break
    return found


def test_the_docstring_tree_is_every_error_and_its_real_parent() -> None:
    documented = _documented_tree()
    for module in _defining_modules(set(documented)):
        importlib.import_module(module)
    assert documented["CryptoVizError"] is None
    real = {cls.__name__: cls for cls in _all_subclasses(CryptoVizError)}
    assert set(documented) - {"CryptoVizError"} == set(real), (
        "handlers/_errors.py's tree and the real subclasses of CryptoVizError differ"
    )
    for name, parent in documented.items():
        if parent is not None:
            assert issubclass(real[name], real.get(parent, CryptoVizError)), (name, parent)


def test_only_the_root_stores_detail() -> None:
    owners = [
        path.relative_to(REPO)
        for package in PACKAGES
        for path in (REPO / package).rglob("*.py")
        if "self.detail =" in path.read_text()
    ]
    assert owners == [Path("handlers/_errors.py")]


@pytest.mark.parametrize("cls", [UnknownTopicError, ConfigError, HandlerError])
def test_every_error_carries_its_detail(cls: type[CryptoVizError]) -> None:
    error = cls("what went wrong; how to fix it")
    assert error.detail == str(error) == "what went wrong; how to fix it"
    assert isinstance(error, CryptoVizError)
