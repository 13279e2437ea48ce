"""Cost of the asset report (one asset across markets) on the three BTC recordings.

    uv run python bench/asset_core.py

Binance spot BTCUSDT, USDⓈ-M BTCUSDT and COIN-M BTCUSD_PERP of 2024-08-08 (23:54 ->
00:00 UTC) go through ingest's own code (services.ingest.offline) and then, merged by
event time, through the asset core the owning calc worker runs
(services/calc/analytics/asset.py), the watermark advanced every 256 entries as the
owner reads them. Printed: per entry apply time, per released boundary report time
(p50/p99), the report's JSON size, and the core's traced memory at the end.
"""

from __future__ import annotations

import gc
import heapq
import json
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from services.calc.analytics.asset import AssetCore, AssetParams
from services.ingest.offline import IngestOptions, offline_feeds
from shared import assets

DATA = Path(__file__).resolve().parents[1] / "data"
FILES = [
    DATA / "binance-spot/BTCUSDT/btcusdt_20240808.gz",
    DATA / "binance-usdm/BTCUSDT/btcusdt_20240808.gz",
    DATA / "binance-coinm/BTCUSD_PERP/btcusd_perp_20240808.gz",
]
ADVANCE_EVERY = 256


def main() -> None:
    replays = offline_feeds(FILES, IngestOptions(symbol_map="binance-spot:BTCUSDT=BTCUSDTSPOT"))
    registry: dict[str, bytes | str] = {
        fr.feed.symbol: json.dumps(fr.feed.registration()) for fr in replays
    }
    (members,) = assets.assets(registry).values()
    entries = list(
        heapq.merge(
            *([(e.event_ns, fr.feed.symbol, e) for e in fr.entries()] for fr in replays),
            key=lambda item: item[0],
        )
    )
    for _ in range(2):  # timing, twice: the machine may be shared
        report(run(members, entries, traced=False))
    report(run(members, entries, traced=True))  # memory (tracemalloc slows everything)


def run(members: list[assets.Member], entries: list[Any], traced: bool) -> dict[str, Any]:
    gc.collect()
    if traced:
        tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0] if traced else 0
    core = AssetCore("BTC", members, AssetParams())
    apply_ns = 0
    per_report: list[float] = []
    size = 0
    for n, (_, symbol, entry) in enumerate(entries, start=1):
        started = time.perf_counter_ns()
        core.apply(symbol, entry)
        apply_ns += time.perf_counter_ns() - started
        if n % ADVANCE_EVERY == 0:
            started = time.perf_counter_ns()
            released = core.advance()
            took = time.perf_counter_ns() - started
            if released:
                per_report += [took / len(released) / 1000] * len(released)
                size = len(orjson.dumps(released[-1][1]))
    out: dict[str, Any] = {"entries": len(entries), "reports": len(per_report)}
    if traced:
        gc.collect()
        out["core_bytes"] = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        return out
    out.update(
        apply_us_per_entry=round(apply_ns / len(entries) / 1000, 2),
        report_us_p50=round(float(np.percentile(per_report, 50)), 1),
        report_us_p99=round(float(np.percentile(per_report, 99)), 1),
        report_json_bytes=size,
    )
    return out


def report(numbers: dict[str, Any]) -> None:
    print(orjson.dumps(numbers).decode())


if __name__ == "__main__":
    main()
