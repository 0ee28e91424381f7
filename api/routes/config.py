"""CRUD on the metadata tables: tracked cryptos and saved visualization parameters.

``crypto_configuration`` drives collection: the Kraken producer, the news producer
and the Spark job follow it live (:mod:`infra.tracking`), so a write here takes
effect within seconds without restarting anything. ``visualization_parameters`` is
stored and served for API clients only: the bundled dashboard does not read it.

Reads are public; writes need an API key (see :mod:`api.auth`): they sit on a
router of their own whose guard checks it. Bodies are
validated field by field: msgspec checks types, lengths, patterns and unknown
fields; symbols go through the coin table (stored canonical) and ``time_range``
must be a ``periode`` value the history endpoints accept.
"""

from __future__ import annotations

from typing import Annotated, Any

import psycopg
from litestar import Router, delete, get, patch, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, PathParameter, QueryParameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from api.auth import require_api_key
from api.context import ApiContext
from api.errors import BadRequest, Conflict, NotFound, error_responses
from api.models import (
    CryptoConfig,
    CryptoConfigCreate,
    CryptoConfigList,
    CryptoConfigPatch,
    CryptoConfigUpdate,
    VisualizationConfig,
    VisualizationConfigCreate,
    VisualizationConfigList,
    VisualizationConfigPatch,
)
from api.params import PERIODES
from api.queries import (
    CRYPTO_CONFIG_DELETE,
    CRYPTO_CONFIG_GET,
    CRYPTO_CONFIG_INSERT,
    CRYPTO_CONFIG_LIST,
    CRYPTO_CONFIG_UPDATE,
    VIZ_CONFIG_DELETE,
    VIZ_CONFIG_GET,
    VIZ_CONFIG_INSERT,
    VIZ_CONFIG_LIST,
    VIZ_CONFIG_LIST_BY_SYMBOL,
    VIZ_CONFIG_UPDATE,
)
from api.routes.common import WHOLE_LISTING

TIME_RANGES = (*PERIODES, "live")
READ_ERRORS = error_responses(400, 404, 429, 503)
WRITE_ERRORS = error_responses(400, 401, 404, 409, 429, 503)
# Shown in the OpenAPI (and Swagger UI's "Authorize") for every write.
API_KEY_SECURITY: list[dict[str, list[str]]] = [{"ApiKey": []}]
VizId = Annotated[int, PathParameter(ge=1, le=2**63 - 1, description="Visualization id.")]
SymbolFilter = Annotated[
    str | None, QueryParameter(description="Only this coin's visualizations.", max_length=40)
]


def _name(raw: str | None, field: str = "name") -> str | None:
    if raw is None:
        return None
    name = " ".join(raw.split())
    if not name:
        raise BadRequest(f"{field} must not be blank", parameter=field)
    if not name.isprintable():
        raise BadRequest(f"{field} must be printable text", parameter=field)
    return name


def _time_range(raw: str | None) -> str | None:
    if raw is not None and raw not in TIME_RANGES:
        raise BadRequest(
            f"time_range={raw[:40]!r} is not supported; accepted values: {', '.join(TIME_RANGES)}",
            parameter="time_range",
        )
    return raw


def _indicators(raw: list[str] | None) -> list[str] | None:
    if raw is None:
        return None
    # Order is the client's (drawing order); duplicates carry no meaning.
    return list(dict.fromkeys(raw))


# -- cryptos -------------------------------------------------------------------------


@get(
    "/crypto/",
    responses=READ_ERRORS,
    summary="Tracked cryptos",
    dependencies={"whole_listing": WHOLE_LISTING},
)
async def list_cryptos(
    ctx: NamedDependency[ApiContext], whole_listing: NamedDependency[None]
) -> CryptoConfigList:
    rows = await ctx.db.fetch(CRYPTO_CONFIG_LIST)
    return CryptoConfigList(count=len(rows), data=rows)


