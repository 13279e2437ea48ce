"""Window eviction (24 h stats, flow, volume profile) with short windows vs a plain tape."""

from __future__ import annotations

import math
import random

import pytest

from services.calc.analytics import CoreParams, SymbolCore
from services.calc.analytics.slow import SlowParams
from shared.wire import Entry, SnapPayload, TradePayload

MS = 1_000_000
SEC = 1_000 * MS
T0 = 1_700_000_000 * SEC


def test_short_windows_evict_exactly() -> None:
    params = CoreParams(stats_window_ns=60 * SEC, slow=SlowParams(profile_window_ns=20 * SEC))
    core = SymbolCore("BTCUSDT", "BINANCE", params)
    rng = random.Random(11)
    snap = SnapPayload(u=1, pp=1, sp=3, b=[(600_000, 1_000)], a=[(600_001, 1_000)])
    core.apply(Entry("snap", T0, T0, snap))
    tape: list[tuple[int, int, int, str, bool]] = []
    t = T0
    reports = {}
    for _ in range(3_000):
        t += rng.randint(0, 120) * MS
        trade = (
            t,
            600_000 + rng.randint(-400, 400),
            rng.randint(1, 900),
            rng.choice("BS"),
            rng.random() < 0.05,
        )
        tape.append(trade)
        payload = TradePayload(
            id="t", px=trade[1], sz=trade[2], pp=1, sp=3, side=trade[3], liq=trade[4]
        )
        for cycle in core.apply(Entry("trade", t, t, payload)):
            reports[cycle.t_ns] = cycle.report
    assert (t - T0) / SEC > 150  # several times the windows
    checked = 0
    for bt, report in reports.items():
        if bt % (2 * SEC) or bt < T0 + 30 * SEC:
            continue
        seen = [x for x in tape if x[0] <= bt]
        day = [x for x in seen if bt - 60 * SEC < x[0]]
        priced = [x for x in day if not x[4]]
        assert report["high_24h"] == max(x[1] for x in priced) / 10
        assert report["low_24h"] == min(x[1] for x in priced) / 10
        assert report["volume_24h"] == pytest.approx(sum(x[2] for x in day) / 1000)
        change = (priced[-1][1] - priced[0][1]) / priced[0][1] * 100
        assert report["change_24h_pct"] == pytest.approx(round(change, 4), abs=1e-9)
        assert report["stats_24h_window_sec"] == min(60, (bt - T0) / SEC)
        count = sum(1 for x in seen if bt - 10 * SEC < x[0])
        assert report["flow"]["orders_per_sec"] == count / 10
        net = sum(x[2] if x[3] == "B" else -x[2] for x in seen if bt - 30 * SEC < x[0])
        assert report["flow"]["net_flow"] == pytest.approx(net / 1000)
        prof = [x for x in seen if bt - 20 * SEC < x[0] and not x[4]]
        vp = report["liquidity"]["volume_profile"]
        assert vp["trade_count"] == len(prof) and vp["window_sec"] == 20  # full: bt >= T0 + 30 s
        bins: dict[int, int] = {}
        for x in prof:
            bins[math.floor(x[1] / 5)] = bins.get(math.floor(x[1] / 5), 0) + x[2]
        peak = max(bins.values())
        assert vp["POC"] == (max(b for b, v in bins.items() if v == peak) * 5 + 2.5) / 10
        assert vp["volume"] == pytest.approx(sum(bins.values()) / 1000)
        checked += 1
    assert checked > 50
