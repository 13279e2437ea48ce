"""The history row (shared/history.py): pure, no Redis."""

from __future__ import annotations

from typing import Any

import orjson

from shared.history import (
    HISTORY_PATHS_V1,
    HISTORY_PATHS_V2,
    HISTORY_VERSION,
    MAX_STRING_CHARS,
    ROW_MAX_BYTES,
    decode_row,
    encode_row,
    event_ms_of,
    history_values,
    split_row,
)
from shared.report import report_schema
from tests.mcp.helpers import make_report

#: Scalar leaves of the schema that are not a time series: identity, write metadata and
#: the timestamps the row's id already carries.
NOT_SERIES = {
    "schemaVersion",
    "writer.nodeId",
    "writer.writerToken",
    "updatedAt",
    "symbol",
    "venue",
    "generated_at",
    "ingestion.last_update",
}
#: Leaves added by schema 1.2 (flow measures, volatility): not in the version-1 row layout
#: (a row stays <= 1 KiB with the 1.1 series; adding them takes a version-2 layout).
ADDED_IN_1_2 = {
    *(
        f"flow.{name}"
        for name in (
            "cvd_30m",
            "cvd_30m_window_sec",
            "vwap_5m",
            "vwap_5m_window_sec",
            "vwap_30m",
            "vwap_30m_window_sec",
            "aggressor_buy_ratio_30s",
            "aggressor_buy_ratio_30s_window_sec",
            "large_trades_5m_window_sec",
            "liquidations_30m.count",
            "liquidations_30m.qty",
        )
    ),
    *(
        f"volatility.{name}"
        for name in (
            "rv_5m_bps",
            "rv_5m_annualized_bps",
            "rv_5m_window_sec",
            "kyle_lambda_5m",
            "kyle_lambda_5m_window_sec",
        )
    ),
}


def scalar_leaves(schema: dict[str, Any], node: dict[str, Any], prefix: str = "") -> set[str]:
    """Dotted paths of every non-array leaf reachable through object properties."""
    if "$ref" in node:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
    for alternative in node.get("oneOf", []):
        if alternative.get("type") != "null":
            return scalar_leaves(schema, alternative, prefix)
    if node.get("type") == "array":
        return set()
    if "properties" in node:
        leaves: set[str] = set()
        for name, child in node["properties"].items():
            leaves |= scalar_leaves(schema, child, f"{prefix}{name}.")
        return leaves
    return {prefix.rstrip(".")}


def test_paths_are_every_scalar_leaf_of_the_schema_but_identity_and_times() -> None:
    schema = report_schema()
    leaves = scalar_leaves(schema, schema)
    assert len(HISTORY_PATHS_V1) == len(set(HISTORY_PATHS_V1))
    assert leaves >= ADDED_IN_1_2
    # Version 1 (rows already stored) holds the 1.1 series; the live-only derivatives
    # section (optional in 1.2) came with version 2.
    derivatives = {leaf for leaf in leaves if leaf.startswith("derivatives.")}
    assert "derivatives.mark_price.value" in derivatives
    assert set(HISTORY_PATHS_V1) == leaves - NOT_SERIES - ADDED_IN_1_2 - derivatives
    # Version 2: every series but the windows' lengths and each value's own time and age.
    meta = {
        leaf
        for leaf in leaves
        if leaf.endswith(("window_sec", ".at", ".age_ms", ".last_at"))
        and leaf != "liquidity.volume_profile.window_sec"  # in version 1 already
    }
    assert len(HISTORY_PATHS_V2) == len(set(HISTORY_PATHS_V2))
    assert HISTORY_PATHS_V2[: len(HISTORY_PATHS_V1)] == HISTORY_PATHS_V1
    assert set(HISTORY_PATHS_V2) == leaves - NOT_SERIES - meta


def test_row_round_trips_a_full_report() -> None:
    report = make_report("BTCUSDT", mid=65000.05)
    row = encode_row(report)
    assert len(row) <= ROW_MAX_BYTES
    decoded = decode_row(row)
    assert decoded is not None and list(decoded) == list(HISTORY_PATHS_V2)
    assert decoded["mid_price"] == 65000.05
    assert decoded["flow.cvd_30m"] is None  # a 1.1-shaped report: null, not an error
    assert decoded["derivatives.mark_price.value"] is None  # no section: null
    assert decoded["depth.imbalance"] == report["depth"]["imbalance"]
    assert decoded["liquidity.volume_profile.POC"] == report["liquidity"]["volume_profile"]["POC"]
    assert decoded["liquidity.volume_profile.trade_count"] == 250
    assert decoded["ingestion.status"] == "ok"
    assert decoded["change_24h_pct"] is None
    assert orjson.loads(row)[0] == HISTORY_VERSION


def test_absent_blocks_and_non_scalars_are_null_floats_rounded_strings_capped() -> None:
    report: dict[str, Any] = {
        "best_bid": None,
        "depth": {"imbalance": 0.1 + 0.2, "total_bid_qty": float("nan"), "total_ask_qty": [1]},
        "flow": "not an object",
        "health": {"score": 2**60},
        "ingestion": {"status": "x" * 500},
    }
    values = dict(zip(HISTORY_PATHS_V2, history_values(report), strict=True))
    assert values["best_bid.price"] is None and values["liquidity.volume_profile.POC"] is None
    assert values["depth.imbalance"] == 0.3  # 10 significant digits
    assert values["depth.total_bid_qty"] is None and values["depth.total_ask_qty"] is None
    assert values["flow.net_flow"] is None
    assert values["health.score"] == float(2**60)  # beyond 2**53: not kept as an exact int
    assert values["ingestion.status"] == "x" * MAX_STRING_CHARS


def test_worst_case_row_stays_under_the_cap() -> None:
    huge = -1.2345678901234567e-300
    report: dict[str, Any] = {}
    for path in HISTORY_PATHS_V2:
        node = report
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = "\u0001" * 100 if path == "ingestion.status" else huge
    row = encode_row(report)
    assert len(row) <= ROW_MAX_BYTES
    assert decode_row(row) is not None


def test_unreadable_or_unknown_rows_decode_to_none() -> None:
    assert decode_row(b"not json") is None
    assert decode_row(b"{}") is None
    assert decode_row(b"[99, 1, 2]") is None  # a version this code does not know
    assert decode_row(b"[1, 1, 2]") is None  # wrong length for version 1
    assert decode_row(b"[true]") is None
    assert split_row(encode_row({})) == (HISTORY_PATHS_V2, [None] * len(HISTORY_PATHS_V2))


def test_rows_of_version_1_still_decode() -> None:
    """Rows stored before version 2 stay readable (the 1 min stream keeps 24 h)."""
    old = orjson.dumps([1, *range(len(HISTORY_PATHS_V1))])
    assert split_row(old) == (HISTORY_PATHS_V1, list(range(len(HISTORY_PATHS_V1))))


def test_event_time_is_the_stream_id() -> None:
    assert event_ms_of(b"1700000000123-0") == 1_700_000_000_123
    assert event_ms_of("5-0") == 5
