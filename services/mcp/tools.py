"""The MCP face of the read API: tools, a resource template, descriptions for LLMs.

No ``from __future__ import annotations`` here: the SDK reads the tool signatures
(Annotated descriptions) at registration time.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import orjson
from mcp.server.auth.provider import TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.caching import CacheHint
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.server.mcpserver.tools import Tool
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from services.mcp import history
from services.mcp.assets import (
    ASSET_JSON_SCHEMA,
    AssetReader,
    asset_list_schema,
    served_asset_schema,
)
from services.mcp.mcp_push import install_push
from services.mcp.metrics import observe
from services.mcp.prompts import register_guidance
from services.mcp.push import PushHub
from services.mcp.schemas import SymbolList, batch_schema, report_sections_schema
from services.mcp.sections import SECTIONS
from services.mcp.service import ReportService, server_version
from shared.errors import Context8Error, InvalidSymbolError, UnknownSymbolError

SERVER_NAME = "context8"

INSTRUCTIONS = """\
context8 serves fresh per-symbol crypto market-microstructure reports (order book, spread,
depth imbalance, trade flow, liquidity walls/vacuums, volume profile, anomalies, health
score) computed from live exchange data (Binance, Bybit).

- Call list_symbols first to see which symbols exist and how fresh each one is.
- get_report(symbol) returns one report; get_reports(symbols) several in one call.
- get_history(symbol, minutes, fields) returns a time series of report fields (1 s points
  up to 60 minutes, 1 min points up to 24 h).
- get_asset(asset) joins one base currency (e.g. BTC) across markets: per-market top of
  book, consolidated best bid/ask, perpetual basis vs spot, cross-market crosses;
  list_assets lists the assets.
- Symbols are case-insensitive (btcusdt == BTCUSDT), letters and digits only.
- Prices are in the quote currency (USDT for BTCUSDT); qty values are base-asset units;
  spread_bps is in basis points; *_ms fields are milliseconds.
- Prompts market_brief(symbol), liquidity_check(symbol, notional, side) and
  compare_symbols(symbols) are step-by-step recipes (which tools to call, how to read the
  fields); symbol arguments have completions.
- Freshness is recomputed on every read: if ingestion.status is not "ok" or data_age_ms
  is large, say so and treat the numbers as stale.
"""

GET_REPORT_DESCRIPTION = """\
Get the current market report for one symbol (e.g. BTCUSDT), as structured JSON.

Key fields: last_price, best_bid/best_ask {price (quote currency), qty (base units)},
spread_bps (basis points), mid_price, micro_price, depth (top 20 levels a side, totals,
imbalance in [-1, 1], positive = more bids), flow (trades/s, net taker flow in base units,
positive = buying), liquidity (walls, vacuums, volume profile POC/VAH/VAL), anomalies,
health.score (0-100).

Pass sections (e.g. ["l1", "depth"]) to get only those parts: a whole report is ~4 KB;
identity and freshness fields always come along.

Freshness: data_age_ms is how old the data is now (ms); ingestion.status is ok, degraded
(report late by more than a few seconds) or down (no fresh data; do not rely on it);
served_at and report_write_age_ms say when this answer was made and how long ago the report
was written. Unknown or invalid symbols return an error naming the closest known symbols.
"""

GET_REPORTS_DESCRIPTION = """\
Get the current reports for several symbols in one call (same report shape as get_report).
Pass symbols (case-insensitive, at most the configured batch size) or omit/empty them to get
every known symbol, one page (batch size) at a time: total says how many there are and
next_cursor, passed back as cursor, gets the next page. Symbols that cannot be served are
listed in errors with a reason (invalid_symbol, unknown_symbol, corrupt) instead of failing
the whole call.
"""

LIST_SYMBOLS_DESCRIPTION = """\
List every symbol context8 knows (registered by ingestion or with a published report) with
its freshness right now: status ok / degraded / down (as get_report would serve it) or
no_report (registered, nothing published yet), data_age_ms, report_write_age_ms (ms since
the report was last written) and generated_at (exchange event time). Also returns the
degraded/down thresholds in ms. At most 500 symbols per call: total says how many there
are; pass next_cursor back as cursor for the next page.
"""

GET_ASSET_DESCRIPTION = """\
Get one asset (base currency, e.g. BTC) across every market context8 carries (Binance spot,
USD(S)-M and COIN-M perpetuals, Bybit), joined at one exchange event time (generated_at).

