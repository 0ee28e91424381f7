"""Fixtures shared with other suites: the flow tests' workers and the API tests' app factory."""

from tests.api.conftest import app_factory
from tests.flows.conftest import worker_env, workers

__all__ = ["app_factory", "worker_env", "workers"]
