"""Tests wait one way: :func:`tests._wait.wait_for` (issue 11: "one wait_for in tests").

A deadline loop written out again (``while``, ``time.sleep``, ``time.monotonic``) is a
second copy of it, with its own way of failing; this test finds them from the source.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._wait import wait_for

TESTS = Path(__file__).resolve().parent
FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef


def _calls(node: ast.AST, module: str, name: str) -> bool:
    """Whether ``node`` calls ``module.name`` (``time.sleep``), nested functions included."""
    return any(
        isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr == name
        and isinstance(n.func.value, ast.Name)
        and n.func.value.id == module
        for n in ast.walk(node)
    )


def _own_nodes(function: FunctionNode) -> list[ast.AST]:
    """The nodes of ``function`` outside the functions defined within it."""
    found: list[ast.AST] = []
    stack: list[ast.AST] = list(function.body)
    while stack:
        node = stack.pop()
        found.append(node)
        if not isinstance(node, FunctionNode | ast.Lambda):
            stack.extend(ast.iter_child_nodes(node))
    return found


def deadline_loops(source: str) -> list[str]:
    """The functions of ``source`` that loop until a ``time.monotonic`` deadline, sleeping
    between tries (what ``wait_for`` does)."""
    found: list[str] = []
    for function in ast.walk(ast.parse(source)):
        if not isinstance(function, FunctionNode):
            continue
        own = _own_nodes(function)
        loops = [n for n in own if isinstance(n, ast.While) and _calls(n, "time", "sleep")]
        if loops and any(_calls(n, "time", "monotonic") for n in own):
            found.append(function.name)
    return found


def test_tests_wait_only_through_wait_for() -> None:
    found = [
        f"{path.relative_to(TESTS.parent)}:{name}"
        for path in sorted(TESTS.rglob("*.py"))
        for name in deadline_loops(path.read_text())
    ]
    assert found == ["tests/_wait.py:wait_for"]


def test_the_check_sees_a_deadline_loop_written_out_again() -> None:
    source = (
        "import time\n"
        "class Up:\n"
        "    def until(self, probe, timeout):\n"
        "        deadline = time.monotonic() + timeout\n"
        "        while time.monotonic() < deadline:\n"
        "            if probe():\n"
        "                return\n"
        "            time.sleep(2)\n"
        "def delegates(probe):\n"
        "    def check():\n"
        "        return probe()\n"
        "    return wait_for(check, 10, 'it')\n"
    )
    assert deadline_loops(source) == ["until"]


def test_wait_for_returns_the_first_truthy_value_and_names_what_it_waited_for() -> None:
    values: Iterator[object] = iter([None, 0, [], "ready"])
    assert wait_for(lambda: next(values), 5, "readiness", interval=0) == "ready"
    with pytest.raises(AssertionError, match=r"waiting for nothing \(last: None\)\nwhy"):
        wait_for(lambda: None, 0, "nothing", explain=lambda: "why")
