"""Cost of the ``derivatives`` report section on the calc fast cycle.

    uv run python bench/calc_derivatives.py [--liquidations-per-s 10]

The USDⓈ-M BTCUSDT session goes through ingest's own code (services.ingest.offline), and
derivative entries are added the way live mode gets them from the venue emulator
(context8/emulator/derivatives.py: a mark / funding entry per exchange second,
liquidations from every 20th trade at most one per second, open interest every 3 s),
parsed by ingest's Binance parser. The same core the worker runs replays the session
three times: without derivative entries, with them, and with a liquidation storm
(``--liquidations-per-s`` extra liquidations per second, i.e. thousands inside the
5-minute window). Printed: fast-cycle p50/p99 of each run, the time spent in
``DerivativesState.fields`` per cycle, and the section's JSON size.
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from context8.emulator.book import BookKeeper
from context8.emulator.derivatives import Synthesiser, binance_open_interest_body
from context8.emulator.recording import Kind, load_symbol
from services.calc.analytics import SymbolCore
from services.calc.analytics.derivatives import DerivativesState
from services.ingest.feeds import Feed
from services.ingest.offline import offline_entries
from services.ingest.recorded import RawLine
from services.ingest.records import wire_fields
from services.ingest.venues.binance.parsing import BinanceParser
from shared import wire

DATA = Path(__file__).resolve().parents[1] / "data"
FILES = [
    DATA / "binance-usdm/BTCUSDT/btcusdt_20240718.gz",
    DATA / "binance-usdm/BTCUSDT/btcusdt_20240719.gz",
]
MS = 1_000_000


def derivative_entries(storm_per_s: int) -> list[wire.Entry]:
    feed = Feed("BINANCE", "usdm", "BTCUSDT", "BTCUSDT", 1, 3)
    parser = BinanceParser(feed)
    keeper = BookKeeper("binance", True)
    synth = Synthesiser("binance", "BTCUSDT", True)
    out: list[wire.Entry] = []
    next_oi = 0
    storm_next = 0
    for ev in load_symbol("binance-usdm", "BTCUSDT", FILES).events:
        keeper.apply(ev)
        t_ms = ev.t + ev.offset
        records: list[Any] = [
            parser.parse(RawLine(t_ms * MS, f.text.encode(), 0))
            for f in synth.observe(ev, keeper)
            if f.kind in (Kind.MARK, Kind.LIQUIDATION)
        ]
        if t_ms >= next_oi:
            body = orjson.dumps(binance_open_interest_body("BTCUSDT", None, t_ms))
            records.append(parser.open_interest(body, t_ms * MS))
            next_oi = t_ms + 3000
        if storm_per_s and t_ms >= storm_next:
            side = "long" if (t_ms // 1000) % 2 else "short"
            for k in range(storm_per_s):
                payload = wire.LiquidationPayload(side, 60_000.0 + k, 0.01 * (k + 1))
                out.append(wire.Entry("liq", t_ms * MS + k, t_ms * MS, payload))
            storm_next = t_ms + 1000
        for record in records:
            _, fields = wire_fields(record, 1, 3)
            out.append(wire.decode(fields))
    return out


def interleave(market: list[wire.Entry], derived: list[wire.Entry]) -> list[wire.Entry]:
    derived = sorted(derived, key=lambda e: e.event_ns)
    out: list[wire.Entry] = []
    i = 0
    for entry in market:
        while i < len(derived) and derived[i].event_ns <= entry.event_ns:
            out.append(derived[i])
            i += 1
        out.append(entry)
    return out


def run(label: str, entries: list[wire.Entry]) -> None:
    core = SymbolCore("BTCUSDT", "BINANCE")
    state = core.derivatives
    inner = state.fields
    spent: list[int] = []

    def timed(t_ns: int) -> dict[str, Any] | None:
        started = time.perf_counter_ns()
        out = inner(t_ns)
        spent.append(time.perf_counter_ns() - started)
        return out

    state.fields = timed  # type: ignore[method-assign]
    fast: list[int] = []
    section: list[int] = []
    for entry in entries:
        for cycle in core.apply(entry):
            fast.append(cycle.fast_ns)
            d = cycle.report.get("derivatives")
            if d is not None:
                section.append(len(orjson.dumps(d)))
    f = np.array(fast) / 1e3
    s = np.array(spent) / 1e3
    window = sum(len(side.times) for side in state.sides.values())
    print(
        f"{label:22s} entries={len(entries):6d} cycles={len(fast):5d} "
        f"fast p50={np.percentile(f, 50):6.1f}µs p99={np.percentile(f, 99):6.1f}µs  "
        f"fields() p50={np.percentile(s, 50):5.1f}µs p99={np.percentile(s, 99):5.1f}µs  "
        f"section bytes={int(np.percentile(section, 50)) if section else 0} "
        f"liquidations in window at end={window}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--liquidations-per-s", type=int, default=10)
    args = parser.parse_args()
    (market,) = offline_entries(FILES).values()
    market = list(market)
    last = max(e.event_ns for e in market)
    derived = [e for e in derivative_entries(0) if e.event_ns <= last]
    storm = [e for e in derivative_entries(args.liquidations_per_s) if e.event_ns <= last]
    for _ in range(2):  # alternate, the machine is shared
        run("market data only", market)
        run("with derivatives", interleave(market, derived))
        run(f"+{args.liquidations_per_s} liquidations/s", interleave(market, storm))
    for per_s in (1, args.liquidations_per_s):
        window_memory(per_s)


def window_memory(per_s: int) -> None:
    """Bytes a ``DerivativesState`` holds with its 5-minute liquidation window full at
    ``per_s`` liquidations a second (traced, after gc): the goal is <= 2 MB per symbol
    for the whole core (bench/calc_memory.py measures the rest)."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    state = DerivativesState()
    t0 = 1_723_161_600_000_000_000
    n = 300 * per_s
    for i in range(n):
        at = t0 + i * 1_000_000_000 // per_s
        side = "long" if i % 2 else "short"
        state.add(
            at, wire.LiquidationPayload(side=side, px=61_000.0 + i % 7, sz=0.01 * (i % 5 + 1))
        )
    state.fields(t0 + 300 * 1_000_000_000)  # settles every entry into the window
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    count = sum(len(side.times) for side in state.sides.values())
    print(orjson.dumps({"liquidation_window": f"{per_s}/s", "held": count, "bytes": held}).decode())


if __name__ == "__main__":
    main()
