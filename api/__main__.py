"""``python -m api``: serve the API with uvicorn.

Reads ``DATABASE_URL`` / ``KAFKA_BOOTSTRAP_SERVERS`` (see :mod:`infra.settings`) and
the ``CRYPTOVIZ_API_*`` variables (see :mod:`api.settings`). With several workers
each process builds its own app through :func:`app_factory`, and they share one
metrics directory (``PROMETHEUS_MULTIPROC_DIR``, emptied at start; a temporary one
when unset) so that ``/metrics`` sums them (:mod:`api.telemetry`). Each worker
relays Kafka to its own WebSocket clients (:mod:`api.live`); uvicorn restarts a
worker that dies. Exit statuses: :mod:`infra.cli` (2 for a configuration error
such as no ``DATABASE_URL``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from pathlib import Path

import uvicorn
from litestar import Litestar
from opentelemetry import trace

from api.app import create_app
from api.settings import load_api_settings
from api.telemetry import build_tracer_provider
from infra.cli import run_program
from infra.settings import SettingsError, load_settings

WORKER_HEALTHCHECK_S = 60
"""How long a worker may take to answer uvicorn's liveness ping before it is killed and
replaced (uvicorn's default, 5 s, killed every worker in turn, without end, while the
whole machine was starved of CPU). A worker that exits is still replaced at once."""


def app_factory() -> Litestar:
    """The app of one worker process, configured from the environment."""
    settings = load_settings()
    api_settings = load_api_settings(topics=settings.kafka.topics)
    provider = build_tracer_provider(api_settings, settings.otlp_endpoint)
    # Global too, so libraries instrumented by OpenTelemetry join the same traces.
    trace.set_tracer_provider(provider)
    return create_app(settings, api_settings, tracer_provider=provider)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api", description=__doc__)
    parser.add_argument("--host", help="bind address (default CRYPTOVIZ_API_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default CRYPTOVIZ_API_PORT or 8000)")
    parser.add_argument("--workers", type=int, help="worker processes (CRYPTOVIZ_API_WORKERS)")
    parser.add_argument(
        "--urls", action="store_true", help="print where the dashboard, docs and metrics are"
    )
    args = parser.parse_args(argv)
    return run_program("python -m api", lambda: _urls(args) if args.urls else _serve(args))


def _urls(args: argparse.Namespace) -> None:
    settings = load_settings()
    api_settings = load_api_settings(topics=settings.kafka.topics)
    base = f"http://{args.host or api_settings.host}:{args.port or api_settings.port}"
    print(f"dashboard {base}/  ·  API docs {base}/docs  ·  metrics {base}/metrics")


def _serve(args: argparse.Namespace) -> None:
    settings = load_settings()
    api_settings = load_api_settings(topics=settings.kafka.topics)
    if settings.database.url is None:
        raise SettingsError("the API needs a database: set DATABASE_URL")
    workers = args.workers or api_settings.workers
    with contextlib.ExitStack() as stack:
        if workers > 1 or api_settings.metrics_dir is not None:
            # Before the workers start: prometheus_client reads it once, at import.
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(
                _empty_metrics_dir(api_settings.metrics_dir)
                if api_settings.metrics_dir is not None
                else stack.enter_context(tempfile.TemporaryDirectory(prefix="cryptoviz-api-"))
            )
        uvicorn.run(
            "api.__main__:app_factory",
            factory=True,
            host=args.host or api_settings.host,
            port=args.port or api_settings.port,
            workers=workers,
            ws="auto",
            log_level="info",
            timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
        )


def _empty_metrics_dir(path: Path) -> Path:
    """The values of a previous run would be summed with this one's: remove them."""
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    return path


if __name__ == "__main__":
    sys.exit(main())
