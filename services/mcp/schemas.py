"""What the read API returns, described for LLM clients and JSON consumers.

The report output schema is the contract schema (shared/schema/report-1.2.json) plus the
two documented read-time fields and a description of every field (meaning and units),
so MCP clients both validate and *understand* get_report's structured output.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, Field

from services.mcp.sections import HEADER
from shared.report import report_schema

REPORT_DESCRIPTION = (
    "One symbol's market-microstructure report (schema 1.2) as served now. Prices are in "
    "the quote currency (e.g. USDT for BTCUSDT); quantities (qty) are in base-asset units "
    "(e.g. BTC). Unknown values are null, never a placeholder. Freshness is recomputed at "
    "read time: check ingestion.status and data_age_ms before trusting the numbers."
)

#: JSON pointer-ish path (property names joined by '.') -> description.
FIELD_DOCS: dict[str, str] = {
    "schemaVersion": "Report schema version, always '1.2'.",
    "writer": "Who wrote this report.",
    "writer.nodeId": "Id of the calc node whose analytics produced the report.",
    "writer.writerToken": "Fencing token of that writer (grows on every ownership change).",
    "updatedAt": "Wall-clock time the publisher wrote the report, ms since the Unix epoch.",
    "symbol": "Instrument symbol, upper case (e.g. BTCUSDT).",
    "venue": "Exchange the data comes from: BINANCE or BYBIT.",
    "generated_at": "Exchange event time (ISO-8601 UTC) of the analytics cycle behind the report.",
    "data_age_ms": (
        "How old the data is right now, in milliseconds: the age it had when the report was "
        "written plus the time since the write (recomputed at read time)."
    ),
    "ingestion": "Health of the data feed behind this report.",
    "ingestion.status": (
        "ok: fresh; degraded: the feed or the report is late (among others: report not "
        "rewritten for more than {stale_after_ms} ms), use with care; down: no usable fresh "
        "data (e.g. not rewritten for more than {down_after_ms} ms), do not rely on it."
    ),
    "ingestion.last_update": "ISO-8601 UTC time of the newest market-data event ingested, or null.",
    "last_price": "Last trade price (quote currency), or null.",
    "change_24h_pct": "Price change over the last 24 h in percent (1.5 means +1.5 %), or null.",
    "high_24h": "Highest trade price over the last 24 h (quote currency), or null.",
    "low_24h": "Lowest trade price over the last 24 h (quote currency), or null.",
    "volume_24h": "Traded volume over the last 24 h, or null when it cannot be known yet.",
    "best_bid": "Best (highest) bid: price in quote currency, qty in base units; null if empty.",
    "best_ask": "Best (lowest) ask: price in quote currency, qty in base units; null if empty.",
    "spread_bps": "(best ask - best bid) / mid price, in basis points (1 bp = 0.01 %).",
    "mid_price": "(best bid + best ask) / 2, quote currency.",
    "micro_price": (
        "Size-weighted mid: (bid * ask_qty + ask * bid_qty) / (bid_qty + ask_qty); leans "
        "toward the side likely to trade next. Quote currency."
    ),
    "depth": "Top of the order book (up to 20 levels a side).",
    "depth.bids": "Bid levels, best first: price (quote currency), qty (base units).",
    "depth.asks": "Ask levels, best first: price (quote currency), qty (base units).",
    "depth.total_bid_qty": "Sum of qty over the listed bid levels (base units).",
    "depth.total_ask_qty": "Sum of qty over the listed ask levels (base units).",
    "depth.imbalance": (
        "(total_bid_qty - total_ask_qty) / (total_bid_qty + total_ask_qty), in [-1, 1]; "
        "positive means more resting bids than asks. Null when both sides are empty."
    ),
    "flow": "Recent trade flow.",
    "flow.orders_per_sec": "Trades per second over the recent window.",
    "flow.net_flow": (
        "Aggressive (taker) buy qty minus taker sell qty over the recent window, base units; "
        "positive means net buying pressure."
    ),
    "flow.cvd_30m": (
        "Cumulative volume delta: taker buy qty minus taker sell qty over the last 30 min "
        "of exchange time (base units; liquidation prints excluded). Positive = net buying."
    ),
    "flow.cvd_30m_window_sec": "Seconds cvd_30m actually covers (< 1800 early in the data).",
    "flow.vwap_5m": "Volume-weighted average trade price over the last 5 min (quote), or null.",
    "flow.vwap_5m_window_sec": "Seconds vwap_5m actually covers (< 300 early in the data).",
    "flow.vwap_30m": "Volume-weighted average trade price over the last 30 min (quote), or null.",
    "flow.vwap_30m_window_sec": "Seconds vwap_30m actually covers (< 1800 early in the data).",
    "flow.aggressor_buy_ratio_30s": (
        "Share of the last 30 s of traded qty bought by takers, 0..1 (0.5 = balanced); null "
        "without trades."
    ),
    "flow.aggressor_buy_ratio_30s_window_sec": "Seconds the ratio actually covers (<= 30).",
    "flow.large_trades_5m": (
        "The 5 largest trades of the last 5 min by notional, largest first: time (ISO UTC), "
        "side (taker buy/sell), price (quote), qty (base), notional (price x qty, quote; null "
        "for inverse contracts)."
    ),
    "flow.large_trades_5m_window_sec": "Seconds large_trades_5m actually covers (<= 300).",
    "flow.liquidations_30m": (
        "Liquidation prints of the last 30 min (where the venue marks them), left out of the "
        "flow measures: count and qty (base units)."
    ),
    "volatility": "Realised volatility and price impact over the last 5 min of whole seconds.",
    "volatility.rv_5m_bps": (
        "Realised volatility: 10^4 x sqrt(sum of squared 1 s log returns of the mid) over the "
        "last 5 min, in basis points (not annualised); null without data."
    ),
    "volatility.rv_5m_annualized_bps": (
        "rv_5m_bps scaled to a 365-day year (x sqrt(seconds per year / returns used)), bps."
    ),
    "volatility.rv_5m_window_sec": "One-second returns used (300 with a full window).",
    "volatility.kyle_lambda_5m": (
        "Kyle's lambda: price impact, the OLS slope of the 1 s mid change (bps) on the 1 s "
        "signed taker qty (base units), in bps per unit; null with < 30 s of data."
    ),
    "volatility.kyle_lambda_5m_window_sec": "Seconds used in the kyle_lambda_5m regression.",
    "liquidity": "Liquidity structure (optional block).",
    "liquidity.walls": "Unusually large resting orders: side, price (quote), qty (base), severity.",
    "liquidity.vacuums": "Price ranges [from, to] (quote currency) with unusually thin liquidity.",
    "liquidity.volume_profile": (
        "Traded volume by price bins of bin_width over window_sec seconds: POC = centre of the "
        "bin with the most volume, VAL/VAH = lower/upper edge of the value area (the bins "
        "holding 70 % of the volume); trade_count trades (at least 10)."
    ),
    "anomalies": (
        "Detected anomalies (optional): spoofing, iceberg or flash_crash_risk, with severity."
    ),
    "health": "Overall market-quality score 0-100 (higher is healthier) and its components.",
    "served_at": "ISO-8601 UTC time this answer was produced by the read API.",
    "report_write_age_ms": (
        "Milliseconds since the publisher wrote this report, at serve time; null if the write "
        "time is unknown (the report is then served as down)."
    ),
}

SERVED_FIELDS: dict[str, dict[str, Any]] = {
    "served_at": {"$ref": "#/$defs/isoUtc"},
    "report_write_age_ms": {"type": ["integer", "null"], "minimum": 0},
}


def _describe(schema: dict[str, Any], thresholds: dict[str, int]) -> None:
    for path, text in FIELD_DOCS.items():
        node = schema
        for part in path.split("."):
            node = node["properties"][part]
        node["description"] = text.format(**thresholds)


@cache
def _served_report_schema(stale_after_ms: int, down_after_ms: int) -> dict[str, Any]:
    schema = copy.deepcopy(report_schema())
    schema.pop("$id", None)  # this is a derived schema, not the contract document itself
    schema["title"] = "context8 market report (served)"
    schema["description"] = REPORT_DESCRIPTION
    schema["properties"].update(copy.deepcopy(SERVED_FIELDS))
    schema["required"] = [*schema["required"], *SERVED_FIELDS]
    _describe(schema, {"stale_after_ms": stale_after_ms, "down_after_ms": down_after_ms})
    return schema


def served_report_schema(stale_after_ms: int = 3000, down_after_ms: int = 15000) -> dict[str, Any]:
    """Output schema of get_report: the contract schema + served_at, report_write_age_ms
    (the thresholds only appear in the descriptions)."""
    return copy.deepcopy(_served_report_schema(stale_after_ms, down_after_ms))


def report_sections_schema(
    stale_after_ms: int = 3000, down_after_ms: int = 15000
) -> dict[str, Any]:
    """Output schema of get_report: the served report schema where only the header fields
    (identity and freshness) are required, since ``sections`` may leave the others out.
    A field that is present is still checked against its contract schema."""
    schema = served_report_schema(stale_after_ms, down_after_ms)
    schema["required"] = [f for f in schema["required"] if f in HEADER]
    schema["description"] += (
        " With sections, only the identity/freshness fields and the asked sections are present."
    )
    return schema


def batch_schema(stale_after_ms: int = 3000, down_after_ms: int = 15000) -> dict[str, Any]:
    """Output schema of get_reports: {served_at, reports: [report...], errors: [...]}."""
    report = served_report_schema(stale_after_ms, down_after_ms)
    defs = report.pop("$defs")
    dialect = report.pop("$schema")
    return {
        "$schema": dialect,
        "title": "context8 market reports (batch)",
        "type": "object",
        "required": ["served_at", "reports", "errors"],
        "$defs": {**defs, "report": report},
        "properties": {
            "served_at": {"$ref": "#/$defs/isoUtc", "description": FIELD_DOCS["served_at"]},
            "reports": {
                "type": "array",
                "items": {"$ref": "#/$defs/report"},
                "description": "One served report per symbol that has one, in request order.",
            },
            "errors": {
                "type": "array",
                "description": "Symbols that could not be served, with the reason.",
                "items": {
                    "type": "object",
                    "required": ["symbol", "status", "error"],
                    "properties": {
                        "symbol": {"type": "string"},
                        "status": {
                            "enum": ["invalid_symbol", "unknown_symbol", "corrupt"],
                            "description": "invalid_symbol: not A-Z/0-9; unknown_symbol: no "
                            "report for it (the message names close matches); corrupt: the "
                            "stored report is unreadable.",
                        },
                        "error": {"type": "string"},
                    },
                },
            },
            "total": {
                "type": "integer",
                "minimum": 0,
                "description": "Without named symbols: how many symbols are known in all.",
            },
            "next_cursor": {
                "type": ["string", "null"],
                "description": "Without named symbols: pass as cursor to get the next page; "
                "null on the last page.",
            },
        },
    }


SymbolFreshness = Literal["ok", "degraded", "down", "no_report"]


class SymbolStatus(BaseModel):
    """One known symbol and how fresh its report is right now."""

    symbol: str = Field(description="Instrument symbol, upper case.")
    venue: str | None = Field(description="Exchange (BINANCE, BYBIT), when known.")
    market: str | None = Field(description="Market type registered by ingest (e.g. usdm), if any.")
    status: SymbolFreshness = Field(
        description="Ingestion status the report would be served with now (ok, degraded, "
        "down), or no_report when the symbol is registered but has no report yet."
    )
    data_age_ms: int | None = Field(description="Served data age in ms; null without a report.")
    report_write_age_ms: int | None = Field(
        description="ms since the publisher last wrote the report; null without a report."
    )
    generated_at: str | None = Field(
        description="Exchange event time (ISO-8601 UTC) of the report; null without one."
    )


class SymbolList(BaseModel):
    """Every known symbol (registered by ingest or with a report) and its freshness."""

    served_at: str = Field(description="ISO-8601 UTC time of this answer.")
    stale_after_ms: int = Field(description="A report older than this (ms) is served degraded.")
    down_after_ms: int = Field(description="A report older than this (ms) is served down.")
    symbols: list[SymbolStatus] = Field(
        description="Sorted by symbol; at most 500 per answer (see next_cursor)."
    )
    total: int = Field(description="How many symbols are known in all.")
    next_cursor: str | None = Field(
        description="Pass as cursor to get the next page; null on the last page."
    )
