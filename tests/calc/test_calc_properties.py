"""Property tests: any book and trade tape gives a sane, schema-valid report."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.calc.analytics import L2Book, SymbolCore, with_writer
from shared.report import schema_errors
from shared.wire import DeltaPayload, Entry, SnapPayload, TradePayload

MS = 1_000_000
T0 = 1_700_000_000_000 * MS

sizes = st.integers(min_value=1, max_value=5_000_000)


@st.composite
def books(draw: st.DrawFn) -> SnapPayload:
    split = draw(st.integers(min_value=0, max_value=100_000))  # may reach prices <= 0
    bid_px = draw(st.lists(st.integers(split - 2_000, split), min_size=0, max_size=60, unique=True))
    ask_px = draw(
        st.lists(st.integers(split + 1, split + 2_000), min_size=0, max_size=60, unique=True)
    )
    return SnapPayload(
        u=1,
        pp=2,
        sp=3,
        b=[(p, draw(sizes)) for p in sorted(bid_px, reverse=True)],
        a=[(p, draw(sizes)) for p in sorted(ask_px)],
    )


@st.composite
def trades(draw: st.DrawFn) -> tuple[int, int, int, str, bool]:
    """(ms offset, price, size, side, liq); about one in ten is invalid (skipped)."""
    broken = draw(st.integers(0, 9)) == 0
    price = draw(st.sampled_from([0, -3])) if broken else draw(st.integers(1, 200_000))
    size = draw(st.integers(1, 100_000)) if not broken or draw(st.booleans()) else 0
    liq = draw(st.integers(0, 5)) == 0
    return draw(st.integers(0, 40_000)), price, size, draw(st.sampled_from(["B", "S", ""])), liq


# Short tapes (no profile) and long ones (a profile must appear).
trade_tapes = st.lists(trades(), max_size=9) | st.lists(trades(), min_size=25, max_size=120)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snap=books(), tape=trade_tapes)
def test_reports_are_sane_and_schema_valid(snap: SnapPayload, tape: list) -> None:
    core = SymbolCore("TESTUSDT", "BYBIT")
    core.apply(Entry("snap", T0, T0, snap))
    for offset, px, sz, side, liq in sorted(tape, key=lambda x: x[0]):
        t = T0 + offset * MS
        trade = TradePayload(id="x", px=px, sz=sz, pp=2, sp=3, side=side, liq=liq)
        core.apply(Entry("trade", t, t, trade))
    last = T0 + (max((x[0] for x in tape), default=0) + 2_001) * MS
    cycles = core.advance_to(last)
    assert cycles
    for cycle in (cycles[0], cycles[-1]):
        report = with_writer(cycle.report, "node", 3)
        assert schema_errors(report) == []
        depth = report["depth"]
        bid_prices = [lv["price"] for lv in depth["bids"]]
        ask_prices = [lv["price"] for lv in depth["asks"]]
        assert bid_prices == sorted(bid_prices, reverse=True) and len(bid_prices) <= 20
        assert ask_prices == sorted(ask_prices) and len(ask_prices) <= 20
        if depth["imbalance"] is not None:
            assert -1 <= depth["imbalance"] <= 1
        if report["best_bid"] and report["best_ask"]:
            assert report["best_bid"]["price"] < report["best_ask"]["price"]
            assert report["spread_bps"] > 0
            assert (
                report["best_bid"]["price"] <= report["micro_price"] <= report["best_ask"]["price"]
            )
        vp = report.get("liquidity", {}).get("volume_profile")
        priced = [x for x in tape if not x[4] and x[1] > 0 and x[2] > 0]
        if vp is not None:
            assert vp["trade_count"] >= 10
            assert vp["VAL"] <= vp["POC"] <= vp["VAH"]
            assert vp["value_area_pct"] >= 70
        elif cycle is cycles[-1]:
            in_window = [x for x in priced if x[0] * MS + T0 > last - 1_800 * 1_000 * MS]
            assert len(in_window) < 10
        if report["high_24h"] is not None:
            assert report["low_24h"] <= report["last_price"] or cycle is not cycles[-1]
            assert report["low_24h"] <= report["high_24h"]
        # Schema 1.2 flow measures: ratio in [0, 1], rv >= 0, VWAP inside the traded range.
        flow, vol = report["flow"], report["volatility"]
        ratio = flow["aggressor_buy_ratio_30s"]
        assert ratio is None or 0 <= ratio <= 1
        assert vol["rv_5m_bps"] is None or vol["rv_5m_bps"] >= 0
        assert vol["rv_5m_annualized_bps"] is None or vol["rv_5m_annualized_bps"] >= 0
        if flow["vwap_5m"] is not None:
            prices = [x[1] / 100 for x in priced if not x[4]]
            assert min(prices) - 1e-9 <= flow["vwap_5m"] <= max(prices) + 1e-9
        notionals = [x["notional"] for x in flow["large_trades_5m"]]
        assert notionals == sorted(notionals, reverse=True) and len(notionals) <= 5
        if vp is not None:
            assert vp["VAL"] < vp["POC"] < vp["VAH"]
            assert vp["POC"] - vp["bin_width"] / 2 >= vp["VAL"] - 1e-9


@settings(max_examples=60, deadline=None)
@given(
    snap=books(),
    updates=st.lists(
        st.tuples(st.booleans(), st.integers(-2_500, 2_500), st.integers(0, 3)), max_size=200
    ),
)
def test_book_matches_a_plain_dict_under_any_updates(snap: SnapPayload, updates: list) -> None:
    book = L2Book()
    book.apply_snap(snap)
    bids = {p: q for p, q in snap.b if p > 0}  # non-positive prices are never levels
    asks = {p: q for p, q in snap.a if p > 0}
    mid = (snap.b[0][0] if snap.b else 0) + 1
    for u, (is_bid, offset, size) in enumerate(updates, start=2):
        price = mid + offset
        level = [(price, size)]
        delta = DeltaPayload(
            U=u, u=u, pu=u - 1, pp=2, sp=3, b=level if is_bid else [], a=[] if is_bid else level
        )
        book.apply_delta(delta)
        side = bids if is_bid else asks
        if price <= 0:
            continue
        if size:
            side[price] = size
        else:
            side.pop(price, None)
    assert book.bids == bids and book.asks == asks
    assert book.top_bids(20) == sorted(bids.items(), reverse=True)[:20]
    assert book.top_asks(20) == sorted(asks.items())[:20]
    assert book.best_bid() == (max(bids.items()) if bids else None)
    assert book.best_ask() == (min(asks.items()) if asks else None)
    assert book.is_crossed() == bool(bids and asks and max(bids) > min(asks))
