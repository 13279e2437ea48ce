"""Calc cycle cost on real recorded data: fast/slow cycle p50/p99 (µs), report bytes.

    uv run python bench/calc_cycles.py [--sessions usdm-btc,usdm-eth,spot-btc,coinm-btc]

Each session's files go through ingest's own code (services.ingest.offline: the same
parsing, sequencing and wire entries as the ingest service), then through the same core
the worker runs (services.calc.analytics); it prints, per symbol: entries, cycles,
fast-cycle and slow-cycle compute time percentiles, whole-replay throughput and the
size of the report JSON (orjson).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import orjson

from services.calc.analytics import SymbolCore, with_writer
from services.ingest.offline import offline_entries

DATA = Path(__file__).resolve().parents[1] / "data"
DEMO = Path(__file__).resolve().parent.parent / "data"
SESSIONS: dict[str, tuple[str, list[Path]]] = {
    "usdm-btc": (
        "BTCUSDT",
        [
            DEMO / "binance-usdm/BTCUSDT/btcusdt_20240718.gz",
            DEMO / "binance-usdm/BTCUSDT/btcusdt_20240719.gz",
        ],
    ),
    "usdm-eth": (
        "ETHUSDT",
        [
            DEMO / "binance-usdm/ETHUSDT/ethusdt_20240718.gz",
            DEMO / "binance-usdm/ETHUSDT/ethusdt_20240719.gz",
        ],
    ),
    "spot-btc": (
        "BTCUSDT",
        [
            DATA / "binance-spot/BTCUSDT/btcusdt_20240808.gz",
        ],
    ),
    "coinm-btc": (
        "BTCUSDPERP",
        [
            DATA / "binance-coinm/BTCUSD_PERP/btcusd_perp_20240808.gz",
        ],
    ),
}


def bench(name: str) -> None:
    symbol, paths = SESSIONS[name]
    (entries,) = offline_entries(paths).values()
    core = SymbolCore(
        symbol, "BINANCE", size_unit="contracts" if name.startswith("coinm") else "base"
    )
    fast: list[int] = []
    slow: list[int] = []
    sizes: list[int] = []
    started = time.perf_counter()
    for entry in entries:
        for cycle in core.apply(entry):
            fast.append(cycle.fast_ns)
            if cycle.slow_ns:
                slow.append(cycle.slow_ns)
            sizes.append(len(orjson.dumps(with_writer(cycle.report, "bench", 1))))
    elapsed = time.perf_counter() - started
    f = np.array(fast) / 1e3
    s = np.array(slow) / 1e3
    print(
        f"{name:10s} {symbol:10s} entries={len(entries):6d} cycles={len(fast):5d} "
        f"fast p50={np.percentile(f, 50):7.1f}µs p99={np.percentile(f, 99):7.1f}µs  "
        f"slow p50={np.percentile(s, 50):7.1f}µs p99={np.percentile(s, 99):7.1f}µs  "
        f"replay={len(entries) / elapsed:8.0f} entries/s  "
        f"report bytes p50={int(np.percentile(sizes, 50))} max={max(sizes)} "
        f"levels={len(core.book.bids)}+{len(core.book.asks)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default=",".join(SESSIONS))
    args = parser.parse_args()
    for name in args.sessions.split(","):
        bench(name)


if __name__ == "__main__":
    main()
