"""Helpers for the publisher tests: valid reports, candidates, a publisher under test."""

from __future__ import annotations

from typing import Any

import orjson
import redis.asyncio as aioredis
import structlog
from prometheus_client import CollectorRegistry

from services.publisher.metrics import PublisherMetrics
from services.publisher.service import Publisher
from services.publisher.settings import Settings
from shared import keys
from shared.candidate import Candidate, encode_candidate
from shared.report import iso_utc_from_ns
from tests.support.candidates import all_streams, stream_of
from tests.support.polling import apoll


def report_dict(symbol: str, token: int, node: str, event_ms: int) -> dict[str, Any]:
    """A schema-1.2-valid report as the calc sends it (updatedAt 0)."""
    iso = iso_utc_from_ns(event_ms * 1_000_000)
    level = {"price": 64000.5, "qty": 1.25}
    return {
        "schemaVersion": "1.2",
        "writer": {"nodeId": node, "writerToken": token},
        "updatedAt": 0,
        "symbol": symbol,
        "venue": "BINANCE",
        "generated_at": iso,
        "data_age_ms": 12,
        "ingestion": {"status": "ok", "last_update": iso},
        "last_price": 64000.7,
        "change_24h_pct": None,
        "high_24h": None,
        "low_24h": None,
        "volume_24h": None,
        "best_bid": level,
        "best_ask": {"price": 64001.0, "qty": 0.5},
        "spread_bps": 0.078,
        "mid_price": 64000.75,
        "micro_price": 64000.8,
        "depth": {
            "bids": [level],
            "asks": [{"price": 64001.0, "qty": 0.5}],
            "total_bid_qty": 1.25,
            "total_ask_qty": 0.5,
            "imbalance": 0.4286,
        },
        "flow": {"orders_per_sec": 3.5, "net_flow": -0.25},
        "health": {"score": 90, "components": [{"metric": "freshness", "score": 90}]},
    }


def candidate_fields(
    symbol: str, token: int, node: str, event_ms: int, report: dict[str, Any] | None = None
) -> dict[bytes, bytes]:
    body = report if report is not None else report_dict(symbol, token, node, event_ms)
    return encode_candidate(Candidate(symbol, token, node, event_ms, orjson.dumps(body)))


async def add_candidate(
    client: aioredis.Redis, symbol: str, token: int, node: str, event_ms: int
) -> bytes:
    entry_id: bytes = await client.xadd(
        stream_of(symbol),
        candidate_fields(symbol, token, node, event_ms),  # type: ignore[arg-type]
    )
    return entry_id


class PublisherUnderTest:
    """A real Publisher with a private metrics registry."""

    def __init__(
        self,
        redis_url: str,
        node_id: str = "pub-1",
        client: Any = None,
        **overrides: object,
    ) -> None:
        """``client``: use this one (e.g. a cluster client) instead of one for ``redis_url``."""
        values: dict[str, object] = {
            "redis_url": redis_url,
            "node_id": node_id,
            "publisher_block_ms": 50,
        }
        values.update(overrides)
        self.settings = Settings(**values)  # type: ignore[arg-type]
        self._own_client = client is None
        self.client = aioredis.Redis.from_url(redis_url) if client is None else client
        self.registry = CollectorRegistry()
        self.metrics = PublisherMetrics(self.registry)
        self.publisher = Publisher(
            self.client, self.settings, self.metrics, structlog.get_logger().bind(test=node_id)
        )

    async def start(self) -> None:
        """Take the partitions (alone: all of them) and open each, as the run loop does."""
        await self.publisher.keeper.step()
        for partition in sorted(self.publisher.keeper.held):
            await self.publisher.open(partition)

    async def step(self) -> int:
        """One batch of every partition held (no blocking)."""
        return sum([await self.publisher.poll(p, None) for p in sorted(self.publisher.keeper.held)])

    def metric(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    def rejected(self, reason: str) -> float:
        return self.metric("context8_publisher_rejected_total", reason=reason)

    @property
    def accepted(self) -> float:
        return self.metric("context8_publisher_accepted_total")

    async def close(self) -> None:
        if self._own_client:
            await self.client.aclose()


wait_for = apoll


async def pending_count(client: aioredis.Redis) -> int:
    total = 0
    for stream in all_streams():
        if await client.exists(stream):
            info = await client.xpending(stream, keys.PUBLISHER_GROUP)
            total += int(info["pending"])
    return total
