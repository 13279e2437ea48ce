"""Report history rows: the compact projection the publisher appends, the reader decodes.

Pure (no Redis). The fenced publish script (shared/lua/fenced_publish.lua) appends a row to
``keys.history(S)`` for the first accepted report of each exchange-time second and to
``keys.history_coarse(S)`` for the first of each minute; the stream id is the report's
event time (``<event_ms>-0``), so ids are the time axis and only grow.

A row is one stream field ``r``: the orjson array ``[version, value, ...]`` with one value
per path of ``HISTORY_PATHS[version]``, in that order (no field names stored per row). A
value is a number, a short string, or null (absent, or not a scalar). Adding paths means a
new version with its own list; readers decode every version they know.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

#: The row layout this code writes.
HISTORY_VERSION = 2

#: Version 1: every scalar leaf of report schema 1.1 worth a time series (not the arrays:
#: depth levels, walls, vacuums, anomalies, health components; not identity fields).
HISTORY_PATHS_V1: tuple[str, ...] = (
    "last_price",
    "mid_price",
    "micro_price",
    "spread_bps",
    "best_bid.price",
    "best_bid.qty",
    "best_ask.price",
    "best_ask.qty",
    "depth.total_bid_qty",
    "depth.total_ask_qty",
    "depth.imbalance",
    "flow.orders_per_sec",
    "flow.net_flow",
    "liquidity.volume_profile.POC",
    "liquidity.volume_profile.VAH",
    "liquidity.volume_profile.VAL",
    "liquidity.volume_profile.window_sec",
    "liquidity.volume_profile.trade_count",
    "health.score",
    "ingestion.status",
    "data_age_ms",
    "change_24h_pct",
    "high_24h",
    "low_24h",
    "volume_24h",
)

#: Version 2: version 1 plus the schema 1.2 series (flow measures, volatility) and the
#: live derivatives section's values (null in reports without them). Window lengths,
#: per-value event times and ages are left out: the row's id is its time axis.
HISTORY_PATHS_V2: tuple[str, ...] = (
    *HISTORY_PATHS_V1,
    "flow.cvd_30m",
    "flow.vwap_5m",
    "flow.vwap_30m",
    "flow.aggressor_buy_ratio_30s",
    "flow.liquidations_30m.count",
    "flow.liquidations_30m.qty",
    "volatility.rv_5m_bps",
    "volatility.rv_5m_annualized_bps",
    "volatility.kyle_lambda_5m",
    "derivatives.mark_price.value",
    "derivatives.index_price.value",
    "derivatives.premium_bps.value",
    "derivatives.funding_rate.value",
    "derivatives.open_interest.value",
    "derivatives.liquidations_5m.long.count",
    "derivatives.liquidations_5m.long.qty",
    "derivatives.liquidations_5m.long.notional",
    "derivatives.liquidations_5m.short.count",
    "derivatives.liquidations_5m.short.qty",
    "derivatives.liquidations_5m.short.notional",
)

#: Row layouts by version (the reader's decoder table).
HISTORY_PATHS: dict[int, tuple[str, ...]] = {1: HISTORY_PATHS_V1, 2: HISTORY_PATHS_V2}

#: The stream field holding the row.
ROW_FIELD = "r"

#: Rows kept: 1 h at 1 s, 24 h at 1 min (exact MAXLEN).
HISTORY_MAXLEN = 3600
HISTORY_COARSE_MAXLEN = 1440
HISTORY_RESOLUTION_S = 1
HISTORY_COARSE_RESOLUTION_S = 60

#: Longest string value kept (ingestion.status is at most 8 chars); longer is cut.
MAX_STRING_CHARS = 32
#: A row never exceeds this (45 values of <= 17 chars + one capped string fit well below;
#: should a row still be larger, its strings are dropped, which bounds it by numbers alone).
ROW_MAX_BYTES = 1024
#: Floats keep this many significant digits (prices and sizes are far less precise).
SIGNIFICANT_DIGITS = 10

_SPLIT: tuple[tuple[str, ...], ...] = tuple(
    tuple(p.split(".")) for p in HISTORY_PATHS[HISTORY_VERSION]
)
_MAX_EXACT_INT = 2**53


def _leaf(report: Mapping[str, Any], parts: Sequence[str]) -> Any:
    node: Any = report
    for part in parts:
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _scalar(value: Any) -> Any:
    """The row value of one leaf: a rounded float, an exact int, a short string or None."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if -_MAX_EXACT_INT < value < _MAX_EXACT_INT else float(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return float(f"{value:.{SIGNIFICANT_DIGITS}g}")
    if isinstance(value, str):
        return value[:MAX_STRING_CHARS]
    return None  # an object or array where a scalar belongs


def history_values(report: Mapping[str, Any]) -> list[Any]:
    """The current-version row values of ``report``, in ``HISTORY_PATHS[HISTORY_VERSION]``
    order."""
    return [_scalar(_leaf(report, parts)) for parts in _SPLIT]


def encode_row(report: Mapping[str, Any]) -> bytes:
    """The compact history row of ``report`` (at most ``ROW_MAX_BYTES``)."""
    values = history_values(report)
    row = orjson.dumps([HISTORY_VERSION, *values])
    if len(row) > ROW_MAX_BYTES:
        row = orjson.dumps([HISTORY_VERSION, *(None if isinstance(v, str) else v for v in values)])
    return row


def split_row(raw: bytes | str) -> tuple[tuple[str, ...], list[Any]] | None:
    """``(paths, values)`` of one stored row; None if unreadable or of an unknown version."""
    try:
        row = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(row, list) or not row or type(row[0]) is not int:
        return None
    paths = HISTORY_PATHS.get(row[0])
    if paths is None or len(row) - 1 != len(paths):
        return None
    return paths, row[1:]


def decode_row(raw: bytes | str) -> dict[str, Any] | None:
    """``{path: value}`` of one stored row; None if unreadable or of an unknown version."""
    split = split_row(raw)
    return None if split is None else dict(zip(split[0], split[1], strict=True))


def event_ms_of(stream_id: bytes | str) -> int:
    """The event time (ms) of a history stream id ``<event_ms>-0``."""
    text = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
    return int(text.partition("-")[0])