@get("/crypto/{symbol:str}/", responses=READ_ERRORS, summary="One tracked crypto")
async def get_crypto(ctx: NamedDependency[ApiContext], symbol: FromPath[str]) -> CryptoConfig:
    coin = ctx.symbols.coin(symbol)
    row = await ctx.db.fetch_one(CRYPTO_CONFIG_GET, {"symbol": coin})
    if row is None:
        raise NotFound(f"{coin} is not configured", parameter="symbol")
    return row


@post(
    "/crypto/",
    responses=WRITE_ERRORS,
    summary="Track a crypto",
    status_code=HTTP_201_CREATED,
    description="The producers and Spark follow this table within seconds: an active "
    "crypto's pairs are streamed from Kraken, news naming it is tagged with it, and its "
    "sentiment and predictions are computed. The symbol must be in the coin table "
    "(aliases are stored canonical); a coin it does not know gets a 400 saying how to "
    "add it. 409 if it is already configured.",
)
async def create_crypto(
    ctx: NamedDependency[ApiContext], data: JSONBody[CryptoConfigCreate]
) -> CryptoConfig:
    coin = ctx.symbols.trackable(data.symbol)
    row = await ctx.db.fetch_one(
        CRYPTO_CONFIG_INSERT, {"symbol": coin, "name": _name(data.name), "active": data.active}
    )
    if row is None:
        raise Conflict(f"{coin} is already configured; use PUT or PATCH to change it")
    return row


@put(
    "/crypto/{symbol:str}/",
    responses=WRITE_ERRORS,
    summary="Replace a tracked crypto's name and flag",
)
async def replace_crypto(
    ctx: NamedDependency[ApiContext], symbol: FromPath[str], data: JSONBody[CryptoConfigUpdate]
) -> CryptoConfig:
    return await _update_crypto(ctx, symbol, _name(data.name), data.active)


@patch(
    "/crypto/{symbol:str}/",
    responses=WRITE_ERRORS,
    summary="Change some fields of a tracked crypto",
)
async def patch_crypto(
    ctx: NamedDependency[ApiContext], symbol: FromPath[str], data: JSONBody[CryptoConfigPatch]
) -> CryptoConfig:
    return await _update_crypto(ctx, symbol, _name(data.name), data.active)


async def _update_crypto(
    ctx: ApiContext, symbol: str, name: str | None, active: bool | None
) -> CryptoConfig:
    coin = ctx.symbols.coin(symbol)
    row = await ctx.db.fetch_one(
        CRYPTO_CONFIG_UPDATE, {"symbol": coin, "name": name, "active": active}
    )
    if row is None:
        raise NotFound(f"{coin} is not configured", parameter="symbol")
    return row


@delete(
    "/crypto/{symbol:str}/",
    responses=WRITE_ERRORS,
    summary="Stop tracking a crypto",
    description="Removes its row. Beware: a table without any row means 'never "
    "configured', and the coin table's defaults are tracked then; to track nothing, "
    "set every crypto inactive instead.",
    status_code=HTTP_204_NO_CONTENT,
)
async def delete_crypto(ctx: NamedDependency[ApiContext], symbol: FromPath[str]) -> None:
    coin = ctx.symbols.coin(symbol)
    if await ctx.db.fetch_one(CRYPTO_CONFIG_DELETE, {"symbol": coin}) is None:
        raise NotFound(f"{coin} is not configured", parameter="symbol")


# -- visualizations ------------------------------------------------------------------


@get(
    "/visualization/",
    responses=READ_ERRORS,
    summary="Saved visualization parameters",
    description="Stored for API clients; the bundled dashboard does not read them (it "
    "draws no indicators, and its URL keeps the coin, pair and period).",
    dependencies={"whole_listing": WHOLE_LISTING},
)
async def list_visualizations(
    ctx: NamedDependency[ApiContext],
    whole_listing: NamedDependency[None],
    symbol: SymbolFilter = None,
) -> VisualizationConfigList:
    if symbol is None:
        rows = await ctx.db.fetch(VIZ_CONFIG_LIST)
    else:
        rows = await ctx.db.fetch(VIZ_CONFIG_LIST_BY_SYMBOL, {"symbol": ctx.symbols.coin(symbol)})
    return VisualizationConfigList(count=len(rows), data=rows)


