"""Schema 1.2 flow measures and volatility vs independent computations.

On real data: a replay of recorded sessions (ingest's own offline entries, the worker's
own core) against plain computations from the raw recorded lines (calc_kit: json, dicts
of floats, no project code) at many report times. Properties (hypothesis): the sliding
structures agree with brute force over random tapes with late trades and long jumps.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.calc.analytics import replay
from services.calc.analytics.flow import BucketRing, TopTrades, VolSeconds
from services.calc.analytics.profile import VolumeProfile
from shared.report import iso_utc_from_ns, schema_errors
from tests.calc.calc_kit import SESSIONS, plain_mids_at, plain_states_at, session_entries

MS = 1_000_000
SEC = 1_000 * MS
YEAR_SEC = 365 * 86_400


def _window(t_ms: int, w_ms: int, first_ms: int) -> float:
    return min(w_ms, t_ms - first_ms) / 1000


def _plain_rv_kyle(
    mids: list[float | None], signed: list[float]
) -> tuple[float | None, int, float | None, int]:
    """Plain-Python realised volatility and OLS slope over consecutive whole seconds."""
    returns: list[float] = []
    pairs: list[tuple[float, float]] = []
    for i in range(1, len(mids)):
        a, b = mids[i - 1], mids[i]
        if a is None or b is None:
            continue
        returns.append(math.log(b / a))
        pairs.append((signed[i - 1], 1e4 * (b - a) / a))
    rv = 1e4 * math.sqrt(sum(r * r for r in returns)) if returns else None
    lam = None
    if len(pairs) >= 30:
        mx = sum(x for x, _ in pairs) / len(pairs)
        my = sum(y for _, y in pairs) / len(pairs)
        sxx = sum((x - mx) ** 2 for x, _ in pairs)
        if sxx > 0:
            lam = sum((x - mx) * (y - my) for x, y in pairs) / sxx
    return rv, len(returns), lam, len(pairs)


@pytest.mark.parametrize(
    ("name", "size_unit"), [("usdm-btc", "base"), ("spot-btc", "base"), ("coinm-btc", "contracts")]
)
def test_flow_and_volatility_match_plain_computations(name: str, size_unit: str) -> None:
    reports = dict(replay(session_entries(name), "BTCUSDT", "BINANCE", size_unit=size_unit))
    times = sorted(reports)
    n = len(times)
    rng = random.Random(13)
    # Early (windows short), the 5-minute windows filling and full, late, and random ones;
    # whole seconds among them (volatility changes there) and odd quarters.
    idx = {3, 41, 130, 1199, 1204, n // 3, n // 2, 2 * n // 3, n - 200, n - 2}
    idx |= {rng.randrange(8, n) for _ in range(6)}
    picks = [times[i] for i in sorted(idx) if 0 <= i < n]
    counts: dict[str, int] = {}  # checks made per field (printed with -s)

    def _count(field: str) -> None:
        counts[field] = counts.get(field, 0) + 1

    seconds = sorted({t // SEC for t in picks})
    states = plain_states_at(
        SESSIONS[name], sorted({t // MS for t in picks} | {s * 1000 for s in seconds})
    )
    mid_times = sorted({(s - k) * 1000 for s in seconds for k in range(301)})
    mids = plain_mids_at(SESSIONS[name], mid_times)
    for t in picks:
        t_ms = t // MS
        report = reports[t]
        assert schema_errors(report) == []
        flow, vol = report["flow"], report["volatility"]
        state = states[t_ms]
        first = state.first_ms
        trades = [tr for tr in state.trades if not tr[4]]  # (ms, price, qty, buy, liq)
        assert len(trades) == len(state.trades)  # the recordings hold no liquidation print
        assert flow["liquidations_30m"] == {"count": 0, "qty": 0.0}

        last30m, last5m, last30s = (
            [tr for tr in trades if t_ms - w_ms < tr[0] <= t_ms]
            for w_ms in (1_800_000, 300_000, 30_000)
        )
        cvd = sum(q if buy else -q for _, _, q, buy, _ in last30m)
        assert flow["cvd_30m"] == pytest.approx(cvd, rel=1e-9, abs=1e-9)
        _count("cvd_30m")
        for key, window in (("vwap_5m", last5m), ("vwap_30m", last30m)):
            qty = sum(q for _, _, q, _, _ in window)
            vwap = sum(p * q for _, p, q, _, _ in window) / qty
            assert flow[key] == pytest.approx(vwap, rel=1e-10), key
            _count(key)
        qty30 = sum(q for _, _, q, _, _ in last30s)
        if qty30 == 0:
            assert flow["aggressor_buy_ratio_30s"] is None
        else:
            buys = sum(q for _, _, q, buy, _ in last30s if buy)
            assert flow["aggressor_buy_ratio_30s"] == pytest.approx(buys / qty30, abs=1e-8)
            _count("aggressor_buy_ratio_30s")
        # Largest by notional (by qty for inverse contracts), ties: the newer first.
        order = sorted(
            range(len(last5m)),
            key=lambda i: (
                round(last5m[i][1] * last5m[i][2], 6) if size_unit == "base" else last5m[i][2],
                last5m[i][0],
                i,
            ),
            reverse=True,
        )[:5]
        want = [
            (
                iso_utc_from_ns(last5m[i][0] * MS),
                "buy" if last5m[i][3] else "sell",
                last5m[i][1],
                last5m[i][2],
            )
            for i in order
        ]
        got = flow["large_trades_5m"]
        assert [(x["time"], x["side"], x["price"], x["qty"]) for x in got] == want
        for x in got:
            if size_unit == "base":
                assert x["notional"] == pytest.approx(x["price"] * x["qty"], rel=1e-12)
            else:
                assert x["notional"] is None
        _count("large_trades_5m")
        assert first is not None
        for key, w in (
            ("cvd_30m", 1_800_000),
            ("vwap_5m", 300_000),
            ("vwap_30m", 1_800_000),
            ("aggressor_buy_ratio_30s", 30_000),
            ("large_trades_5m", 300_000),
        ):
            assert flow[f"{key}_window_sec"] == _window(t_ms, w, first), key
        # Volatility over the whole seconds of (t - 5 min, t], as of the second's boundary.
        s = t // SEC
        at_s = states[s * 1000]
        per_second: dict[int, float] = {}
        for tm, _, q, buy, liq in at_s.trades:
            if not liq:  # second i holds (i - 1 s, i]
                per_second[-(-tm // 1000)] = per_second.get(-(-tm // 1000), 0.0) + (
                    q if buy else -q
                )
        signed = [per_second.get(i, 0.0) for i in range(s - 299, s + 1)]
        window_mids = [mids[(s - k) * 1000] for k in range(300, -1, -1)]
        # Seconds before the core's first whole-second boundary have no mid there either.
        first_boundary_s = -(-first // 1000)
        window_mids = [
            m if s - 300 + k >= first_boundary_s else None for k, m in enumerate(window_mids)
        ]
        rv, n_rv, lam, n_k = _plain_rv_kyle(window_mids, signed)
        assert vol["rv_5m_window_sec"] == n_rv
        assert vol["kyle_lambda_5m_window_sec"] == n_k
        if rv is None:
            assert vol["rv_5m_bps"] is None
        else:
            assert vol["rv_5m_bps"] == pytest.approx(rv, rel=1e-6, abs=2e-6)
            annual = rv * math.sqrt(YEAR_SEC / n_rv)
            assert vol["rv_5m_annualized_bps"] == pytest.approx(annual, rel=1e-6, abs=2e-4)
            _count("rv_5m_bps")
        if lam is None:
            assert vol["kyle_lambda_5m"] is None
        else:
            assert vol["kyle_lambda_5m"] == pytest.approx(lam, rel=1e-6, abs=1e-9)
            _count("kyle_lambda_5m")
    print(name, len(picks), "report times:", counts)
    assert counts["cvd_30m"] == len(picks) and counts["large_trades_5m"] == len(picks)
    assert counts["rv_5m_bps"] >= len(picks) - 2  # all but the first seconds of data
    assert counts["kyle_lambda_5m"] >= len(picks) - 4


# --- properties ------------------------------------------------------------------------

F = 250 * MS
T0 = 1_700_000_000 * SEC

#: (ms offset, side, size, price) with times that jump back (late trades) and far ahead.
tapes = st.lists(
    st.tuples(
        st.integers(0, 120_000),
        st.sampled_from(["B", "S", ""]),
        st.integers(1, 1_000),
        st.integers(1, 50),
    ),
    max_size=80,
)


@settings(max_examples=80, deadline=None)
@given(tape=tapes, window_buckets=st.integers(1, 200), probe=st.integers(1, 200))
def test_bucket_ring_sums_equal_brute_force(
    tape: list[tuple[int, str, int, int]], window_buckets: int, probe: int
) -> None:
    """Any arrival order (late trades included), any jump: the window sums of the ring
    equal sums over the trades in (t - W, t] that arrived before t's evaluation."""
    windows = (window_buckets, min(probe, window_buckets))
    ring = BucketRing(F, window_buckets * F, windows)
    applied: list[tuple[int, str, int, int]] = []
    clock = 0
    for offset, side, sz, px in tape:
        e = T0 + offset * MS
        if e > clock:  # the core evaluates each boundary before applying later entries
            clock = -(-e // F) * F
        ring.add(e, sz, side, px * sz * 10**15)  # notionals beyond 2**53 stay exact
        applied.append((e, side, sz, px))
        ring.advance(clock)
        for i, w in enumerate(windows):
            got = ring.sums(i)
            live = [x for x in applied if clock - w * F < x[0] <= clock]
            assert got[0] == sum(x[2] for x in live if x[1] == "B")
            assert got[1] == sum(x[2] for x in live if x[1] == "S")
            assert got[2] == sum(x[2] for x in live)
            # Each bucket holds the double nearest its running sum: exact in the window
            # sums (ints), within double rounding of the true sum.
            assert got[3] == pytest.approx(sum(x[2] * x[3] * 10**15 for x in live), rel=1e-12)
            assert got == _recount(ring, w)


def _recount(ring: BucketRing, w: int) -> list[int]:
    """The window's sums recomputed from the ring's slots (history independence)."""
    assert ring.head is not None
    cols = [ring.rows[:, k % ring.n].tolist() for k in range(ring.head - w + 1, ring.head + 1)]
    return [sum(int(c[r]) for c in cols) for r in range(4)]


@settings(max_examples=80, deadline=None)
@given(tape=tapes, window_ms=st.integers(250, 60_000), n=st.integers(1, 6))
def test_top_trades_equal_brute_force(
    tape: list[tuple[int, str, int, int]], window_ms: int, n: int
) -> None:
    top = TopTrades(window_ms * MS, n)
    top._limit = 4  # prune often
    applied: list[tuple[int, int, int]] = []  # (time, seq, value)
    clock = 0
    for seq, (offset, side, sz, px) in enumerate(tape, start=1):
        e = T0 + offset * MS
        clock = max(clock, -(-e // F) * F)
        top.add(e, px * sz, side, px, sz)
        applied.append((e, seq, px * sz))
        got = [(x[1], x[2], x[0]) for x in top.top(clock)]  # (time, seq, value)
        live = [x for x in applied if clock - window_ms * MS < x[0] <= clock]
        want = sorted(live, key=lambda x: (x[2], x[0], x[1]), reverse=True)[:n]
        assert got == want


def _brute_vol(
    mids: dict[int, float | None], signed: dict[int, int], s: int, window: int = 300
) -> tuple[float | None, int, float | None, int]:
    """Realised volatility and Kyle's slope over seconds (s - window, s] by the book."""
    r2: list[float] = []
    xy: list[tuple[float, float]] = []
    for i in range(s - window + 1, s + 1):
        a, b = mids.get(i - 1), mids.get(i)
        if a is None or b is None:
            continue
        r2.append(math.log(b / a) ** 2)
        xy.append((signed.get(i, 0), 1e4 * (b / a - 1)))
    rv = 1e4 * math.sqrt(math.fsum(r2)) if r2 else None
    lam = None
    if len(xy) >= 30:
        x = np.array([p[0] for p in xy], dtype=float)
        y = np.array([p[1] for p in xy])
        dx = x - x.mean()
        if float(np.dot(dx, dx)) > 0:
            lam = float(np.dot(dx, y - y.mean()) / np.dot(dx, dx))
    return rv, len(r2), lam, len(xy)


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.integers(1, 500),  # quarter-second boundaries to the next one (jumps)
            st.one_of(st.none(), st.floats(90.0, 110.0)),  # mid there (None: no book)
            st.lists(st.tuples(st.integers(-3, 0), st.integers(-50, 50)), max_size=4),
        ),
        max_size=80,
    )
)
def test_vol_seconds_equal_brute_force(
    steps: list[tuple[int, float | None, list[tuple[int, int]]]],
) -> None:
    """Carried-forward mids, skipped seconds, late trades: the O(1) sums give what a
    direct computation over the window gives."""
    vol = VolSeconds(300, 512)
    mids: dict[int, float | None] = {}
    signed: dict[int, int] = {}
    t = T0 + 3 * F  # starts between seconds: the first whole second starts the record
    for quarters, mid, trades in steps:
        t += quarters * F
        s = t // SEC
        # Trades applied before this boundary: in its second, or late (an older second).
        for back, size in trades:
            second = -(-t // SEC) + back
            if vol.last is not None and second <= vol.last - 400:
                continue  # beyond the ring: the core drops them too
            vol.add_trade(second, size)
            signed[second] = signed.get(second, 0) + size
        vol.record(t, mid)
        if vol.last is None:
            continue
        first_recorded = min(mids) if mids else s
        for i in range(max(first_recorded, max(mids, default=s - 1) + 1), s + 1):
            mids[i] = mid  # carried forward over skipped seconds
        rv, n_rv, lam, n_k = _brute_vol(mids, signed, s)
        got_rv, got_n = vol.rv_bps()
        assert got_n == n_rv
        assert (got_rv is None and rv is None) or got_rv == pytest.approx(rv, rel=1e-9, abs=1e-9)
        got_lam, got_k = vol.kyle_lambda(30, 1)
        assert got_k == n_k
        if lam is None or got_lam is None:
            assert lam is None and got_lam is None
        else:
            assert got_lam == pytest.approx(lam, rel=1e-6, abs=1e-9)


def test_kyle_lambda_recovers_a_linear_impact_and_needs_30_seconds() -> None:
    rng = np.random.default_rng(7)
    x = [int(v) for v in rng.integers(-500, 500, 300)]
    vol = VolSeconds(300, 512)
    t, mid = T0, 100.0
    vol.record(t, mid)
    for i, v in enumerate(x, start=1):
        vol.add_trade(t // SEC + 1, v)
        t += SEC
        mid *= 1 + 0.8 * v / 1e4  # exactly 0.8 bps per unit of size
        vol.record(t, mid)
        lam, n = vol.kyle_lambda(30, 1)
        assert n == i
        if i < 30:
            assert lam is None
    assert lam == pytest.approx(0.8, rel=1e-9)
    assert vol.kyle_lambda(30, 100) == (pytest.approx(80.0, rel=1e-9), 300)  # per base unit
    flat = VolSeconds(300, 512)
    for k in range(40):
        flat.record(T0 + k * SEC, 100.0 + k)  # no trades: no variation in x
    assert flat.kyle_lambda(30, 1) == (None, 39)
    assert flat.rv_bps()[0] is not None and flat.rv_bps()[1] == 39


@settings(max_examples=80, deadline=None)
@given(
    trades=st.lists(
        st.tuples(st.integers(1, 400), st.integers(1, 50), st.integers(0, 9_999)),
        min_size=10,
        max_size=120,
    ),
    bin_ticks=st.integers(1, 7),
    pp=st.integers(0, 3),
)
def test_volume_profile_convention(
    trades: list[tuple[int, int, int]], bin_ticks: int, pp: int
) -> None:
    """VAL <= POC <= VAH, POC the centre of the heaviest bin, [VAL, VAH] whole bins
    covering every price traded in the value area (the seed design's convention)."""
    slow = 2 * SEC
    prof = VolumeProfile(slow, 60 * slow, bin_ticks)
    bins: dict[int, int] = {}
    for px, sz, at_ms in trades:
        prof.add(T0 + at_ms * MS, px, sz, pp, 0)
        bins[px // bin_ticks] = bins.get(px // bin_ticks, 0) + sz
    out = prof.compute(T0 + 10 * SEC, T0)
    assert out is not None
    scale = 10**pp
    width = bin_ticks / scale
    assert out["bin_width"] == width
    assert out["VAL"] <= out["POC"] <= out["VAH"]
    peak = max(bins.values())
    poc_bin = max(b for b, v in bins.items() if v == peak)
    lower = poc_bin * bin_ticks / scale
    assert lower < out["POC"] < lower + width
    assert out["POC"] == pytest.approx(lower + width / 2, abs=1e-9)
    span = (out["VAH"] - out["VAL"]) / width
    assert span == pytest.approx(round(span), abs=1e-6) and round(span) >= 1
    lo_bin = round(out["VAL"] / width)
    hi_bin = round(out["VAH"] / width) - 1
    assert lo_bin <= poc_bin <= hi_bin
    in_area = sum(v for b, v in bins.items() if lo_bin <= b <= hi_bin)
    assert in_area >= 0.7 * sum(bins.values())
    for px, _, _ in trades:
        if lo_bin <= px // bin_ticks <= hi_bin:
            assert out["VAL"] <= px / scale < out["VAH"] + 1e-12
