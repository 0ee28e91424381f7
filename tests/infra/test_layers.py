"""``infra`` and ``handlers`` are the bottom layers: they import no application package.

Read from the source (AST), so an import inside a function, made only when some
command runs, counts as much as one at the top of the module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
APPLICATION = frozenset({"api", "flows", "spark_batch", "bench", "tests"})
BELOW = {
    "infra": APPLICATION,
    "handlers": APPLICATION | {"infra"},
}


def imported(path: Path) -> set[str]:
    """Top-level packages ``path`` imports, wherever in the module the import stands."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value.split(".")[0])
    return found


def sources(package: str) -> list[Path]:
    return sorted(p for p in (REPO / package).rglob("*.py") if "node_modules" not in p.parts)


@pytest.mark.parametrize("package", sorted(BELOW))
def test_the_bottom_layers_import_no_application_package(package: str) -> None:
    paths = sources(package)
    assert paths
    wrong = {str(path.relative_to(REPO)): sorted(imported(path) & BELOW[package]) for path in paths}
    assert {k: v for k, v in wrong.items() if v} == {}


def test_the_check_sees_lazy_imports(tmp_path: Path) -> None:
    module = tmp_path / "lazy.py"
    module.write_text(
        "import os\n"
        "def up():\n"
        "    from api.settings import load_api_settings\n"
        "    import flows.registry\n"
        "    importlib.import_module('spark_batch.run')\n"
    )
    assert imported(module) >= {"api", "flows", "spark_batch", "os"}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, full module name) of each absolute import of ``path``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def test_no_module_imports_bytewax_internals() -> None:
    """``bytewax.run`` is the public home of ``cli_main``; ``bytewax._bytewax`` is the
    compiled module behind it, free to change in any release (issue 11 §6)."""
    private = [
        f"{path.relative_to(REPO)}:{line} {module}"
        for package in ("handlers", "infra", *sorted(APPLICATION))
        for path in sources(package)
        for line, module in imported_modules(path)
        if module.split(".")[0] == "bytewax" and "._" in module
    ]
    assert private == []
