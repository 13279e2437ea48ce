"""Guidance for LLM clients: prompts, completions for symbol arguments.

Three prompts (``market_brief``, ``liquidity_check``, ``compare_symbols``) are recipes:
which tools to call with which arguments, and how to read the fields (units, freshness).
The builders and argument parsers are pure; ``register_guidance`` is the thin shell that
plugs them (and the completion handler) into an ``MCPServer``.

No ``from __future__ import annotations``: the SDK reads the prompt signatures
(Annotated descriptions) at registration time.
"""

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal

import structlog
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.prompts.base import Prompt, UserMessage
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    Completion,
    CompletionArgument,
    CompletionContext,
    PromptReference,
    ResourceTemplateReference,
)
from pydantic import Field

from services.mcp.cache_hints import report_cache_hints
from services.mcp.errors import InvalidArgumentError, StoreUnavailableError
from services.mcp.metrics import observe
from services.mcp.service import ReportService, normalize_symbol
from shared.errors import Context8Error

log = structlog.get_logger()

#: The protocol caps one completion answer at 100 values.
MAX_COMPLETIONS = 100
#: Levels a side the report lists in depth.bids / depth.asks.
DEPTH_LEVELS = 20
#: get_report sections (the ``sections`` argument of get_report).
BRIEF_SECTIONS = (
    "l1",
    "stats_24h",
    "depth",
    "flow",
    "liquidity",
    "anomalies",
    "health",
    "derivatives",
)
LIQUIDITY_SECTIONS = ("l1", "depth", "liquidity", "anomalies", "health")
#: get_history dotted fields the recipes ask for, and over how many minutes.
BRIEF_HISTORY_FIELDS = ("mid_price", "spread_bps", "depth.imbalance", "flow.net_flow")
COMPARE_HISTORY_FIELDS = ("mid_price", "spread_bps", "depth.imbalance")
HISTORY_MINUTES = 15

Side = Literal["buy", "sell"]


@dataclass(frozen=True, slots=True)
class GuideLimits:
    """The server settings the prompt texts quote."""

    stale_after_ms: int = 3000
    down_after_ms: int = 15000
    max_batch: int = 50


# --- argument parsing (pure) ----------------------------------------------------------


def parse_notional(raw: str) -> Decimal:
    """A positive amount in the quote currency: '25000', '1e5', '25,000', '25_000.5'."""
    text = raw.strip().replace(",", "").replace("_", "")
    error = InvalidArgumentError(
        f"invalid notional {raw!r}: expected a positive number in the quote currency "
        "(e.g. 25000 for 25,000 USDT on BTCUSDT)"
    )
    try:
        value = Decimal(text)
    except ArithmeticError:
        raise error from None
    if not value.is_finite() or value <= 0 or value > Decimal("1e15"):
        raise error
    return value


def parse_side(raw: str) -> Side:
    side = raw.strip().lower()
    if side == "buy":
        return "buy"
    if side == "sell":
        return "sell"
    raise InvalidArgumentError(f"invalid side {raw!r}: expected buy or sell")


def parse_symbol_list(raw: str, max_batch: int) -> list[str]:
    """'btcusdt, ETHUSDT SOLUSDT' -> ['BTCUSDT', 'ETHUSDT', 'SOLUSDT'] (deduplicated, in
    order); at least 2 and at most ``max_batch`` symbols."""
    symbols = list(dict.fromkeys(normalize_symbol(part) for part in _split_symbols(raw)))
    if len(symbols) < 2:
        raise InvalidArgumentError(
            f"compare_symbols needs at least 2 distinct symbols separated by commas "
            f"(e.g. 'BTCUSDT,ETHUSDT'), got {raw!r}"
        )
    if len(symbols) > max_batch:
        raise InvalidArgumentError(
            f"{len(symbols)} symbols given; compare_symbols takes at most {max_batch}"
        )
    return symbols


