"""Read-time freshness and the other pure pieces of the read API (no Redis)."""

from __future__ import annotations

import copy

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.mcp.errors import CorruptReportError
from services.mcp.freshness import (
    FreshnessPolicy,
    serve_report,
    worse,
    write_age_ms,
    write_age_status,
)
from services.mcp.sections import MAX_REPORT_BYTES, capped
from services.mcp.service import normalize_symbol
from services.mcp.store import RawReport, decode_report, symbol_from_report_key
from shared import keys
from shared.errors import InvalidSymbolError
from shared.report import ns_from_iso_utc, schema_errors
from tests.mcp.helpers import make_report

POLICY = FreshnessPolicy(stale_after_ms=3000, down_after_ms=15000)
RANK = {"ok": 0, "degraded": 1, "down": 2}
WRITTEN = 1_721_260_800_000  # 2024-07-18T00:00:00Z in ms


def test_fresh_report_keeps_status_and_adds_write_age_to_data_age() -> None:
    report = make_report(data_age_ms=120, updated_at_ms=WRITTEN)
    served = serve_report(report, WRITTEN, WRITTEN + 250, POLICY)
    assert served["ingestion"]["status"] == "ok"
    assert served["data_age_ms"] == 120 + 250
    assert served["report_write_age_ms"] == 250
    assert ns_from_iso_utc(served["served_at"]) == (WRITTEN + 250) * 1_000_000
    assert schema_errors(served) == []


@pytest.mark.parametrize(
    ("age_ms", "expected"),
    [
        (0, "ok"),
        (3000, "ok"),
        (3001, "degraded"),
        (15000, "degraded"),
        (15001, "down"),
        (3_600_000, "down"),
    ],
)
def test_status_downgrades_with_write_age(age_ms: int, expected: str) -> None:
    report = make_report(updated_at_ms=WRITTEN)
    served = serve_report(report, WRITTEN, WRITTEN + age_ms, POLICY)
    assert served["ingestion"]["status"] == expected
    assert schema_errors(served) == []


@pytest.mark.parametrize("stored", ["degraded", "down"])
def test_never_upgrades_a_stored_worse_status(stored: str) -> None:
    report = make_report(status=stored, updated_at_ms=WRITTEN)
    served = serve_report(report, WRITTEN, WRITTEN + 10, POLICY)
    assert served["ingestion"]["status"] == stored


def test_unknown_write_time_is_served_down_with_null_write_age() -> None:
    report = make_report(data_age_ms=50, updated_at_ms=WRITTEN)
    for write_ms in (None, 0):
        served = serve_report(report, write_ms, WRITTEN + 10, POLICY)
        assert served["ingestion"]["status"] == "down"
        assert served["report_write_age_ms"] is None
        assert served["data_age_ms"] == 50
        assert schema_errors(served) == []


def test_writer_clock_ahead_of_reader_is_clamped_to_zero_age() -> None:
    report = make_report(data_age_ms=80, updated_at_ms=WRITTEN)
    served = serve_report(report, WRITTEN + 500, WRITTEN, POLICY)
    assert served["report_write_age_ms"] == 0
    assert served["data_age_ms"] == 80
    assert served["ingestion"]["status"] == "ok"


def test_serving_does_not_modify_the_stored_report_and_keeps_other_fields() -> None:
    report = make_report(updated_at_ms=WRITTEN)
    before = copy.deepcopy(report)
    served = serve_report(report, WRITTEN, WRITTEN + 20_000, POLICY)
    assert report == before
    changed = {"data_age_ms", "ingestion", "served_at", "report_write_age_ms", "health"}
    assert {k: v for k, v in served.items() if k not in changed} == {
        k: v for k, v in before.items() if k not in changed
    }
    assert served["ingestion"]["last_update"] == before["ingestion"]["last_update"]


@pytest.mark.parametrize(
    ("write_age", "status", "cap"),
    [(1_000, "ok", 100), (5_000, "degraded", 50), (20_000, "down", 0)],
)
def test_every_served_field_agrees_with_the_served_status(
    write_age: int, status: str, cap: int
) -> None:
    """A report served degraded/down at read time (not rewritten) must not keep a full
    health score or say its feed and book are ok (the issue's defect: down with 100)."""
    report = make_report(updated_at_ms=WRITTEN, data_age_ms=100)
    report["ingestion"].update(feed="ok", book="ok")
    report["health"] = {
        "score": 100,
        "components": [
            {"metric": "freshness", "score": 100},
            {"metric": "book_integrity", "score": 100},
            {"metric": "spread", "score": 100},
        ],
    }
    served = serve_report(report, WRITTEN, WRITTEN + write_age, POLICY)
    assert served["ingestion"]["status"] == status
    assert served["health"]["score"] <= cap
    freshness = next(c for c in served["health"]["components"] if c["metric"] == "freshness")
    if status == "ok":
        assert served["health"]["score"] == 100 and served["ingestion"]["feed"] == "ok"
        assert "reason" not in served["ingestion"]
    else:
        assert freshness["score"] < 100
        assert served["ingestion"]["feed"] == "unknown" and served["ingestion"]["book"] == "unknown"
        assert str(write_age) in served["ingestion"]["reason"]
    assert schema_errors(served) == []


