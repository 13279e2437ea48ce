"""Redis memory of one symbol's report history when both streams are full.

    uv run python bench/history_memory.py

Starts a private redis-server (default stream settings: stream-node-max-bytes 4096,
stream-node-max-entries 100), grants a writer token and runs the real
``fenced_publish.lua`` with rows from ``shared.history.encode_row`` until the 1 s stream
holds ``HISTORY_MAXLEN`` rows and the 1 min stream ``HISTORY_COARSE_MAXLEN``; then prints
``MEMORY USAGE ... SAMPLES 0`` (every node counted) of both. Two row mixes:

* ``typical``: BTCUSDT-like values (prices on a 0.1 tick, sizes to 3 decimals, ratios
  such as spread_bps and imbalance at full precision, i.e. 10 significant digits);
* ``worst``: every number a 10-significant-digit float with an exponent.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import orjson
import redis.asyncio as aioredis

from context8.redis_server import RedisServer
from shared import keys
from shared.history import (
    HISTORY_COARSE_MAXLEN,
    HISTORY_MAXLEN,
    HISTORY_PATHS,
    HISTORY_VERSION,
    encode_row,
)
from shared.lease import LeaseClient
from shared.scripts import Scripts

SYM = "BTCUSDT"


def typical_report(rng: random.Random, mid: float) -> dict[str, Any]:
    bid, ask = round(mid - 0.05, 1), round(mid + 0.05, 1)
    bid_qty, ask_qty = round(rng.uniform(0.001, 9), 3), round(rng.uniform(0.001, 9), 3)
    total_bid, total_ask = round(rng.uniform(50, 400), 3), round(rng.uniform(50, 400), 3)
    return {
        "last_price": round(mid + rng.choice((-0.05, 0.05)), 1),
        "mid_price": (bid + ask) / 2,
        "micro_price": (bid * ask_qty + ask * bid_qty) / (bid_qty + ask_qty),
        "spread_bps": (ask - bid) / mid * 1e4,
        "best_bid": {"price": bid, "qty": bid_qty},
        "best_ask": {"price": ask, "qty": ask_qty},
        "depth": {
            "total_bid_qty": total_bid,
            "total_ask_qty": total_ask,
            "imbalance": (total_bid - total_ask) / (total_bid + total_ask),
        },
        "flow": {
            "orders_per_sec": rng.randint(0, 400) / 4,
            "net_flow": round(rng.gauss(0, 3), 3),
            "cvd_30m": round(rng.gauss(0, 300), 3),
            "vwap_5m": mid + rng.gauss(0, 10),
            "vwap_30m": mid + rng.gauss(0, 30),
            "aggressor_buy_ratio_30s": rng.random(),
            "liquidations_30m": {"count": 0, "qty": 0.0},
        },
        "volatility": {
            "rv_5m_bps": rng.uniform(1, 20),
            "rv_5m_annualized_bps": rng.uniform(1000, 20000),
            "kyle_lambda_5m": rng.gauss(0, 0.5),
        },
        "liquidity": {
            "volume_profile": {
                "POC": round(mid, 1),
                "VAH": round(mid + 12.3, 1),
                "VAL": round(mid - 9.8, 1),
                "window_sec": 1800.0,
                "trade_count": rng.randint(10_000, 200_000),
            }
        },
        "health": {"score": rng.randint(80, 100)},
        "ingestion": {"status": "ok"},
        "data_age_ms": rng.randint(20, 400),
        "change_24h_pct": rng.gauss(0, 2),
        "high_24h": round(mid * 1.02, 1),
        "low_24h": round(mid * 0.98, 1),
        "volume_24h": round(rng.uniform(1e5, 3e5), 3),
    }


def worst_report(rng: random.Random) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for path in HISTORY_PATHS[HISTORY_VERSION]:
        node = report
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = -rng.uniform(1, 9.999) * 10.0 ** rng.randint(-300, -100)
    return report


async def fill(client: aioredis.Redis, mix: str) -> tuple[int, int, float]:
    await client.flushall()
    scripts = Scripts(client)
    lease = await LeaseClient(scripts, "bench", 60_000, 100).acquire(SYM)
    assert lease is not None
    rng = random.Random(7)
    mid = 64_000.0
    event = 1_700_000_000_000
    row_bytes = 0
    writes = max(HISTORY_MAXLEN, HISTORY_COARSE_MAXLEN) + 10
    batch: list[tuple[list[Any], list[Any]]] = []
    for i in range(writes):
        mid = round(mid + rng.gauss(0, 5), 1)
        event += 60_000  # a new minute every write: a row in both streams
        row = encode_row(typical_report(rng, mid) if mix == "typical" else worst_report(rng))
        row_bytes += len(row)
        batch.append(
            (
                [
                    keys.token(SYM),
                    keys.report(SYM),
                    keys.audit(SYM),
                    keys.history(SYM),
                    keys.history_coarse(SYM),
                    keys.report_updates(SYM),
                ],
                [lease.token, event, "bench", b"{}", event, 10, row, HISTORY_MAXLEN, 1440],
            )
        )
        if len(batch) == 500 or i == writes - 1:
            results = await scripts.pipelined("fenced_publish", batch)
            assert all(r[0] == 1 for r in results), results[:3]
            batch = []
    fine = await client.memory_usage(keys.history(SYM), samples=0)
    coarse = await client.memory_usage(keys.history_coarse(SYM), samples=0)
    assert await client.xlen(keys.history(SYM)) == HISTORY_MAXLEN
    assert await client.xlen(keys.history_coarse(SYM)) == HISTORY_COARSE_MAXLEN
    return int(fine or 0), int(coarse or 0), row_bytes / writes


async def main() -> None:
    server = RedisServer().start()
    client = aioredis.Redis.from_url(server.url)
    try:
        info = await client.info("server")
        print(f"redis {info['redis_version']}")
        for mix in ("typical", "worst"):
            fine, coarse, avg = await fill(client, mix)
            print(
                orjson.dumps(
                    {
                        "mix": mix,
                        "avg_row_bytes": round(avg, 1),
                        "hist_1s_bytes": fine,
                        "hist_1m_bytes": coarse,
                        "total_bytes": fine + coarse,
                        "total_MiB": round((fine + coarse) / 2**20, 3),
                    }
                ).decode()
            )
    finally:
        await client.aclose()
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
