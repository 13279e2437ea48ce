"""The derivatives section (mark / index / premium / funding / open interest /
liquidations over 5 minutes) on exchange event time: the pure state and the report."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from services.calc.analytics import SymbolCore
from services.calc.analytics.derivatives import LIQUIDATION_WINDOW_NS, DerivativesState
from shared.report import iso_utc_from_ns, schema_errors
from shared.wire import (
    Entry,
    LiquidationPayload,
    MarkPayload,
    OpenInterestPayload,
    SnapPayload,
    TradePayload,
)

SEC = 1_000_000_000
MS = 1_000_000
T0 = 1_721_347_200 * SEC  # a whole second (and fast-cycle boundary)


def liq(side: str, px: float, sz: float) -> LiquidationPayload:
    return LiquidationPayload(side, px, sz)  # type: ignore[arg-type]


def test_premium_is_mark_over_index_in_bps_with_the_later_time() -> None:
    d = DerivativesState()
    d.add(T0, MarkPayload(mark=100.5, index=100.0, funding=0.0001, nft=1_721_376_000_000))
    d.add(T0 + 2 * SEC, MarkPayload(mark=101.0))  # a Bybit delta: the mark alone
    out = d.fields(T0 + 3 * SEC)
    assert out is not None
    assert out["mark_price"] == {
        "value": 101.0,
        "at": iso_utc_from_ns(T0 + 2 * SEC),
        "age_ms": 1000,
    }
    assert out["index_price"] == {"value": 100.0, "at": iso_utc_from_ns(T0), "age_ms": 3000}
    assert out["premium_bps"] == {
        "value": 100.0,
        "at": iso_utc_from_ns(T0 + 2 * SEC),
        "age_ms": 1000,
    }
    assert out["funding_rate"] == {
        "value": 0.0001,
        "at": iso_utc_from_ns(T0),
        "age_ms": 3000,
        "next_funding_time": "2024-07-19T08:00:00.000Z",
    }
    assert out["open_interest"] is None


def test_negative_premium_and_funding() -> None:
    d = DerivativesState()
    d.add(T0, MarkPayload(mark=99.0, index=100.0, funding=-0.00025))
    out = d.fields(T0)
    assert out is not None
    assert out["premium_bps"]["value"] == -100.0
    assert out["funding_rate"]["value"] == -0.00025


def test_a_late_value_never_rolls_a_newer_one_back() -> None:
    d = DerivativesState()
    d.add(T0 + SEC, MarkPayload(mark=2.0, index=2.0))
    d.add(T0, MarkPayload(mark=1.0, index=1.0))
    d.add(T0 + SEC, OpenInterestPayload(oi=10.0, value=20.0))
    d.add(T0, OpenInterestPayload(oi=5.0))
    out = d.fields(T0 + SEC)
    assert out is not None
    assert (out["mark_price"]["value"], out["index_price"]["value"]) == (2.0, 2.0)
    assert out["open_interest"] == {
        "value": 10.0,
        "value_quote": 20.0,
        "at": iso_utc_from_ns(T0 + SEC),
        "age_ms": 0,
    }


def test_liquidation_window_is_open_at_t_minus_5_min_and_closed_at_t() -> None:
    w = LIQUIDATION_WINDOW_NS
    t = T0 + w
    d = DerivativesState()
    d.add(T0, liq("long", 100.0, 1.0))  # exactly t - 5 min: out
    d.add(T0 + 1, liq("long", 100.0, 2.0))  # 1 ns later: in
    d.add(t, liq("short", 50.0, 3.0))  # exactly t: in
    d.add(t + 1, liq("short", 50.0, 4.0))  # after t: not yet
    out = d.fields(t)
    assert out is not None
    lq = out["liquidations_5m"]
    assert lq["long"] == {"count": 1, "qty": 2.0, "notional": 200.0}
    assert lq["short"] == {"count": 1, "qty": 3.0, "notional": 150.0}
    assert lq["window_sec"] == 300.0
    out = d.fields(t + w)  # everything but the last has left the window
    assert out is not None
    assert out["liquidations_5m"]["long"] == {"count": 0, "qty": 0.0, "notional": 0.0}
    assert out["liquidations_5m"]["short"] == {"count": 1, "qty": 4.0, "notional": 200.0}
    assert out["liquidations_5m"]["last_at"] == iso_utc_from_ns(t + 1)


def test_entries_count_only_once_their_event_time_is_reached() -> None:
    """A value from the future (applied before the boundary it belongs to) waits."""
    d = DerivativesState()
    d.add(T0, MarkPayload(mark=1.0, index=1.0))
    d.add(T0 + 2 * SEC, MarkPayload(mark=3.0, index=3.0))
    d.add(T0 + 2 * SEC, liq("long", 10.0, 1.0))
    out = d.fields(T0 + SEC)
    assert out is not None
    assert out["mark_price"]["value"] == 1.0
    assert out["liquidations_5m"]["long"]["count"] == 0
    out = d.fields(T0 + 2 * SEC)
    assert out is not None
    assert out["mark_price"]["value"] == 3.0
    assert out["liquidations_5m"]["long"]["count"] == 1


def test_window_sec_counts_only_what_was_observed() -> None:
    d = DerivativesState()
    assert d.fields(T0) is None  # no derivative data: no section
    d.add(T0, MarkPayload(mark=1.0))
    out = d.fields(T0 + 42 * SEC)
    assert out is not None
    lq = out["liquidations_5m"]
    assert (lq["window_sec"], lq["last_at"]) == (42.0, None)
    assert lq["long"]["count"] == lq["short"]["count"] == 0


def test_inverse_contracts_have_no_notional() -> None:
    d = DerivativesState(notional=False)
    d.add(T0, liq("long", 60_000.0, 5.0))
    out = d.fields(T0)
    assert out is not None
    assert out["liquidations_5m"]["long"] == {"count": 1, "qty": 5.0, "notional": None}


def test_bad_values_are_counted_and_skipped() -> None:
    d = DerivativesState()
    d.add(T0, MarkPayload(mark=math.nan))
    d.add(T0, MarkPayload(mark=1.0, index=-1.0))
    d.add(T0, MarkPayload(mark=1.0, funding=math.inf))
    d.add(T0, OpenInterestPayload(oi=-1.0))
    d.add(T0, liq("long", 0.0, 1.0))
    d.add(T0, liq("sideways", 1.0, 1.0))
    assert d.bad == 6
    assert d.fields(T0) is None


liquidations = st.lists(
    st.tuples(
        st.integers(0, 900).map(lambda s: T0 + s * SEC // 2),
        st.sampled_from(["long", "short"]),
        st.floats(1, 1e6, allow_nan=False),
        st.floats(1e-6, 1e3, allow_nan=False),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(liquidations, st.lists(st.integers(0, 500), min_size=1, max_size=8))
def test_liquidation_windows_equal_a_plain_recount(
    items: list[tuple[int, str, float, float]], steps: list[int]
) -> None:
    """Any arrival order, boundaries moving forward: each side's count, qty and
    notional equal a recount of the items with event time in (t - 5 min, t]."""
    d = DerivativesState()
    for at, side, px, sz in items:
        d.add(at, liq(side, px, sz))
    t = T0
    for step in steps:
        t += step * SEC
        out = d.fields(t)
        if not items:
            assert out is None
            continue
        assert out is not None
        for side in ("long", "short"):
            inside = [(px, sz) for at, s, px, sz in items if s == side and t - 300 * SEC < at <= t]
            assert out["liquidations_5m"][side] == {
                "count": len(inside),
                "qty": math.fsum(sz for _, sz in inside),
                "notional": math.fsum(px * sz for px, sz in inside),
            }


# --- the report ---------------------------------------------------------------------------


def _market(t: int) -> list[Entry]:
    snap = SnapPayload(u=1, pp=1, sp=3, b=[(999_990, 1_000)], a=[(1_000_010, 2_000)])
    trade = TradePayload(id="1", px=1_000_000, sz=500, pp=1, sp=3, side="B")
    return [Entry("snap", t, t, snap), Entry("trade", t + MS, t + MS, trade)]


def test_report_carries_the_section_and_derivatives_do_not_refresh_data_age() -> None:
    core = SymbolCore("BTCUSDT", "BINANCE")
    entries = [
        *_market(T0),
        Entry(
            "mark", T0 + 2 * SEC, 0, MarkPayload(100_010.0, 100_000.0, 0.0001, 1_721_376_000_000)
        ),
        Entry("oi", T0 + 2 * SEC, 0, OpenInterestPayload(81_234.5)),
        Entry("liq", T0 + 2 * SEC, 0, liq("short", 100_005.0, 0.5)),
        Entry("mark", T0 + 4 * SEC, 0, MarkPayload(100_020.0, 100_000.0)),
    ]
    for e in entries:
        core.apply(e)
    report = core.build_report(T0 + 4 * SEC)
    assert schema_errors({**report, "writer": {"nodeId": "n", "writerToken": 1}}) == []
    d = report["derivatives"]
    assert d["mark_price"]["value"] == 100_020.0
    assert d["premium_bps"]["value"] == 2.0
    assert d["open_interest"]["value"] == 81_234.5 and d["open_interest"]["age_ms"] == 2000
    assert d["liquidations_5m"]["short"] == {"count": 1, "qty": 0.5, "notional": 50_002.5}
    assert d["liquidations_5m"]["window_sec"] == 2.0
    # The last market-data entry is 1 ms after T0: the age counts from it, not the mark.
    assert report["data_age_ms"] == 3_999
    assert core.last_event_ns == T0 + MS


def test_derivative_entries_do_not_move_the_cycle_clock() -> None:
    """Only market data closes boundaries: the same cycles with or without a mark stream."""
    market = _market(T0) + _market(T0 + 3 * SEC)
    marks = [Entry("mark", T0 + k * SEC // 2, 0, MarkPayload(1.0 + k)) for k in range(8)]
    plain, mixed = SymbolCore("BTCUSDT", "BINANCE"), SymbolCore("BTCUSDT", "BINANCE")
    plain_cycles = [c.t_ns for e in market for c in plain.apply(e)]
    mixed_entries = sorted(market + marks, key=lambda e: e.event_ns)
    got = [(c.t_ns, c.report) for e in mixed_entries for c in mixed.apply(e)]
    assert [t for t, _ in got] == plain_cycles
    for t, report in got:
        # At each boundary: the newest mark at or before it.
        k = min(7, (t - T0) * 2 // SEC)
        assert report["derivatives"]["mark_price"]["value"] == 1.0 + k


def test_no_derivative_entries_no_section() -> None:
    core = SymbolCore("BTCUSDT", "BINANCE")
    for e in _market(T0):
        core.apply(e)
    assert "derivatives" not in core.build_report(T0 + SEC)


def test_coinm_report_has_no_liquidation_notional() -> None:
    core = SymbolCore("BTCUSDPERP", "BINANCE", size_unit="contracts")
    core.apply(Entry("liq", T0, 0, liq("long", 60_000.0, 3.0)))
    report = core.build_report(T0)
    assert report["derivatives"]["liquidations_5m"]["long"]["notional"] is None
    assert schema_errors({**report, "writer": {"nodeId": "n", "writerToken": 1}}) == []