@get(
    "/visualization/{visualization_id:int}/",
    responses=READ_ERRORS,
    summary="One saved visualization",
)
async def get_visualization(
    ctx: NamedDependency[ApiContext], visualization_id: VizId
) -> VisualizationConfig:
    row = await ctx.db.fetch_one(VIZ_CONFIG_GET, {"id": visualization_id})
    if row is None:
        raise NotFound(f"no visualization {visualization_id}", parameter="visualization_id")
    return row


@post(
    "/visualization/",
    responses=WRITE_ERRORS,
    summary="Save visualization parameters",
    status_code=HTTP_201_CREATED,
    description="409 if the name is taken.",
)
async def create_visualization(
    ctx: NamedDependency[ApiContext], data: JSONBody[VisualizationConfigCreate]
) -> VisualizationConfig:
    params = {
        "name": _name(data.name),
        "symbol": ctx.symbols.coin(data.symbol),
        "time_range": _time_range(data.time_range),
        "chart_type": data.chart_type,
        "indicators": _indicators(data.indicators),
    }
    row = await ctx.db.fetch_one(VIZ_CONFIG_INSERT, params)
    if row is None:
        raise Conflict(f"a visualization named {params['name']!r} already exists")
    return row


@put(
    "/visualization/{visualization_id:int}/",
    responses=WRITE_ERRORS,
    summary="Replace saved visualization parameters",
)
async def replace_visualization(
    ctx: NamedDependency[ApiContext],
    visualization_id: VizId,
    data: JSONBody[VisualizationConfigCreate],
) -> VisualizationConfig:
    return await _update_visualization(
        ctx,
        visualization_id,
        VisualizationConfigPatch(
            name=data.name,
            symbol=data.symbol,
            time_range=data.time_range,
            chart_type=data.chart_type,
            indicators=data.indicators,
        ),
    )


@patch(
    "/visualization/{visualization_id:int}/",
    responses=WRITE_ERRORS,
    summary="Change some saved parameters",
)
async def patch_visualization(
    ctx: NamedDependency[ApiContext],
    visualization_id: VizId,
    data: JSONBody[VisualizationConfigPatch],
) -> VisualizationConfig:
    return await _update_visualization(ctx, visualization_id, data)


async def _update_visualization(
    ctx: ApiContext, visualization_id: int, data: VisualizationConfigPatch
) -> VisualizationConfig:
    params: dict[str, Any] = {
        "id": visualization_id,
        "name": _name(data.name),
        "symbol": ctx.symbols.coin(data.symbol) if data.symbol is not None else None,
        "time_range": _time_range(data.time_range),
        "chart_type": data.chart_type,
        "indicators": _indicators(data.indicators),
    }
    try:
        row = await ctx.db.fetch_one(VIZ_CONFIG_UPDATE, params)
    except psycopg.errors.UniqueViolation:
        raise Conflict(f"a visualization named {params['name']!r} already exists") from None
    if row is None:
        raise NotFound(f"no visualization {visualization_id}", parameter="visualization_id")
    return row


@delete(
    "/visualization/{visualization_id:int}/",
    responses=WRITE_ERRORS,
    summary="Delete saved visualization parameters",
    status_code=HTTP_204_NO_CONTENT,
)
async def delete_visualization(ctx: NamedDependency[ApiContext], visualization_id: VizId) -> None:
    if await ctx.db.fetch_one(VIZ_CONFIG_DELETE, {"id": visualization_id}) is None:
        raise NotFound(f"no visualization {visualization_id}", parameter="visualization_id")


_writes = Router(
    path="/",
    route_handlers=[
        create_crypto,
        replace_crypto,
        patch_crypto,
        delete_crypto,
        create_visualization,
        replace_visualization,
        patch_visualization,
        delete_visualization,
    ],
    guards=[require_api_key],
    security=API_KEY_SECURITY,
)

config_router = Router(
    path="/api/v1/config",
    route_handlers=[
        list_cryptos,
        get_crypto,
        list_visualizations,
        get_visualization,
        _writes,
    ],
    tags=["configuration"],
)
