"""Report history: the ``get_history`` tool and ``GET /v1/reports/{symbol}/history``.

The publisher's fenced write appends the first report of each exchange-time second to
``keys.history(S)`` (1 h kept) and of each minute to ``keys.history_coarse(S)`` (24 h),
as compact rows (shared/history.py). A query for ``minutes`` <= 60 reads the 1 s stream,
longer ones the 1 min stream. The window ends at the newest row (exchange event time, so
a replayed or stalled feed still has a history; get_report says how fresh it is) and
starts ``minutes`` before it. At most ``MAX_POINTS`` points: a longer window is thinned
to the first row of each ``resolution_s`` bucket, ``resolution_s`` the smallest multiple
of the stream's resolution that fits. The answer is column-wise:

    {"symbol", "minutes", "resolution_s", "fields": [...], "points": n,
     "t": [event ms, ...], "values": {field: [value, ...]}, "served_at"}

Pure planning/selection functions + a thin reader over the report store's client.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field

from services.mcp.errors import InvalidArgumentError, ReportNotPublishedError
from services.mcp.service import ReportService, normalize_symbol
from shared import keys
from shared.errors import UnknownSymbolError
from shared.history import (
    HISTORY_COARSE_RESOLUTION_S,
    HISTORY_PATHS_V2,
    HISTORY_RESOLUTION_S,
    ROW_FIELD,
    event_ms_of,
    split_row,
)
from shared.report import iso_utc_from_ns

#: Fields a query may ask for (every path a current history row carries; rows written
#: before a field existed answer null for it).
HISTORY_FIELDS: tuple[str, ...] = HISTORY_PATHS_V2
#: Fields when none are named.
DEFAULT_FIELDS: tuple[str, ...] = ("mid_price", "spread_bps", "depth.imbalance", "flow.net_flow")
MIN_MINUTES = 1
#: The 1 min stream holds 24 h.
MAX_MINUTES = 1440
DEFAULT_MINUTES = 15
#: The 1 s stream holds 1 h: longer windows come from the 1 min stream.
FINE_MAX_MINUTES = 60
#: Most points (rows) one answer carries: with all 45 fields it stays under ~0.8 MB,
#: with the 4 default fields ~40 KB.
MAX_POINTS = 600

DESCRIPTION = f"""\
Get a compact time series of one symbol's report fields over the last `minutes`
({MIN_MINUTES}-{MAX_MINUTES}, default {DEFAULT_MINUTES}).

Resolution: 1 s for up to {FINE_MAX_MINUTES} minutes, 1 min beyond (24 h kept); each point
is the first report of its second/minute, and long windows are thinned to at most
{MAX_POINTS} points (resolution_s says the spacing). The window ends at the newest stored
point (exchange event time): call get_report to see how fresh the data is now.

fields: dotted paths, default {", ".join(DEFAULT_FIELDS)}. Any of: {", ".join(HISTORY_FIELDS)}.
Units as in get_report (prices in quote currency, qty in base units, spread_bps in basis
points, imbalance in [-1, 1]).

Answer (column-wise): t = event times (ms since epoch), values = {{field: [value per t]}},
null where the report had no value.
"""


@dataclass(frozen=True, slots=True)
class Plan:
    """Which stream to read and how to thin it."""

    coarse: bool
    #: The stream's own resolution (1 or 60 s).
    source_s: int
    #: Spacing of the answer's points (a multiple of ``source_s``).
    resolution_s: int
    #: Rows to read from the newest back (the window holds at most this many).
    count: int


def parse_minutes(raw: object) -> int:
    """``minutes`` as an int in range; InvalidArgumentError otherwise."""
    if raw is None or raw == "":
        return DEFAULT_MINUTES
    value: int | None = None
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, str) and raw.strip().isdigit():
        value = int(raw.strip())
    if value is None or not MIN_MINUTES <= value <= MAX_MINUTES:
        raise InvalidArgumentError(
            f"invalid minutes {str(raw)[:20]!r}: expected a whole number "
            f"{MIN_MINUTES}-{MAX_MINUTES} (1 s resolution up to {FINE_MAX_MINUTES}, 1 min beyond)"
        )
    return value


def parse_fields(raw: Sequence[object] | str | None) -> tuple[str, ...]:
    """The requested fields (comma-separated string or list), deduplicated, in order;
    InvalidArgumentError naming the valid ones for an unknown field."""
    if raw is None:
        return DEFAULT_FIELDS
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    fields: list[str] = []
    for item in items:
        name = item.strip() if isinstance(item, str) else item
        if name == "":
            continue
        if not isinstance(name, str) or name not in HISTORY_FIELDS:
            shown = repr(name[:60]) if isinstance(name, str) else type(name).__name__
            close: list[str] = []
            if isinstance(name, str):
                close = difflib.get_close_matches(name, HISTORY_FIELDS, n=3, cutoff=0.5)
                close += [f for f in HISTORY_FIELDS if f.endswith("." + name)]
            hint = f"did you mean {', '.join(dict.fromkeys(close))}? " if close else ""
            raise InvalidArgumentError(
                f"unknown history field {shown}; {hint}valid fields: {', '.join(HISTORY_FIELDS)}"
            )
        if name not in fields:
            fields.append(name)
    return tuple(fields) or DEFAULT_FIELDS


def plan(minutes: int, max_points: int = MAX_POINTS) -> Plan:
    """The stream and thinning for a window of ``minutes``."""
    coarse = minutes > FINE_MAX_MINUTES
    source_s = HISTORY_COARSE_RESOLUTION_S if coarse else HISTORY_RESOLUTION_S
    rows = minutes * 60 // source_s
    factor = max(1, -(-rows // max_points))  # ceil: buckets in the window <= max_points
    return Plan(coarse, source_s, source_s * factor, rows + 1)


def select(
    entries: Sequence[tuple[int, bytes]],
    fields: Sequence[str],
    minutes: int,
    resolution_s: int,
    max_points: int = MAX_POINTS,
) -> tuple[list[int], dict[str, list[Any]]]:
    """``(t, values)`` of ``entries`` (``(event ms, raw row)``, oldest first): rows after
    newest − ``minutes``, the first of each ``resolution_s`` bucket, at most the newest
    ``max_points``. Rows that cannot be decoded are left out."""
    if not entries:
        return [], {f: [] for f in fields}
    start = entries[-1][0] - minutes * 60_000
    bucket_ms = resolution_s * 1000
    kept: list[tuple[int, bytes]] = []
    last_bucket: int | None = None
    for event_ms, raw in entries:
        if event_ms <= start:
            continue
        bucket = event_ms // bucket_ms
        if bucket != last_bucket:
            kept.append((event_ms, raw))
            last_bucket = bucket
    t: list[int] = []
    values: dict[str, list[Any]] = {f: [] for f in fields}
    index: dict[tuple[str, ...], list[int]] = {}
    for event_ms, raw in kept[-max_points:]:
        split = split_row(raw)
        if split is None:
            continue
        paths, row = split
        positions = index.get(paths)
        if positions is None:
            lookup = {p: i for i, p in enumerate(paths)}
            positions = index[paths] = [lookup.get(f, -1) for f in fields]
        t.append(event_ms)
        for field, pos in zip(fields, positions, strict=True):
            values[field].append(row[pos] if pos >= 0 else None)
    return t, values


def series(
    symbol: str,
    minutes: int,
    p: Plan,
    fields: Sequence[str],
    t: list[int],
    values: dict[str, list[Any]],
    now_ms: int,
) -> dict[str, Any]:
    """The answer's JSON object."""
    return {
        "symbol": symbol,
        "minutes": minutes,
        "resolution_s": p.resolution_s,
        "fields": list(fields),
        "points": len(t),
        "t": t,
        "values": values,
        "served_at": iso_utc_from_ns(now_ms * 1_000_000),
    }


