"""Publisher throughput: fenced writes per second of one publisher process (one core).

    uv run python bench/coord_publish_throughput.py [--candidates 20000] [--symbols 100]

Starts a private redis-server, grants one writer lease per symbol, XADDs the candidates
(realistic reports with 20 levels a side, increasing event times) and times a Publisher
draining them with schema validation on and off; also prints the per-candidate cost of
the compiled schema check versus jsonschema.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import orjson
import redis.asyncio as aioredis
import structlog
from prometheus_client import CollectorRegistry

from context8.redis_server import RedisServer
from services.publisher.metrics import PublisherMetrics
from services.publisher.schema_check import compile_schema
from services.publisher.service import Publisher
from services.publisher.settings import Settings
from shared import keys
from shared.candidate import Candidate, encode_candidate
from shared.lease import LeaseClient
from shared.report import _validator, iso_utc_from_ns, report_schema
from shared.scripts import Scripts


def report(symbol: str, token: int, event_ms: int) -> dict[str, Any]:
    iso = iso_utc_from_ns(event_ms * 1_000_000)
    bids = [{"price": 64000.0 - i, "qty": 1.0 + i} for i in range(20)]
    asks = [{"price": 64001.0 + i, "qty": 1.0 + i} for i in range(20)]
    return {
        "schemaVersion": "1.1",
        "writer": {"nodeId": "calc-1", "writerToken": token},
        "updatedAt": 0,
        "symbol": symbol,
        "venue": "BINANCE",
        "generated_at": iso,
        "data_age_ms": 5,
        "ingestion": {"status": "ok", "last_update": iso},
        "last_price": 64000.5,
        "change_24h_pct": 1.2,
        "high_24h": 65000.0,
        "low_24h": 63000.0,
        "volume_24h": 1234.5,
        "best_bid": bids[0],
        "best_ask": asks[0],
        "spread_bps": 0.16,
        "mid_price": 64000.5,
        "micro_price": 64000.6,
        "depth": {
            "bids": bids,
            "asks": asks,
            "total_bid_qty": 230.0,
            "total_ask_qty": 230.0,
            "imbalance": 0.0,
        },
        "flow": {"orders_per_sec": 12.0, "net_flow": 0.5},
        "health": {"score": 95, "components": [{"metric": "freshness", "score": 95}]},
    }


async def run(url: str, n: int, n_symbols: int, validate: bool) -> float:
    client = aioredis.Redis.from_url(url)
    await client.flushall()
    symbols = [f"S{i}USDT" for i in range(n_symbols)]
    leases = LeaseClient(Scripts(client), "calc-1", 600_000, 100)
    tokens = {s: (await leases.acquire(s)).token for s in symbols}  # type: ignore[union-attr]
    settings = Settings(
        redis_url=url, node_id="bench", publisher_validate=validate, publisher_block_ms=10
    )
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        s = symbols[i % n_symbols]
        body = orjson.dumps(report(s, tokens[s], 1_721_300_000_000 + i))
        pipe.xadd(
            keys.candidates_of(s, settings.candidate_partitions),
            encode_candidate(Candidate(s, tokens[s], "calc-1", 1_721_300_000_000 + i, body)),
        )
    await pipe.execute()
    registry = CollectorRegistry()
    pub = Publisher(client, settings, PublisherMetrics(registry), structlog.get_logger())
    await pub.keeper.step()  # alone: every partition
    t0 = time.perf_counter()
    done = 0
    for partition in sorted(pub.keeper.held):
        await pub.open(partition)
    while done < n:
        for partition in sorted(pub.keeper.held):
            done += await pub.poll(partition, None)
    elapsed = time.perf_counter() - t0
    accepted = registry.get_sample_value("context8_publisher_accepted_total")
    assert accepted == n, (accepted, n)
    await client.aclose()
    return n / elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--candidates", type=int, default=20_000)
    ap.add_argument("--symbols", type=int, default=100)
    a = ap.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    doc = report("BTCUSDT", 1, 1_721_300_000_000)
    fast, reference = compile_schema(report_schema()), _validator("report-1.2.json")
    for name, check, reps in (
        ("compiled check", fast, 5000),
        ("jsonschema", reference.is_valid, 300),
    ):
        t0 = time.perf_counter()
        for _ in range(reps):
            assert check(doc)
        print(f"{name}: {(time.perf_counter() - t0) / reps * 1e6:.0f} us per report")
    with RedisServer() as server:
        for validate in (True, False):
            rate = asyncio.run(run(server.url, a.candidates, a.symbols, validate))
            print(
                f"publisher, validate={validate}: {rate:,.0f} candidates/s "
                f"({a.candidates} candidates over {a.symbols} symbols, batch 256)"
            )


if __name__ == "__main__":
    main()
