"""Schema-driven fuzzing (schemathesis) of every operation of the OpenAPI: no 5xx, ever.

The API runs under uvicorn on a seeded database; writes carry the API key so that
their bodies are validated for real rather than refused at the door. Bounded to a
fixed number of examples per operation so the run stays around a minute.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode

from api import create_app
from infra.settings import Settings
from tests.api import seed
from tests.api.conftest import API_KEY, NOW, serve, test_api_settings

EXAMPLES_PER_OPERATION = 40
KNOWN_PATHS: list[dict[str, Any]] = [
    {"symbol": "BTC", "base": "BTC", "quote": "USD", "visualization_id": 1},
    {"symbol": "xbt", "base": "XBT", "quote": "usd", "visualization_id": 2},
    {"symbol": "ethereum", "base": "ETH", "quote": "EUR", "visualization_id": 3},
]


@pytest.fixture(scope="module")
def api_schema(stack: Settings, module_db: str) -> Iterator[Any]:
    with psycopg.connect(module_db, autocommit=True) as conn:
        h = timedelta(hours=1)
        seed.tickers(conn, [(NOW - n * h, "BTC/USD", 42000 + n) for n in range(50)])
        seed.trades(conn, [(NOW - n * h, "BTC/USD", 1, 1, "b", n, f"k{n}") for n in range(50)])
        seed.sentiments(conn, [(NOW - h, NOW - 2 * h, "BTC", 0.5, "neutral", "rss", 0.5, 3)])
        seed.alerts(conn, [(NOW - h, "BTC/USD", 42000, 1.5, 1, "up", 41000, 300)])
        seed.articles(conn, [(NOW - h, "a", "t", None, None, None, ["BTC"], 0.5, "neutral", 0.1)])
    app = create_app(stack.with_servers(database=module_db), test_api_settings(), clock=lambda: NOW)
    with serve(app) as port:
        yield schemathesis.openapi.from_url(f"http://127.0.0.1:{port}/docs/openapi.json")


def test_no_input_yields_a_server_error(api_schema: Any) -> None:
    # Driven through schemathesis' strategies and hypothesis directly: one bounded run
    # per operation, both schema-conforming (positive) and violating (negative) inputs.
    failures: list[str] = []
    succeeded: set[str] = set()
    operations = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            run = _fuzz(operation, mode, failures, succeeded)
            try:
                run()
            except Unsatisfiable:
                # An operation without parameters or body has no invalid input to try.
                assert mode == GenerationMode.NEGATIVE, operation.label
    assert operations >= 25
    assert not failures, "\n".join(failures[:20])
    # The generated inputs reach past validation: many operations also succeeded.
    assert len(succeeded) >= operations // 2, sorted(succeeded)
    print(f"{operations} operations, {len(succeeded)} with 2xx answers")


def _fuzz(
    operation: Any, mode: GenerationMode, failures: list[str], succeeded: set[str]
) -> Callable[[], None]:
    strategy = st.builds(
        _with_known_path,
        operation.as_strategy(generation_mode=mode),
        st.sampled_from(KNOWN_PATHS),
        st.booleans(),
    )

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Case[Any]) -> None:
        status, failure = _check(case)
        if failure is not None:
            failures.append(failure)
        if status < 300:
            succeeded.add(operation.label)

    return run


def _with_known_path(case: Case[Any], known: dict[str, Any], use: bool) -> Case[Any]:
    """Half of the cases get a known symbol/pair/id in the path, so the query and body
    fuzzing reaches the database instead of stopping at a 404 for a random symbol."""
    if use and case.path_parameters:
        for name in case.path_parameters:
            if name in known:
                case.path_parameters[name] = known[name]
    return case


def _check(case: Case[Any]) -> tuple[int, str | None]:
    response = case.call(headers={"X-API-Key": API_KEY}, timeout=10)
    where = f"{case.method} {case.formatted_path} {case.query} {case.body!r}"
    if response.status_code >= 500:
        return response.status_code, f"{where} -> {response.status_code} {response.text[:300]}"
    if response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            return response.status_code, f"{where} -> {response.status_code}: no JSON error body"
        if body.get("status_code") != response.status_code or not isinstance(
            body.get("detail"), str
        ):
            return response.status_code, f"{where} -> {response.status_code} {response.text[:300]}"
    return response.status_code, None