def _split_symbols(raw: str) -> list[str]:
    return [part for part in re.split(r"[,\s]+", raw) if part]


def format_amount(value: Decimal) -> str:
    """Plain positional notation (no exponent, no trailing zeros): 1E+5 -> '100000'."""
    text = format(value.normalize(), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


# --- prompt texts (pure) --------------------------------------------------------------


def _args(value: Mapping[str, Any]) -> str:
    """Tool arguments as JSON text the model can copy (double quotes, lists)."""
    parts = []
    for key, item in value.items():
        if isinstance(item, tuple | list):
            rendered = "[" + ", ".join(f'"{x}"' for x in item) + "]"
        elif isinstance(item, str):
            rendered = f'"{item}"'
        else:
            rendered = str(item)
        parts.append(f'"{key}": {rendered}')
    return "{" + ", ".join(parts) + "}"


def reading_guide(limits: GuideLimits) -> str:
    """How to read a context8 report: freshness rules first, then units and meanings."""
    return f"""\
How to read a context8 report:
- Freshness first. ingestion.status "ok" = fresh. "degraded" = late or partial (not \
rewritten for more than {limits.stale_after_ms} ms, or the feed/book is lagging; \
ingestion.reason says why when present): use with care and say the numbers may be stale. \
"down" = no usable fresh data (e.g. not rewritten for more than {limits.down_after_ms} ms): \
do not use its numbers, say the data is unavailable right now. Only present numbers as \
current when the status is "ok". data_age_ms = how old the data is right now, in \
milliseconds (a few hundred ms is normal).
- Units: every price (last_price, best_bid.price, best_ask.price, mid_price, micro_price, \
depth levels, walls, vacuums, volume profile) is in the quote currency (USDT for BTCUSDT); \
every qty is in base-asset units (BTC for BTCUSDT); notional (quote) = price x qty.
- spread_bps: (best ask - best bid) / mid_price in basis points (1 bp = 0.01 %).
- depth.bids / depth.asks: at most {DEPTH_LEVELS} levels a side, best price first. \
depth.total_bid_qty / total_ask_qty sum the listed levels only (base units). \
depth.imbalance is in [-1, 1]: positive = more resting bids than asks, negative = more asks.
- flow.orders_per_sec: trades per second; flow.net_flow: taker buy qty minus taker sell \
qty over the recent window (base units), positive = net buying pressure.
- liquidity.walls: unusually large resting orders (side, price, qty, severity); \
liquidity.vacuums: price ranges [from, to] with thin liquidity, where price can move fast; \
liquidity.volume_profile: POC = most traded price, VAH/VAL = value-area high/low over \
window_sec seconds.
- anomalies: spoofing, iceberg, flash_crash_risk, each with a severity.
- health.score: market quality 0-100 (higher is healthier), with its components.
- derivatives (live futures only; absent for spot): mark and index price, premium_bps, \
funding_rate (per funding interval) and next funding time, open_interest, liquidations_5m \
per liquidated side (long/short), each value with its own event time (at) and age_ms.
- change_24h_pct (percent), high_24h, low_24h, volume_24h: 24 h statistics.
- null means unknown, never zero: say "unknown" and do not guess a value."""


def market_brief_text(symbol: str, limits: GuideLimits) -> str:
    report_args = _args({"symbol": symbol, "sections": BRIEF_SECTIONS})
    history_args = _args(
        {"symbol": symbol, "minutes": HISTORY_MINUTES, "fields": BRIEF_HISTORY_FIELDS}
    )
    return f"""\
Write a short market brief for {symbol} from the context8 tools.

Steps:
1. Call get_report with {report_args}. If it returns an error (unknown symbol), tell the \
user, mention the close matches the error names (list_symbols lists every symbol) and stop.
2. Check freshness (rules below). If ingestion.status is "down", only say that {symbol}'s \
data is unavailable right now (give data_age_ms and ingestion.reason) and stop. If it is \
"degraded", go on but say the numbers may be stale.
3. Call get_history with {history_args} for the trend of the last {HISTORY_MINUTES} minutes \
(if it fails, write the brief without the trend).
4. Write the brief: price and 24 h change; spread (bps) and top of book; depth imbalance, \
walls and vacuums near the price; trade-flow direction and intensity; anomalies; \
health.score; for a perpetual, funding, premium, open interest and liquidations from \
derivatives (when present); the {HISTORY_MINUTES}-minute trend; freshness (status, \
data_age_ms) last. \
Give every number with its unit; never invent values that are null.

{reading_guide(limits)}"""


def liquidity_check_text(symbol: str, notional: Decimal, side: Side, limits: GuideLimits) -> str:
    amount = format_amount(notional)
    book, order, direction = (
        ("depth.asks", "lowest", "up") if side == "buy" else ("depth.bids", "highest", "down")
    )
    slippage = (
        "(VWAP - mid_price) / mid_price x 10000"
        if side == "buy"
        else "(mid_price - VWAP) / mid_price x 10000"
    )
    report_args = _args({"symbol": symbol, "sections": LIQUIDITY_SECTIONS})
    return f"""\
Estimate what a market {side} of {amount} (quote currency, e.g. USDT for BTCUSDT) of \
{symbol} would cost right now, from the order book context8 reports.

Steps:
1. Call get_report with {report_args}. If it returns an error, tell the user and stop.
2. Check freshness (rules below). If ingestion.status is "down", do not estimate: say the \
book is unavailable right now. If "degraded", estimate but say the book may be stale.
3. Walk {book} from the best ({order}) price {direction}, level by level, with remaining = \
{amount}: level notional = price x qty; take = min(remaining, level notional); filled qty \
+= take / price; spent += take; remaining -= take; stop as soon as remaining is 0.
   - average fill price VWAP = spent / filled qty (quote currency)
   - slippage vs mid in bps = {slippage} (it includes half the spread, spread_bps / 2)
   - worst price = price of the last level touched; levels used = how many levels you took
4. The report lists at most {DEPTH_LEVELS} levels a side. If they run out before remaining \
reaches 0 (sum of price x qty over {book} < {amount}), the visible book is not enough: say \
so, give how much of {amount} the visible levels cover and the slippage up to the last \
visible level as a lower bound only (the real cost is higher and unknown). Also check \
liquidity.vacuums just beyond the last level.
5. Caveats to state: the book changes every few hundred ms; fees are not included; hidden \
(iceberg) orders may improve the fill; walls flagged in anomalies as spoofing may vanish.

Answer with: filled qty (base units), VWAP, worst price, slippage in bps, levels used, \
whether the visible depth was enough, and the data freshness (status, data_age_ms).

{reading_guide(limits)}"""


def compare_symbols_text(symbols: list[str], limits: GuideLimits) -> str:
    names = ", ".join(symbols)
    reports_args = _args({"symbols": symbols})
    history_args = _args(
        {"symbol": "<SYMBOL>", "minutes": HISTORY_MINUTES, "fields": COMPARE_HISTORY_FIELDS}
    )
    return f"""\
Compare these symbols from the context8 tools: {names}.

Steps:
1. Call get_reports once with {reports_args}. Symbols listed in its errors \
(invalid_symbol, unknown_symbol, corrupt) could not be served: name them and compare the rest.
2. Check each report's freshness (rules below): leave out, and name, every report whose \
ingestion.status is "down"; mark "degraded" ones as possibly stale.
3. Compare in a table, one row per symbol: spread_bps; visible depth as quote notional \
(depth.total_bid_qty x mid_price and depth.total_ask_qty x mid_price: qty values are base \
units of different assets, so compare them only as quote notional); depth.imbalance; \
flow.orders_per_sec and flow.net_flow x mid_price (quote); change_24h_pct; health.score; \
anomalies; data_age_ms. Compare quote amounts only between symbols with the same quote \
currency.
4. If the user asks about trends, call get_history per symbol with {history_args}.
5. Summarise: tightest spread, deepest book, strongest buying or selling pressure, \
healthiest market, with the freshness caveats.

{reading_guide(limits)}"""


# --- completions (pure) ---------------------------------------------------------------


def complete_symbol(known: Iterable[str], partial: str) -> Completion:
    """Known symbols starting with ``partial`` (case-insensitive), sorted, at most 100."""
    prefix = partial.strip().upper()
    matches = sorted(symbol for symbol in set(known) if symbol.startswith(prefix))
    return _completion(matches)


def complete_symbol_list(known: Iterable[str], partial: str) -> Completion:
    """Completes the last item of a comma-separated list: 'btcusdt,et' ->
    'BTCUSDT,ETHUSDT', ...; symbols already in the list are not offered again."""
    # The same separators as parse_symbol_list: commas and/or spaces.
    last = re.split(r"[,\s]", partial)[-1]
    head = partial[: len(partial) - len(last)]
    chosen = [part.strip().upper() for part in _split_symbols(head)]
    prefix = ",".join(chosen) + "," if chosen else ""
    taken = set(chosen)
    matches = sorted(
        symbol
        for symbol in set(known)
        if symbol.startswith(last.strip().upper()) and symbol not in taken
    )
    return _completion([prefix + symbol for symbol in matches])


def _completion(matches: list[str]) -> Completion:
    return Completion(
        values=matches[:MAX_COMPLETIONS],
        total=len(matches),
        has_more=len(matches) > MAX_COMPLETIONS,
    )


SymbolKind = Literal["symbol", "symbols"]


def symbol_argument_kind(
    ref: PromptReference | ResourceTemplateReference, argument: str
) -> SymbolKind | None:
    """Which completion an argument gets: any prompt argument named ``symbol`` (one
    symbol) or ``symbols`` (comma-separated list), and the ``{symbol}`` variable of any
    resource template (report://{symbol} and any later one)."""
    if isinstance(ref, PromptReference):
        if argument == "symbols":
            return "symbols"
        return "symbol" if argument == "symbol" else None
    if argument == "symbol" and "{symbol}" in ref.uri:
        return "symbol"
    return None


# --- prompt registry ------------------------------------------------------------------

SymbolPromptArg = Annotated[
    str,
    Field(
        description="Instrument symbol, letters and digits, case-insensitive (e.g. BTCUSDT); "
        "completion lists the known symbols."
    ),
]
NotionalArg = Annotated[
    str,
    Field(
        description="Order size in the quote currency (USDT for BTCUSDT): a positive number, "
        "e.g. 25000."
    ),
]
SideArg = Annotated[
    str, Field(description="buy (takes the asks) or sell (takes the bids), case-insensitive.")
]
SymbolsPromptArg = Annotated[
    str,
    Field(
        description="At least 2 symbols separated by commas, e.g. BTCUSDT,ETHUSDT "
        "(case-insensitive; at most the configured batch size, C8_MCP_MAX_BATCH)."
    ),
]

#: name -> (title, description, required arguments).
PROMPTS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "market_brief": (
        "Market brief",
        "Brief on one symbol: which context8 tools to call (get_report with sections, "
        "get_history) and how to read price, spread, depth, flow, liquidity, anomalies, "
        "health and freshness.",
        ("symbol",),
    ),
    "liquidity_check": (
        "Liquidity check",
        "Estimate the cost of a market buy or sell of a notional (quote currency) by "
        "walking the order book levels get_report returns: VWAP, worst price, slippage in "
        "bps vs mid, and whether the 20 visible levels are enough.",
        ("symbol", "notional", "side"),
    ),
    "compare_symbols": (
        "Compare symbols",
        "Compare several symbols side by side from one get_reports call: spread, depth "
        "as quote notional, imbalance, flow, 24 h change, health, freshness.",
        ("symbols",),
    ),
}


