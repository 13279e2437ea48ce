"""The bounded-memory windows against plain tapes: the 24 h block ring (minute trailing
edge, late trades, liquidations, gaps longer than a day) and the slow-keyed volume
profile with late trades."""

from __future__ import annotations

import math
import random

from services.calc.analytics.profile import VolumeProfile
from services.calc.analytics.trades import DAY_NS, Stats24h, StatsRing, block_width

MS = 1_000_000
SEC = 1_000 * MS
P = 250 * MS
T0 = 1_700_000_000 * SEC + 123 * MS


def _tape(
    rng: random.Random, hours: float, mean_gap_s: float, outages: float
) -> list[tuple[int, int, int, bool]]:
    """(event ns, price, size, liquidation) in arrival order, ~3 % arriving late, with
    outages of up to 3 h at a rate of ``outages`` per trade."""
    out = []
    t = T0
    px = 600_000
    end = T0 + int(hours * 3_600 * SEC)
    while t < end:
        t += int(rng.expovariate(1 / mean_gap_s) * SEC) + 1
        if rng.random() < outages:
            t += rng.randint(2, 30) * 3_600 * SEC // 10  # an outage of up to 3 h
        px = max(1_000, px + rng.randint(-60, 60))
        late = rng.random() < 0.03
        at = t - rng.randint(1, 6_000) * MS if late else t
        out.append((at, px, rng.randint(1, 900), rng.random() < 0.04))
    return out


def test_block_width() -> None:
    assert block_width(DAY_NS, P) == 60 * SEC
    assert block_width(60 * SEC, P) == P  # short windows: one block per fast cycle
    assert block_width(DAY_NS, 2 * SEC) == 60 * SEC
    assert block_width(7 * SEC, 250 * MS, max_blocks=5) == 1_750 * MS  # 28 cycles / 4


def test_ring_matches_plain_window_with_minute_edge() -> None:
    rng = random.Random(5)
    tape = _tape(rng, hours=27, mean_gap_s=9.0, outages=0.0005)
    ring = StatsRing(DAY_NS, P)
    g = ring.block_ns
    applied: Applied = []  # (event ns, price, size, fast bucket, liquidation, order)
    next_b = -(-tape[0][0] // P) * P
    checked = 0
    newest = tape[0][0]
    for order, (at, px, sz, liq) in enumerate(tape):
        # The core's clock: every boundary before the newest event time is closed first.
        while next_b < max(newest, at):
            if rng.random() < 0.004 or (next_b % g and rng.random() < 0.0005):
                ring.advance(next_b)
                _check(ring.stats(next_b), applied, next_b, g)
                checked += 1
            next_b += P
        newest = max(newest, at)
        ring.add(at, None if liq else px, sz)
        applied.append((at, px, sz, -(-at // P), liq, order))
    assert checked > 300
    assert ring.nbytes < 100_000


Applied = list[tuple[int, int, int, int, bool, int]]


def _check(st: Stats24h, applied: Applied, t: int, g: int) -> None:
    edge = -(-t // g) * g - DAY_NS
    assert st.span_ns == t - edge
    assert DAY_NS - g < st.span_ns <= DAY_NS
    window = [x for x in applied if edge < x[0] <= t]
    priced = [x for x in window if not x[4]]
    assert st.volume == sum(x[2] for x in window)
    if not priced:
        assert st.high is None and st.low is None and st.open is None and st.last is None
        return
    assert st.high == max(x[1] for x in priced)
    assert st.low == min(x[1] for x in priced)
    # open: the first applied trade of the oldest fast bucket; last: the last applied
    # trade of the newest one.
    assert st.open == min(priced, key=lambda x: (x[3], x[5]))[1]
    assert st.last == max(priced, key=lambda x: (x[3], x[5]))[1]


def test_profile_with_late_trades_matches_plain() -> None:
    rng = random.Random(8)
    slow = 2 * SEC
    window = 60 * SEC
    prof = VolumeProfile(slow, window, bin_ticks=5, min_trades=10)
    tape = _tape(rng, hours=0.1, mean_gap_s=0.05, outages=0.0)
    applied: list[tuple[int, int, int]] = []
    next_b = -(-tape[0][0] // slow) * slow
    newest = tape[0][0]
    checked = 0
    for at, px, sz, _ in tape:
        while next_b < max(newest, at):
            out = prof.compute(next_b, T0)
            live = [x for x in applied if next_b - window < x[0] <= next_b]
            assert prof.trade_count == len(live)
            bins: dict[int, int] = {}
            for _, p, q in live:
                bins[math.floor(p / 5)] = bins.get(math.floor(p / 5), 0) + q
            if len(live) < 10:
                assert out is None
                next_b += slow
                continue
            assert out is not None
            peak = max(bins.values())
            assert out["POC"] == (max(b for b, v in bins.items() if v == peak) * 5 + 2.5) / 10
            assert out["volume"] == sum(bins.values()) / 1000
            assert out["trade_count"] == len(live)
            checked += 1
            next_b += slow
        newest = max(newest, at)
        prof.add(at, px, sz, 1, 3)
        applied.append((at, px, sz))
    assert checked > 150
    assert prof.cells < 5 * len(tape)
