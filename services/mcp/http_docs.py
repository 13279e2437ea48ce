"""What each JSON route of the HTTP API takes and answers: the single declaration the
OpenAPI document (``/openapi.json``) is built from. Schemas come from the same functions
that give the MCP tools their output schemas."""

from __future__ import annotations

from typing import Any

from services.mcp import history
from services.mcp.assets import ASSET_JSON_SCHEMA, asset_list_schema, served_asset_schema
from services.mcp.openapi import ERROR_SCHEMA, HEALTH_SCHEMA, Endpoint, Param, component
from services.mcp.schemas import SymbolList, batch_schema, report_sections_schema
from services.mcp.sections import SECTIONS

SYMBOL_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": "^[A-Za-z0-9]{1,40}$",
    "examples": ["BTCUSDT"],
}
SYMBOL = Param(
    "symbol",
    "path",
    "Instrument symbol, 1-40 ASCII letters and digits, case-insensitive (e.g. BTCUSDT).",
    SYMBOL_SCHEMA,
)
#: Answers the auth middleware may give on any guarded route (services/mcp/auth.py).
GUARD = {
    401: ("Missing or invalid bearer token (only when the server has credentials).", "Error"),
    403: ("The OAuth token lacks a required scope.", "Error"),
    429: ("Per-client rate limit; Retry-After says when to retry.", "Error"),
}
CURSOR = Param(
    "cursor",
    "query",
    "The next_cursor of the previous page (omit for the first page; /v1/reports: only "
    "without symbols).",
    SYMBOL_SCHEMA,
)
_ERRORS = {
    400: ("Invalid argument (symbol, section, batch size, ...).", "Error"),
    503: ("The report store (Redis) is unavailable; try again shortly.", "Error"),
    **GUARD,
}


def endpoints(max_batch: int) -> dict[str, Endpoint]:
    """Every documented JSON route (``max_batch``: C8_MCP_MAX_BATCH)."""
    return {
        "/v1/reports/{symbol}": Endpoint(
            summary="The current report of one symbol",
            description="Freshness is recomputed at read time (data_age_ms, ingestion.status). "
            "The weak ETag changes when the stored report or its served status does; send it "
            "back in If-None-Match to get 304 while nothing changed.",
            params=(
                SYMBOL,
                Param.csv(
                    "sections",
                    f"Comma-separated parts to return (any of {', '.join(SECTIONS)}); identity "
                    "and freshness fields always come along. Omit for the whole report.",
                    {"enum": list(SECTIONS)},
                ),
            ),
            responses={
                200: ("The served report.", "Report"),
                304: ("Not modified (If-None-Match matched the ETag).", None),
                404: ("Unknown symbol, or no report published yet.", "Error"),
                500: ("The stored report is corrupt.", "Error"),
                **_ERRORS,
            },
            headers={"ETag": "Weak tag of the stored report, its served status and the sections."},
        ),
        "/v1/reports/{symbol}/history": Endpoint(
            summary="A compact time series of report fields",
            params=(
                SYMBOL,
                Param(
                    "minutes",
                    "query",
                    f"How far back ({history.MIN_MINUTES}-{history.MAX_MINUTES} minutes, "
                    f"default {history.DEFAULT_MINUTES}).",
                    {
                        "type": "integer",
                        "minimum": history.MIN_MINUTES,
                        "maximum": history.MAX_MINUTES,
                    },
                ),
                Param.csv(
                    "fields",
                    "Comma-separated dotted field paths (default: "
                    f"{', '.join(history.DEFAULT_FIELDS)}).",
                    {"enum": list(history.HISTORY_FIELDS)},
                ),
            ),
            responses={
                200: ("The series.", "History"),
                404: ("Unknown symbol, or no report published yet.", "Error"),
                **_ERRORS,
            },
        ),
        "/v1/reports": Endpoint(
            summary="Several reports in one call",
            description="symbols=A,B names at most C8_MCP_MAX_BATCH distinct symbols. Without "
            "symbols: every known symbol, one page (the batch size) at a time; pass next_cursor "
            "back as cursor for the next page.",
            params=(
                Param.csv(
                    "symbols",
                    f"Comma-separated symbols (case-insensitive), at most {max_batch} "
                    "distinct; one that is not a valid symbol comes back in errors "
                    "(invalid_symbol) instead of failing the call.",
                    {"type": "string"},
                ),
                CURSOR,
            ),
            responses={200: ("Reports and per-symbol errors.", "ReportBatch"), **_ERRORS},
        ),
        "/v1/symbols": Endpoint(
            summary="Every known symbol and how fresh its report is",
            description="At most 500 symbols per answer; pass next_cursor back as cursor "
            "for the next page.",
            params=(CURSOR,),
            responses={200: ("Symbols and freshness.", "SymbolList"), **_ERRORS},
        ),
        "/v1/assets/{asset}": Endpoint(
            summary="One asset across markets (the asset report)",
            description="Per-market top of book in base units, consolidated best bid/ask over "
            "the USD-quoted markets, basis of each perpetual vs spot, cross-market crosses "
            "(docs/analytics.md, 'Asset report'). freshness is recomputed at read time.",
            params=(
                Param(
                    "asset",
                    "path",
                    "Asset (base currency), 1-20 ASCII letters and digits, case-insensitive, "
                    "optionally prefixed asset: (e.g. BTC).",
                    ASSET_JSON_SCHEMA,
                ),
            ),
            responses={
                200: ("The served asset report.", "Asset"),
                404: ("Unknown asset, or no asset report published yet.", "Error"),
                500: ("The stored asset report is corrupt.", "Error"),
                **_ERRORS,
            },
        ),
        "/v1/assets": Endpoint(
            summary="Every known asset and how fresh its report is",
            responses={200: ("Assets and freshness.", "AssetList"), **_ERRORS},
        ),
        "/healthz": Endpoint(
            summary="Liveness: Redis reachable, and how many reports are fresh",
            responses={
                200: ("Redis answers; status sums up the reports.", "Health"),
                503: ("The report store (Redis) is unavailable.", "Error"),
            },
        ),
        "/readyz": Endpoint(
            summary="Readiness: Redis reachable and at least one report served ok",
            responses={
                200: ("Ready.", "Health"),
                503: ("Not ready (no fresh report) or Redis unavailable.", "HealthOrError"),
            },
        ),
    }


def schemas(stale_after_ms: int, down_after_ms: int) -> dict[str, dict[str, Any]]:
    """The component schemas ENDPOINTS name."""
    return {
        "Report": report_sections_schema(stale_after_ms, down_after_ms),
        "ReportBatch": batch_schema(stale_after_ms, down_after_ms),
        "SymbolList": component(SymbolList),
        "History": history.output_schema(),
        "Asset": served_asset_schema(stale_after_ms, down_after_ms),
        "AssetList": asset_list_schema(stale_after_ms, down_after_ms),
        "Health": HEALTH_SCHEMA,
        "Error": ERROR_SCHEMA,
        # A 503 of /readyz: not ready (Health) or Redis down (Error).
        "HealthOrError": {
            "anyOf": [
                {"$ref": "#/components/schemas/Health"},
                {"$ref": "#/components/schemas/Error"},
            ]
        },
    }
