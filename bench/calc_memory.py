"""Calc core memory per symbol with a full 30-minute trade window, and cycle cost there.

    uv run python bench/calc_memory.py [--session usdm-btc-0808] [--minutes 35]

Goal: <= 2 MB per symbol. The recordings are at most ~11 minutes, so the input is a
**splice**: one session's wire entries (made by ingest's own code, services.ingest.offline:
venue snapshot, diffs, trades, checkpoint snaps) repeated back to back, copy ``k``
shifted by ``k * P`` in event and receive time, where ``P`` = the session's span
rounded up to the slow cycle. Each copy starts with the session's venue snapshot, so
the book restarts cleanly at every copy (the sequence check passes as in the original)
and the trade rate is the session's own. Status entries (``down`` at the end of each
copy) are left out. Default session: USD-M BTCUSDT 2024-08-08, the busiest BTCUSDT
recording (~62 trades/s, ~19 diffs/s).

Two passes over the same splice (pass 3 below; ``--minutes 1445`` runs passes 1-2 over a
real 24 h splice instead: timing ~6 min, the traced pass over 30 min):
1. timing (no tracemalloc): fast/slow cycle compute time, measured only on the cycles
   in the full-window state (boundaries >= first event + 30 min);
2. memory (tracemalloc on): every entry is re-encoded and decoded through shared.wire
   (what the worker gets from Redis), so nothing the core keeps was allocated before
   tracing started. Core bytes = traced memory with the core alive, after gc, minus the
   traced memory before it was created; broken down by analytics module.

The 24 h statistics are a preallocated ring of 1440 blocks (services/calc/analytics/
trades.py), the same size after 30 minutes as after 24 h. Pass 3 checks that: a bare
StatsRing is fed one trade per fast cycle for 25 h of event time (the worst case, every
block full) under tracemalloc, and the bench prints its bytes and the projected core size
with a full 24 h window (30-min core + any growth of the ring beyond its 30-min size).
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from services.calc.analytics import CoreParams, SymbolCore
from services.calc.analytics.trades import DAY_NS, StatsRing
from services.ingest.offline import offline_feeds
from shared import wire

DATA = Path(__file__).resolve().parents[1] / "data"
DEMO = Path(__file__).resolve().parent.parent / "data"
SESSIONS: dict[str, list[Path]] = {
    "usdm-btc-0808": [DATA / "binance-usdm/BTCUSDT/btcusdt_20240808.gz"],
    "usdm-btc-0718": [
        DEMO / "binance-usdm/BTCUSDT/btcusdt_20240718.gz",
        DEMO / "binance-usdm/BTCUSDT/btcusdt_20240719.gz",
    ],
}
MIN = 60 * 1_000_000_000
WINDOW_NS = 30 * MIN


def session_entries(name: str) -> tuple[str, str, str, list[wire.Entry]]:
    (replay,) = offline_feeds(SESSIONS[name])
    entries = [e for e in replay.entries() if e.kind != "status"]
    return replay.feed.symbol, replay.feed.venue, replay.size_unit, entries


def splice(
    entries: list[wire.Entry], minutes: float, period_ns: int, fresh: bool
) -> Iterator[wire.Entry]:
    """The session repeated until ``minutes`` of event time are covered."""
    first = entries[0].event_ns
    span = max(e.event_ns for e in entries) - first
    period = -(-(span + 1) // period_ns) * period_ns
    end = first + int(minutes * MIN)
    k = 0
    while first + k * period <= end:
        shift = k * period
        for e in entries:
            if e.event_ns + shift > end:
                return
            if fresh:  # fresh objects, as decoded from a Redis reply
                yield wire.decode(wire.encode(e.payload, e.event_ns + shift, e.recv_ns + shift))
            else:
                yield wire.Entry(e.kind, e.event_ns + shift, e.recv_ns + shift, e.payload)
        k += 1


def timing_pass(
    symbol: str, venue: str, size_unit: str, entries: list[wire.Entry], minutes: float
) -> tuple[int, list[int], list[int], float]:
    params = CoreParams()
    core = SymbolCore(symbol, venue, params, size_unit)
    full_from = entries[0].event_ns + WINDOW_NS
    fast: list[int] = []
    slow: list[int] = []
    count = 0
    started = time.perf_counter()
    for entry in splice(entries, minutes, params.slow_cycle_ns, fresh=False):
        count += 1
        for cycle in core.apply(entry):
            if cycle.t_ns >= full_from:
                fast.append(cycle.fast_ns)
                if cycle.slow_ns:
                    slow.append(cycle.slow_ns)
    return count, fast, slow, time.perf_counter() - started


def memory_pass(
    symbol: str, venue: str, size_unit: str, entries: list[wire.Entry], minutes: float
) -> tuple[int, int]:
    """Prints the breakdown; returns (core bytes, bytes traced in trades.py)."""
    params = CoreParams()
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.take_snapshot()
    base_bytes = tracemalloc.get_traced_memory()[0]
    core = SymbolCore(symbol, venue, params, size_unit)
    for entry in splice(entries, minutes, params.slow_cycle_ns, fresh=True):
        core.apply(entry)
    gc.collect()
    total = tracemalloc.get_traced_memory()[0] - base_bytes
    snap = tracemalloc.take_snapshot()
    tracemalloc.stop()
    by_file = snap.compare_to(base, "filename")
    profile = core.slow.profile
    ring = core.trades.ring
    print(f"  core memory, full 30-min window: {total / 1e6:.2f} MB ({total:,} bytes)")
    print(
        f"    state at {minutes:g} min: book {len(core.book.bids)}+{len(core.book.asks)} "
        f"levels, {profile.trade_count:,} trades in the 30-min profile window, "
        f"{profile.cells:,} profile cells ({profile.nbytes / 1e3:.0f} kB of arrays), "
        f"24 h ring {ring.n} blocks of {ring.block_ns / 1e9:g} s ({ring.nbytes / 1e3:.0f} kB)"
    )
    per_module: list[tuple[str, int]] = []
    for stat in by_file:
        name = stat.traceback[0].filename
        if stat.size_diff > 0 and "/services/calc/" in name:
            per_module.append((name.split("/services/calc/")[1], stat.size_diff))
    for name, size in sorted(per_module, key=lambda x: -x[1])[:8]:
        print(f"    {name:28s} {size / 1e3:9.1f} kB")
    lines = [
        (
            f"{st.traceback[0].filename.split('/services/calc/')[1]}:{st.traceback[0].lineno}",
            st.size_diff,
        )
        for st in snap.compare_to(base, "lineno")
        if st.size_diff > 0 and "/services/calc/" in st.traceback[0].filename
    ]
    print("    largest lines: " + ", ".join(f"{n} {b / 1e3:.0f} kB" for n, b in lines[:5]))
    return total, dict(per_module).get("analytics/trades.py", 0)


def day_pass(core_bytes: int, trades_bytes_30min: int) -> None:
    """A bare 24 h ring through 25 h of event time, one trade every fast cycle."""
    params = CoreParams()
    step = params.fast_cycle_ns
    t0 = 1_723_075_200 * 1_000_000_000  # 2024-08-08 00:00 UTC
    cycles = (DAY_NS + 3_600 * 1_000_000_000) // step
    gc.collect()
    tracemalloc.start()
    base_bytes = tracemalloc.get_traced_memory()[0]
    ring = StatsRing(params.stats_window_ns, step, params.stats_max_blocks)
    started = time.perf_counter()
    for i in range(1, cycles + 1):
        t = t0 + i * step
        ring.add(t - 1, 600_000 + (i * 7919) % 4_001, 1 + i % 50)
        ring.advance(t)
        st = ring.stats(t)
    elapsed = time.perf_counter() - started
    gc.collect()
    ring_bytes = tracemalloc.get_traced_memory()[0] - base_bytes
    tracemalloc.stop()
    assert st.span_ns == DAY_NS and st.high is not None
    grown = max(0, ring_bytes - trades_bytes_30min)
    print(
        f"  24 h window: ring after 25 h of one trade per fast cycle = {ring_bytes / 1e3:.1f} kB "
        f"({ring.n} blocks x {ring.block_ns / 1e9:g} s; {cycles:,} cycles, {elapsed:.1f} s under "
        f"tracemalloc); projected core with a full "
        f"24 h window ~{(core_bytes + grown) / 1e6:.2f} MB per symbol"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--session", default="usdm-btc-0808", choices=sorted(SESSIONS))
    parser.add_argument("--minutes", type=float, default=35.0, help="spliced event time (>= 31)")
    args = parser.parse_args()
    if args.minutes <= 30:
        parser.error("--minutes must exceed 30 (the window must be full)")
    symbol, venue, size_unit, entries = session_entries(args.session)
    span_s = (entries[-1].event_ns - entries[0].event_ns) / 1e9
    n_trades = sum(e.kind == "trade" for e in entries)
    n_deltas = sum(e.kind == "delta" for e in entries)
    print(
        f"{args.session}: {symbol} {len(entries):,} entries over {span_s:.0f} s "
        f"({n_trades / span_s:.1f} trades/s, {n_deltas / span_s:.1f} diffs/s), "
        f"spliced to {args.minutes:g} min"
    )
    count, fast, slow, elapsed = timing_pass(symbol, venue, size_unit, entries, args.minutes)
    f = np.array(fast) / 1e3
    s = np.array(slow) / 1e3
    print(
        f"  timing ({count:,} entries, {elapsed:.1f} s, {count / elapsed:,.0f} entries/s); "
        f"full-window cycles: fast n={len(f)} p50={np.percentile(f, 50):.1f} µs "
        f"p99={np.percentile(f, 99):.1f} µs; slow n={len(s)} "
        f"p50={np.percentile(s, 50) / 1e3:.2f} ms p99={np.percentile(s, 99) / 1e3:.2f} ms"
    )
    core_bytes, trades_bytes = memory_pass(symbol, venue, size_unit, entries, args.minutes)
    day_pass(core_bytes, trades_bytes)


if __name__ == "__main__":
    main()