markets: per market best_bid/best_ask {price (its quote currency), qty (base units, COIN-M
contracts converted)}, mid, data_age_ms, status (ok, stalled, down, ...) and basis_bps of
each perpetual against the spot mid (basis_reference). consolidated: the best bid and best
ask over the USD-quoted markets (USDT, USDC, USD at par). crossed/crosses: one market's bid
above another's ask, with the size available (base units) and the gap in bps.
freshness (ok, degraded, down) is recomputed at read time. Unknown assets return an error
naming the closest known ones; list_assets lists them.
"""

LIST_ASSETS_DESCRIPTION = """\
List every asset with an asset report or at least two registered markets: its member
symbols, freshness right now (ok, degraded, down, or no_report) and generated_at.
"""

RESOURCE_DESCRIPTION = (
    "The current market report of one symbol as JSON (same content as the get_report tool)."
)

#: The advertised contract of a symbol argument. Not enforced by pydantic (its errors
#: are raw validation dumps): ``normalize_symbol`` checks it and says what is expected.
SYMBOL_JSON_SCHEMA: dict[str, Any] = {
    "minLength": 1,
    "maxLength": 40,
    "pattern": "^[A-Za-z0-9]{1,40}$",
    "examples": ["BTCUSDT"],
}

SymbolArg = Annotated[
    str,
    Field(
        description="Instrument symbol: 1-40 ASCII letters and digits, case-insensitive "
        "(e.g. BTCUSDT or btcusdt).",
        json_schema_extra=SYMBOL_JSON_SCHEMA,
    ),
]
SymbolsArg = Annotated[
    list[str] | None,
    Field(
        description="Symbols to fetch (case-insensitive, at most the batch size, duplicates "
        "count once). Omit or pass [] for every known symbol, one page at a time."
    ),
]
SectionsArg = Annotated[
    list[str] | None,
    Field(
        description="Only these parts of the report (identity and freshness fields always "
        f"come along): any of {', '.join(SECTIONS)}. Omit for the whole report."
    ),
]
CursorArg = Annotated[
    str | None,
    Field(
        description="The next_cursor of the previous page (omit for the first page; "
        "get_reports: only without symbols)."
    ),
]

AssetArg = Annotated[
    str,
    Field(
        description="Asset (base currency): 1-20 ASCII letters and digits, case-insensitive, "
        "optionally prefixed asset: (e.g. BTC, eth or asset:BTC).",
        json_schema_extra=ASSET_JSON_SCHEMA,
    ),
]

READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
#: Human-readable tool titles (tools without an entry get one from their name).
TOOL_TITLES = {
    "get_report": "Market report",
    "get_reports": "Market reports (several symbols)",
    "list_symbols": "Symbols and their freshness",
    "get_history": "Report history (time series)",
    "get_asset": "Asset across markets",
    "list_assets": "Assets and their freshness",
}

#: A tool result whose structured content is a JSON object (validated against the
#: published output schema) and whose text is the same JSON, compact.
JsonResult = Annotated[CallToolResult, dict[str, Any]]


def json_result(payload: Any) -> CallToolResult:
    """Structured content plus its compact JSON as text (the SDK's default text is indent-2
    JSON: 11 KB for a report that is 3.8 KB compact, paid in tokens by every client)."""
    if isinstance(payload, BaseModel):
        payload = payload.model_dump(mode="json", by_alias=True)
    text = orjson.dumps(payload).decode()
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=payload)


def _structured_tool(
    fn: Callable[..., Any],
    description: str,
    output_schema: dict[str, Any] | None,
    title: str | None = None,
) -> Tool:
    # Every tool gets a title and the read-only hints by default (annotations are what
    # clients show and use to skip confirmation prompts).
    title = title or TOOL_TITLES.get(fn.__name__) or fn.__name__.replace("_", " ").capitalize()
    tool = Tool.from_function(
        fn,
        title=title,
        description=description,
        annotations=READ_ONLY.model_copy(update={"title": title}),
        structured_output=True,
    )
    if output_schema is not None:
        # Publish the precise contract schema (with field docs) instead of the generic
        # object schema derived from ``dict[str, Any]``; FuncMetadata reads it live.
        tool.fn_metadata.output_schema = output_schema
    return tool


def build_mcp_server(
    service: ReportService,
    transport: str,
    auth: AuthSettings | None = None,
    token_verifier: TokenVerifier | None = None,
    *,
    report_cycle_ms: int = 250,
    push: PushHub | None = None,
) -> MCPServer:
    """The MCPServer over ``service``; ``transport`` labels its request metrics;
    ``report_cycle_ms`` bounds the cache hint of a fresh report (C8_MCP_REPORT_CYCLE_MS)."""

    async def call(endpoint: str, op: Callable[[], Awaitable[Any]]) -> CallToolResult:
        try:
            with observe(transport, endpoint):
                return json_result(await op())
        except Context8Error as exc:
            # Anticipated failures: the model reads the message (is_error result).
            raise ToolError(str(exc)) from exc

    async def get_report(symbol: SymbolArg, sections: SectionsArg = None) -> JsonResult:
        return await call("get_report", lambda: service.get_report(symbol, sections))

    async def get_reports(symbols: SymbolsArg = None, cursor: CursorArg = None) -> JsonResult:
        return await call("get_reports", lambda: service.get_reports(symbols, cursor))

    async def list_symbols(cursor: CursorArg = None) -> Annotated[CallToolResult, SymbolList]:
        return await call("list_symbols", lambda: service.list_symbols(cursor))

    history_reader = history.HistoryReader(service)  # services/mcp/history.py

    async def get_history(
        symbol: SymbolArg,
        minutes: history.MinutesArg = history.DEFAULT_MINUTES,
        fields: history.FieldsArg = None,
    ) -> JsonResult:
        return await call(
            "get_history", lambda: history_reader.get_history(symbol, minutes, fields)
        )

    asset_reader = AssetReader(service)  # services/mcp/assets.py

    async def get_asset(asset: AssetArg) -> JsonResult:
        return await call("get_asset", lambda: asset_reader.get_asset(asset))

    async def list_assets() -> JsonResult:
        return await call("list_assets", asset_reader.list_assets)

    limits = (service.policy.stale_after_ms, service.policy.down_after_ms)
    server: MCPServer = MCPServer(
        SERVER_NAME,
        title="context8 market reports",
        instructions=INSTRUCTIONS,
        version=server_version(),
        tools=[
            _structured_tool(get_report, GET_REPORT_DESCRIPTION, report_sections_schema(*limits)),
            _structured_tool(get_reports, GET_REPORTS_DESCRIPTION, batch_schema(*limits)),
            _structured_tool(list_symbols, LIST_SYMBOLS_DESCRIPTION, None),
            _structured_tool(get_history, history.DESCRIPTION, history.output_schema()),
            _structured_tool(get_asset, GET_ASSET_DESCRIPTION, served_asset_schema(*limits)),
            _structured_tool(list_assets, LIST_ASSETS_DESCRIPTION, asset_list_schema(*limits)),
        ],
        # Reports change every few hundred ms: clients must not cache resource reads.
        cache_hints={"resources/read": CacheHint(ttl_ms=0, scope="private")},
        # OAuth resource-server mode (services/mcp/auth.py build_auth): the SDK serves the
        # protected-resource metadata and re-checks the caller on /mcp.
        auth=auth,
        token_verifier=token_verifier,
        # No SDK default listen handler: its in-process bus gets no report updates, so it
        # would advertise resources.subscribe and stay silent. install_push serves both
        # subscription styles from the Redis announcements (push=None: none advertised).
        subscriptions=False,
    )

    @server.resource(
        "report://{symbol}",
        name="report",
        title="Market report",
        description=RESOURCE_DESCRIPTION,
        mime_type="application/json",
    )
    async def report_resource(symbol: str) -> str:
        try:
            with observe(transport, "resource:report"):
                report = await service.get_report(symbol)
        except (InvalidSymbolError, UnknownSymbolError) as exc:
            raise ResourceNotFoundError(str(exc)) from exc
        except Context8Error as exc:
            raise ResourceError(str(exc)) from exc
        return orjson.dumps(report).decode()

    # Prompts, symbol completions, report cache hints (services/mcp/prompts.py).
    register_guidance(server, service, transport, report_cycle_ms=report_cycle_ms)
    if push is not None:
        install_push(server, service, push)  # services/mcp/mcp_push.py
    return server