def output_schema() -> dict[str, Any]:
    """The published output schema of ``get_history``."""
    return {
        "type": "object",
        "required": ["symbol", "minutes", "resolution_s", "fields", "points", "t", "values"],
        "properties": {
            "symbol": {"type": "string", "description": "the symbol (upper case)"},
            "minutes": {"type": "integer", "description": "window length asked for (minutes)"},
            "resolution_s": {
                "type": "integer",
                "description": "spacing of the points in seconds (1 or 60, or a multiple "
                f"when the window holds more than {MAX_POINTS} points)",
            },
            "fields": {"type": "array", "items": {"type": "string"}},
            "points": {"type": "integer", "description": "number of points (length of t)"},
            "t": {
                "type": "array",
                "items": {"type": "integer"},
                "description": "exchange event time of each point, ms since epoch, ascending",
            },
            "values": {
                "type": "object",
                "description": "per field, one value per point (same order as t); null "
                "where the report had no value",
                "additionalProperties": {
                    "type": "array",
                    "items": {"type": ["number", "string", "boolean", "null"]},
                },
            },
            "served_at": {"type": "string", "description": "ISO-8601 UTC time of the answer"},
        },
    }


class HistoryReader:
    """get_history over the report store's Redis client (read-only)."""

    def __init__(self, service: ReportService, max_points: int = MAX_POINTS) -> None:
        self._service = service
        self._max_points = max_points

    async def get_history(
        self,
        raw_symbol: str,
        minutes: object = None,
        fields: Sequence[object] | str | None = None,
    ) -> dict[str, Any]:
        """The time series (raises InvalidSymbolError, InvalidArgumentError,
        UnknownSymbolError, StoreUnavailableError)."""
        symbol = normalize_symbol(raw_symbol)
        window = parse_minutes(minutes)
        wanted = parse_fields(fields)
        p = plan(window, self._max_points)
        key = keys.history_coarse(symbol) if p.coarse else keys.history(symbol)
        store = self._service.store
        with store.guard(f"reading the history of {symbol}"):
            reply: Any = await store.redis.xrevrange(key, "+", "-", count=p.count)
        entries = [
            (event_ms_of(entry_id), row)
            for entry_id, row_fields in reversed(reply or [])
            if isinstance(row := (row_fields or {}).get(ROW_FIELD.encode()), bytes)
        ]
        if not entries:
            known = await self._service.known_symbols()
            if symbol not in known:
                raise UnknownSymbolError(symbol, known)
            if not await store.read(symbol):
                raise ReportNotPublishedError(symbol, known)
        t, values = select(entries, wanted, window, p.resolution_s, self._max_points)
        return series(symbol, window, p, wanted, t, values, time.time_ns() // 1_000_000)


# --- the MCP tool's arguments (tools.py registers the tool) ---------------------------

#: Range advertised in the input schema; ``parse_minutes`` enforces it with a clear error
#: (pydantic's own would be a raw validation dump).
MinutesArg = Annotated[
    int,
    Field(
        description=f"Window length in minutes, {MIN_MINUTES}-{MAX_MINUTES} (1 s points up to "
        f"{FINE_MAX_MINUTES}, 1 min points beyond).",
        json_schema_extra={"minimum": MIN_MINUTES, "maximum": MAX_MINUTES},
    ),
]
FieldsArg = Annotated[
    list[str] | str | None,
    Field(
        description="Dotted report fields to return (a list, or one comma-separated string), "
        f"e.g. ['mid_price', 'depth.imbalance']. Omit for {', '.join(DEFAULT_FIELDS)}."
    ),
]
