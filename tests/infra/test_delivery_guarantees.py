"""Every Kafka producer of the project waits for all in-sync replicas and is idempotent.

On a replicated cluster (``min.insync.replicas=2``) ``acks=all`` is what makes an
acknowledged message survive a broker's loss, and idempotence is what keeps the
producer's retries during a failover from writing it twice. The check reads the
sources: every ``Producer(...)`` and every Bytewax Kafka output (``kop.output``)
in the application packages, with its configuration written where it is built.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("flows", "spark_batch", "api", "infra", "handlers")


def _config_dict(call: ast.Call, scope: ast.AST) -> ast.Dict | None:
    """The dict literal configuring ``call``: its argument, or the variable it names."""
    arg: ast.expr | None = call.args[0] if call.args else None
    for keyword in call.keywords:
        if keyword.arg == "add_config":
            arg = keyword.value
    if isinstance(arg, ast.Dict):
        return arg
    if isinstance(arg, ast.Name):
        for node in ast.walk(scope):
            if isinstance(node, ast.AnnAssign | ast.Assign):
                targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
                named = any(isinstance(t, ast.Name) and t.id == arg.id for t in targets)
                if named and isinstance(node.value, ast.Dict):
                    return node.value
    return None


def _settings(config: ast.Dict) -> dict[str, object]:
    return {
        str(k.value): v.value
        for k, v in zip(config.keys, config.values, strict=True)
        if isinstance(k, ast.Constant) and isinstance(v, ast.Constant)
    }


def _producers() -> list[tuple[str, ast.Call, ast.AST]]:
    found: list[tuple[str, ast.Call, ast.AST]] = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            for scope in ast.walk(tree):
                if not isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                for node in ast.walk(scope):
                    if not isinstance(node, ast.Call):
                        continue
                    func = node.func
                    name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                    owner = getattr(getattr(func, "value", None), "id", "")
                    if name == "Producer" or (name == "output" and owner == "kop"):
                        where = f"{path.relative_to(REPO)}:{node.lineno}"
                        found.append((where, node, scope))
    return found


def test_every_producer_waits_for_all_replicas_and_is_idempotent() -> None:
    producers = _producers()
    # The producer sink, the dead-letter publisher and output, Spark's result publisher.
    assert len(producers) >= 4, [where for where, _, _ in producers]
    for where, call, scope in producers:
        config = _config_dict(call, scope)
        assert config is not None, f"{where}: configuration not written where it is built"
        settings = _settings(config)
        assert settings.get("acks") == "all", f"{where}: acks={settings.get('acks')!r}"
        assert settings.get("enable.idempotence") in (True, "true"), f"{where}: not idempotent"