@given(
    stored_status=st.sampled_from(["ok", "degraded", "down"]),
    data_age=st.integers(min_value=0, max_value=10**9),
    write_age=st.integers(min_value=-10_000, max_value=10**8),
    stale=st.integers(min_value=1, max_value=60_000),
    gap=st.integers(min_value=1, max_value=600_000),
)
def test_served_report_is_never_fresher_than_stored_or_than_its_write_age(
    stored_status: str, data_age: int, write_age: int, stale: int, gap: int
) -> None:
    policy = FreshnessPolicy(stale_after_ms=stale, down_after_ms=stale + gap)
    report = make_report(status=stored_status, data_age_ms=data_age, updated_at_ms=WRITTEN)
    now = WRITTEN + write_age
    served = serve_report(report, WRITTEN, now, policy)
    status = served["ingestion"]["status"]
    # independent restatement of the rule
    age = max(0, write_age)
    by_age = "down" if age > stale + gap else "degraded" if age > stale else "ok"
    assert RANK[status] == max(RANK[stored_status], RANK[by_age])
    assert served["data_age_ms"] == data_age + age
    assert served["report_write_age_ms"] == age
    assert schema_errors(served) == []


def test_worse_and_write_age_helpers() -> None:
    assert worse("ok", "degraded") == "degraded"
    assert worse("down", "ok") == "down"
    assert worse("bogus", "ok") == "down"  # an unreadable stored status is not trusted
    assert write_age_status(None, POLICY) == "down"
    assert write_age_ms(None, WRITTEN) is None
    assert write_age_ms(WRITTEN - 5, WRITTEN) == 5


def test_policy_rejects_inverted_thresholds() -> None:
    with pytest.raises(ValueError):
        FreshnessPolicy(stale_after_ms=5000, down_after_ms=5000)
    with pytest.raises(ValueError):
        FreshnessPolicy(stale_after_ms=0, down_after_ms=10)


def test_symbol_input_is_case_insensitive_and_checked() -> None:
    assert normalize_symbol("btcusdt") == "BTCUSDT"
    assert normalize_symbol("  EthUsdt ") == "ETHUSDT"
    for bad in ("btc-usdt", "", "BTC/USDT", "ÄBC", "X" * 41):
        with pytest.raises(InvalidSymbolError) as err:
            normalize_symbol(bad)
        assert repr(bad) in str(err.value)


def test_report_keys_round_trip_to_symbols() -> None:
    assert symbol_from_report_key(keys.report("BTCUSDT").encode()) == "BTCUSDT"
    assert symbol_from_report_key(keys.stream("BTCUSDT")) is None
    assert symbol_from_report_key("c8:report:{}") is None
    assert symbol_from_report_key("c8:report:{bad-one}") is None


def test_decode_report_prefers_hash_write_time_and_rejects_garbage() -> None:
    report = make_report(updated_at_ms=WRITTEN)
    stored = decode_report(RawReport("BTCUSDT", orjson.dumps(report), b"%d" % (WRITTEN + 7)))
    assert stored.report == report
    assert stored.write_ms == WRITTEN + 7
    assert decode_report(RawReport("BTCUSDT", orjson.dumps(report), None)).write_ms == WRITTEN
    with pytest.raises(CorruptReportError, match="BTCUSDT"):
        decode_report(RawReport("BTCUSDT", b"{not json", None))
    with pytest.raises(CorruptReportError, match="not a JSON object"):
        decode_report(RawReport("BTCUSDT", b"[1, 2]", None))


def test_a_report_too_big_is_trimmed_to_the_cap_and_stays_valid() -> None:
    report = make_report()
    anomaly = {"type": "iceberg", "severity": "low", "note": "x"}
    report["anomalies"] = [dict(anomaly, note=f"{i} " + "x" * 200) for i in range(400)]
    assert len(orjson.dumps(report)) > MAX_REPORT_BYTES
    out = capped(report)
    assert len(orjson.dumps(out)) <= MAX_REPORT_BYTES
    assert out["truncated"] == ["anomalies"]
    assert out["anomalies"] == report["anomalies"][: len(out["anomalies"])]  # the head kept
    assert len(out["anomalies"]) > 100 and len(report["anomalies"]) == 400  # not modified
    assert schema_errors(out) == []
    small = make_report()
    assert capped(small) is small and "truncated" not in small
