"""Report fields from a replay of real data vs plain computations at several event times."""

from __future__ import annotations

import pytest

from services.calc.analytics import replay
from shared.report import iso_utc_from_ns, schema_errors
from tests.calc.calc_kit import SESSIONS, PlainState, plain_states_at, session_entries

MS = 1_000_000


def _check(report: dict, st: PlainState, t_ms: int) -> None:
    # --- top of book and depth --------------------------------------------------------
    bids = sorted(st.bids.items(), reverse=True)[:20]
    asks = sorted(st.asks.items())[:20]
    assert report["best_bid"] == {"price": bids[0][0], "qty": bids[0][1]}
    assert report["best_ask"] == {"price": asks[0][0], "qty": asks[0][1]}
    depth = report["depth"]
    assert [(lv["price"], lv["qty"]) for lv in depth["bids"]] == bids
    assert [(lv["price"], lv["qty"]) for lv in depth["asks"]] == asks
    tb, ta = sum(q for _, q in bids), sum(q for _, q in asks)
    assert depth["total_bid_qty"] == pytest.approx(tb, rel=1e-12)
    assert depth["total_ask_qty"] == pytest.approx(ta, rel=1e-12)
    assert depth["imbalance"] == pytest.approx((tb - ta) / (tb + ta), abs=1e-12)
    (b, bq), (a, aq) = bids[0], asks[0]
    mid = (b + a) / 2
    assert report["mid_price"] == pytest.approx(round(mid, 8), abs=1.1e-8)
    assert report["spread_bps"] == pytest.approx(round((a - b) / mid * 10_000, 4), abs=1.1e-4)
    micro = (b * aq + a * bq) / (bq + aq)
    assert report["micro_price"] == pytest.approx(round(micro, 8), abs=1.1e-8)
    # --- flow -------------------------------------------------------------------------
    last10 = [tr for tr in st.trades if t_ms - 10_000 < tr[0] <= t_ms]
    last30 = [tr for tr in st.trades if t_ms - 30_000 < tr[0] <= t_ms]
    assert report["flow"]["orders_per_sec"] == len(last10) / 10
    net = sum(q if buy else -q for _, _, q, buy, _ in last30)
    assert report["flow"]["net_flow"] == pytest.approx(net, abs=1e-9)
    # --- trade statistics ---------------------------------------------------------------
    priced = [tr for tr in st.trades if not tr[4]]
    assert report["last_price"] == priced[-1][1]
    day = [tr for tr in priced if t_ms - 86_400_000 < tr[0] <= t_ms]
    assert report["high_24h"] == max(p for _, p, *_ in day)
    assert report["low_24h"] == min(p for _, p, *_ in day)
    first, last = day[0][1], day[-1][1]
    assert report["change_24h_pct"] == pytest.approx(
        round((last - first) / first * 100, 4), abs=1.1e-4
    )
    volume = sum(q for tm, _, q, *_ in st.trades if t_ms - 86_400_000 < tm <= t_ms)
    assert report["volume_24h"] == pytest.approx(volume, rel=1e-9)
    assert st.first_ms is not None
    assert report["stats_24h_window_sec"] == pytest.approx((t_ms - st.first_ms) / 1000, abs=1e-3)
    # --- time and status ----------------------------------------------------------------
    assert report["generated_at"] == iso_utc_from_ns(t_ms * MS)
    assert report["data_age_ms"] == t_ms - st.max_event_ms
    assert report["ingestion"]["last_update"] == iso_utc_from_ns(st.max_event_ms * MS)
    assert report["ingestion"]["status"] == "ok"
    assert schema_errors(report) == []


@pytest.mark.parametrize("name", ["usdm-btc", "spot-btc"])
def test_fields_match_plain_computation(name: str) -> None:
    reports = dict(replay(session_entries(name), "BTCUSDT", "BINANCE"))
    times = sorted(reports)
    assert len(times) > 1000
    # Several event times: early (windows not yet full), middle, late, and a random few.
    picks = [times[i] for i in (4, 41, 130, len(times) // 3, len(times) // 2, -200, -2)]
    states = plain_states_at(SESSIONS[name], [t // MS for t in picks])
    assert len(states) == len(picks)
    for t in picks:
        _check(reports[t], states[t // MS], t // MS)


def test_checkpoint_snapshots_change_no_report() -> None:
    """Ingest's 30 s checkpoint snapshots re-state the book the core holds: every report,
    order-flow imbalance included, is the same without them."""
    entries = session_entries("usdm-btc")
    checkpoints = [e for e in entries if e.kind == "snap" and e.payload.src == "checkpoint"]
    assert len(checkpoints) > 10
    with_ckpt = dict(replay(entries, "BTCUSDT", "BINANCE"))
    without = dict(replay([e for e in entries if e not in checkpoints], "BTCUSDT", "BINANCE"))
    assert with_ckpt == without
    assert any(r.get("order_flow_imbalance", {}).get("ofi_30s") for r in with_ckpt.values())


def test_iso_times_are_the_datetime_formatting_with_the_second_memoised() -> None:
    """``iso_utc_from_ns`` memoises the date part of whole milliseconds: the same text as
    formatting every time (whole ms and arbitrary ns, both sides of second boundaries)."""
    import random
    from datetime import UTC, datetime

    def formatted(ns: int) -> str:
        dt = datetime.fromtimestamp(ns / 1e9, tz=UTC)
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"

    rng = random.Random(11)
    samples = [ms * 1_000_000 for ms in range(1_721_347_019_990, 1_721_347_020_010)]
    for _ in range(20_000):
        ms = rng.randrange(0, 4_102_444_800_000)
        samples += [ms * 1_000_000, ms * 1_000_000 + rng.randrange(1, 1_000_000)]
    assert [iso_utc_from_ns(ns) for ns in samples] == [formatted(ns) for ns in samples]
