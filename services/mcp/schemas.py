"""What the read API returns, described for LLM clients and JSON consumers.

The report output schema is the contract schema (shared/schema/report-1.2.json, which
describes every field: meaning and units) plus the two read-time fields and the server's
freshness thresholds, so MCP clients both validate and *understand* get_report's
structured output. The descriptions live in the contract only.
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

#: Read-time fields the API adds to a stored report (not part of the contract).
SERVED_FIELDS: dict[str, dict[str, Any]] = {
    "served_at": {
        "$ref": "#/$defs/isoUtc",
        "description": "ISO-8601 UTC time this answer was produced by the read API.",
    },
    "report_write_age_ms": {
        "type": ["integer", "null"],
        "minimum": 0,
        "description": (
            "Milliseconds since the publisher wrote this report, at serve time; null if the "
            "write time is unknown (the report is then served as down)."
        ),
    },
}

#: Field descriptions come from the contract schema; these say what only the server
#: knows (its freshness thresholds), keyed by dotted path.
READ_TIME_DOCS: dict[str, str] = {
    "ingestion.status": (
        "ok: fresh; degraded: the feed or the report is late (among others: report not "
        "rewritten for more than {stale_after_ms} ms), use with care; down: no usable fresh "
        "data (e.g. not rewritten for more than {down_after_ms} ms), do not rely on it."
    ),
}


def _describe(schema: dict[str, Any], thresholds: dict[str, int]) -> None:
    for path, text in READ_TIME_DOCS.items():
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
            "served_at": copy.deepcopy(SERVED_FIELDS["served_at"]),
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
