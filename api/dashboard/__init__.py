"""The dashboard (the seeds' "Visionneuse Dynamique"), served by the API at ``/``.

A static page (``static/index.html``, ``app.js``, ``style.css``) that reads the REST
API under ``/api/v1/`` and follows the multiplexed WebSocket ``/ws/live``. The chart
library is not committed: ``npm ci --prefix api/dashboard`` installs the exact
``lightweight-charts`` version locked in ``package-lock.json`` into
``api/dashboard/node_modules`` (``make up`` and ``make test`` do it), and the API
serves its standalone build from there. When it is missing the page answers 503
saying which command installs it, in the API's JSON error body (``api.errors``).
"""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path
from typing import Final

from litestar import Response, Router, get
from litestar.datastructures import CacheControlHeader
from litestar.response import File
from litestar.static_files import create_static_files_router

from api.errors import Unavailable

HERE: Final = Path(__file__).resolve().parent
STATIC: Final = HERE / "static"
NODE_MODULES: Final = HERE / "node_modules"
# The UMD build: one file, defines window.LightweightCharts, needs nothing else.
CHART_JS: Final = Path("lightweight-charts/dist/lightweight-charts.standalone.production.js")
INSTALL_HINT: Final = (
    "the dashboard's chart library is not installed: run `npm ci --prefix api/dashboard` "
    "(make up and make test do it)"
)
# Everything comes from this origin; the page opens its WebSocket to the same host.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self' ws: wss:; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'none'"
)
PAGE_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

log = logging.getLogger("api.dashboard")


@cache
def _page(static: Path) -> bytes:
    return (static / "index.html").read_bytes()


def _missing(node_modules: Path) -> str | None:
    """Why the page cannot work, or ``None`` when the chart library is installed."""
    if not (node_modules / CHART_JS).is_file():
        return f"{INSTALL_HINT}; {node_modules / CHART_JS} is missing"
    return None


def _require(node_modules: Path) -> None:
    """Raise the API's 503 (its JSON error body, like every route) when the page cannot work."""
    reason = _missing(node_modules)
    if reason is not None:
        raise Unavailable(reason)


def dashboard_router(
    *, static: Path = STATIC, node_modules: Path = NODE_MODULES, path: str = "/"
) -> Router:
    """Routes of the page: ``/``, ``/dashboard/static/*`` and ``/dashboard/vendor/charts.js``."""
    problem = _missing(node_modules)
    if problem is not None:
        log.warning("dashboard: %s", problem)

    @get("/", include_in_schema=False, media_type="text/html; charset=utf-8")
    async def page() -> Response[bytes]:
        _require(node_modules)
        return Response(
            _page(static),
            media_type="text/html; charset=utf-8",
            headers={**PAGE_HEADERS, "Cache-Control": "no-cache"},
        )

    @get(
        "/dashboard/vendor/charts.js",
        include_in_schema=False,
        cache_control=CacheControlHeader(max_age=3600),
    )
    async def chart_library() -> File:
        _require(node_modules)
        return File(
            node_modules / CHART_JS,
            media_type="text/javascript; charset=utf-8",
            content_disposition_type="inline",
        )

    assets = create_static_files_router(
        path="/dashboard/static",
        directories=[static],
        name="dashboard-static",
        cache_control=CacheControlHeader(no_cache=True),
        include_in_schema=False,
    )
    return Router(path=path, route_handlers=[page, chart_library, assets], tags=["dashboard"])
