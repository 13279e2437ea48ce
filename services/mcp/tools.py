"""The MCP face of the read API: tools, a resource template, descriptions for LLMs.

No ``from __future__ import annotations`` here: the SDK reads the tool signatures
(Annotated descriptions) at registration time.
"""

from collections.abc import Awaitable, Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any, TypeVar

import orjson
from mcp.server.caching import CacheHint
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.server.mcpserver.tools import Tool
from mcp_types import ToolAnnotations
from pydantic import Field

from services.mcp.metrics import observe
from services.mcp.schemas import SymbolList, batch_schema, served_report_schema
from services.mcp.service import ReportService
from shared.errors import Context8Error, InvalidSymbolError, UnknownSymbolError

SERVER_NAME = "context8"

INSTRUCTIONS = """\
context8 serves fresh per-symbol crypto market-microstructure reports (order book, spread,
depth imbalance, trade flow, liquidity walls/vacuums, volume profile, anomalies, health
score) computed from live exchange data (Binance, Bybit).

- Call list_symbols first to see which symbols exist and how fresh each one is.
- get_report(symbol) returns one report; get_reports(symbols) several in one call.
- Symbols are case-insensitive (btcusdt == BTCUSDT), letters and digits only.
- Prices are in the quote currency (USDT for BTCUSDT); qty values are base-asset units;
  spread_bps is in basis points; *_ms fields are milliseconds.
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

Freshness: data_age_ms is how old the data is now (ms); ingestion.status is ok, degraded
(report late by more than a few seconds) or down (no fresh data; do not rely on it);
served_at and report_write_age_ms say when this answer was made and how long ago the report
was written. Unknown or invalid symbols return an error that lists the known symbols.
"""

GET_REPORTS_DESCRIPTION = """\
Get the current reports for several symbols in one call (same report shape as get_report).
Pass symbols (case-insensitive, at most the configured batch size) or omit/empty them to get
every known symbol. Symbols that cannot be served are listed in errors with a reason
(invalid_symbol, unknown_symbol, corrupt) instead of failing the whole call.
"""

LIST_SYMBOLS_DESCRIPTION = """\
List every symbol context8 knows (registered by ingestion or with a published report) with
its freshness right now: status ok / degraded / down (as get_report would serve it) or
no_report (registered, nothing published yet), data_age_ms, report_write_age_ms (ms since
the report was last written) and generated_at (exchange event time). Also returns the
degraded/down thresholds in ms.
"""

RESOURCE_DESCRIPTION = (
    "The current market report of one symbol as JSON (same content as the get_report tool)."
)

SymbolArg = Annotated[
    str,
    Field(
        description="Instrument symbol, letters and digits only, case-insensitive "
        "(e.g. BTCUSDT or btcusdt).",
        min_length=1,
        max_length=64,
    ),
]
SymbolsArg = Annotated[
    list[str] | None,
    Field(
        description="Symbols to fetch (case-insensitive). Omit or pass [] for every known symbol."
    ),
]

READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)

_T = TypeVar("_T")


def _server_version() -> str:
    try:
        return version("context8")
    except PackageNotFoundError:
        return "dev"


def _structured_tool(
    fn: Callable[..., Any], description: str, output_schema: dict[str, Any] | None
) -> Tool:
    tool = Tool.from_function(
        fn, description=description, annotations=READ_ONLY, structured_output=True
    )
    if output_schema is not None:
        # Publish the precise contract schema (with field docs) instead of the generic
        # object schema derived from ``dict[str, Any]``; FuncMetadata reads it live.
        tool.fn_metadata.output_schema = output_schema
    return tool


def build_mcp_server(service: ReportService, transport: str) -> MCPServer:
    """The MCPServer over ``service``; ``transport`` labels its request metrics."""

    async def call(endpoint: str, op: Callable[[], Awaitable[_T]]) -> _T:
        try:
            with observe(transport, endpoint):
                return await op()
        except Context8Error as exc:
            # Anticipated failures: the model reads the message (is_error result).
            raise ToolError(str(exc)) from exc

    async def get_report(symbol: SymbolArg) -> dict[str, Any]:
        return await call("get_report", lambda: service.get_report(symbol))

    async def get_reports(symbols: SymbolsArg = None) -> dict[str, Any]:
        return await call("get_reports", lambda: service.get_reports(symbols))

    async def list_symbols() -> SymbolList:
        return await call("list_symbols", service.list_symbols)

    limits = (service.policy.stale_after_ms, service.policy.down_after_ms)
    server: MCPServer = MCPServer(
        SERVER_NAME,
        title="context8 market reports",
        instructions=INSTRUCTIONS,
        version=_server_version(),
        tools=[
            _structured_tool(get_report, GET_REPORT_DESCRIPTION, served_report_schema(*limits)),
            _structured_tool(get_reports, GET_REPORTS_DESCRIPTION, batch_schema(*limits)),
            _structured_tool(list_symbols, LIST_SYMBOLS_DESCRIPTION, None),
        ],
        # Reports change every few hundred ms: clients must not cache resource reads.
        cache_hints={"resources/read": CacheHint(ttl_ms=0, scope="private")},
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

    return server