def missing_prompt_arguments(params: Mapping[str, Any]) -> str | None:
    """The error for a prompts/get of one of our prompts that lacks a required argument
    (the SDK would answer an opaque internal error), else None."""
    spec = PROMPTS.get(str(params.get("name")))
    if spec is None:
        return None
    arguments = params.get("arguments")
    given = arguments if isinstance(arguments, Mapping) else {}
    missing = [arg for arg in spec[2] if arg not in given]
    if not missing:
        return None
    return (
        f"prompt {params['name']!r} needs argument(s) {', '.join(missing)} "
        f"(required: {', '.join(spec[2])})"
    )


async def require_prompt_arguments(
    ctx: ServerRequestContext[Any, Any], call_next: CallNext
) -> HandlerResult:
    """Server middleware: clear INVALID_PARAMS errors for missing prompt arguments."""
    if ctx.method == "prompts/get" and isinstance(ctx.params, Mapping):
        error = missing_prompt_arguments(ctx.params)
        if error is not None:
            raise MCPError(code=INVALID_PARAMS, message=error)
    return await call_next(ctx)


# --- the shell ------------------------------------------------------------------------


def register_guidance(
    server: MCPServer, service: ReportService, transport: str, *, report_cycle_ms: int = 250
) -> None:
    """Add the prompts, the symbol completion handler, the prompt-argument check and the
    report cache hints (``services/mcp/cache_hints.py``) to ``server``; ``transport``
    labels their request metrics."""
    limits = GuideLimits(
        stale_after_ms=service.policy.stale_after_ms,
        down_after_ms=service.policy.down_after_ms,
        max_batch=service.max_batch,
    )

    def render(name: str, build: Callable[[], str]) -> list[UserMessage]:
        try:
            with observe(transport, f"prompt:{name}"):
                return [UserMessage(build())]
        except Context8Error as exc:
            # MCPError passes through the SDK unchanged; anything else becomes an
            # opaque "internal error" the model cannot act on.
            raise MCPError(code=INVALID_PARAMS, message=str(exc)) from exc

    async def market_brief(symbol: SymbolPromptArg) -> list[UserMessage]:
        return render("market_brief", lambda: market_brief_text(normalize_symbol(symbol), limits))

    async def liquidity_check(
        symbol: SymbolPromptArg, notional: NotionalArg, side: SideArg
    ) -> list[UserMessage]:
        return render(
            "liquidity_check",
            lambda: liquidity_check_text(
                normalize_symbol(symbol), parse_notional(notional), parse_side(side), limits
            ),
        )

    async def compare_symbols(symbols: SymbolsPromptArg) -> list[UserMessage]:
        return render(
            "compare_symbols",
            lambda: compare_symbols_text(parse_symbol_list(symbols, limits.max_batch), limits),
        )

    functions: dict[str, Callable[..., Awaitable[list[UserMessage]]]] = {
        "market_brief": market_brief,
        "liquidity_check": liquidity_check,
        "compare_symbols": compare_symbols,
    }
    for name, (title, description, _required) in PROMPTS.items():
        server.add_prompt(
            Prompt.from_function(functions[name], name=name, title=title, description=description)
        )

    @server.completion()
    async def complete(
        ref: PromptReference | ResourceTemplateReference,
        argument: CompletionArgument,
        context: CompletionContext | None,
    ) -> Completion | None:
        kind = symbol_argument_kind(ref, argument.name)
        if kind is None:
            return None
        try:
            with observe(transport, "completion"):
                known = await service.known_symbols()
        except StoreUnavailableError as exc:
            # Completion is a typing aid: no suggestions beats an error popup.
            log.warning("completion_unavailable", error=str(exc))
            return None
        if kind == "symbols":
            return complete_symbol_list(known, argument.value)
        return complete_symbol(known, argument.value)

    server.middleware.append(require_prompt_arguments)
    server.middleware.append(report_cache_hints(report_cycle_ms))
