"""Helpers for the coordinator tests: polling with a deadline and simulated workers."""

from __future__ import annotations

import asyncio
import contextlib
import time

import redis.asyncio as aioredis
import structlog
from prometheus_client import CollectorRegistry

from services.coordinator.metrics import CoordinatorMetrics
from services.coordinator.service import Coordinator
from services.coordinator.settings import Settings
from shared import keys
from shared.lifecycle import Shutdown
from shared.membership import Membership
from shared.scripts import Scripts
from tests.support.polling import apoll

wait_for = apoll


class Worker:
    """A simulated calc worker: real shared.membership heartbeats every ``period`` s."""

    def __init__(self, client: aioredis.Redis, node_id: str, period: float = 0.1) -> None:
        self.node_id = node_id
        self.membership = Membership(client, Scripts(client), node_id)
        self._period = period
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> Worker:
        await self.membership.heartbeat()
        self._task = asyncio.create_task(self._beat())
        return self

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._period)  # heartbeat cadence
            await self.membership.heartbeat()

    async def silence(self) -> None:
        """Stop heartbeating without leaving (a crashed or partitioned worker)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def leave(self) -> None:
        await self.silence()
        await self.membership.leave()


class RunningCoordinator:
    """A Coordinator running its real loop in a task, with a private metrics registry."""

    def __init__(self, redis_url: str, node_id: str, **overrides: object) -> None:
        values: dict[str, object] = {
            "redis_url": redis_url,
            "node_id": node_id,
            "coordinator_tick_ms": 100,
            "coordinator_leader_ttl_ms": 1000,
            "coordinator_node_ttl_ms": 600,
            "coordinator_min_hold_ms": 0,
        }
        values.update(overrides)
        self.settings = Settings(**values)  # type: ignore[arg-type]
        self.client = aioredis.Redis.from_url(redis_url)
        self.pubsub_client = aioredis.Redis.from_url(redis_url)
        self.registry = CollectorRegistry()
        self.metrics = CoordinatorMetrics(self.registry)
        log = structlog.get_logger().bind(coordinator=node_id)
        self.coordinator = Coordinator(
            self.client, self.pubsub_client, self.settings, self.metrics, log
        )
        self.shutdown = Shutdown()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> RunningCoordinator:
        self.task = asyncio.create_task(self.coordinator.run(self.shutdown))
        return self

    def metric(self, name: str) -> float:
        value = self.registry.get_sample_value(name)
        return 0.0 if value is None else value

    def metric_labels(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    def metric_count(self, histogram: str) -> float:
        return self.metric(histogram + "_count")

    async def stop(self) -> None:
        self.shutdown.event.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, 5)
        await self.client.aclose()
        await self.pubsub_client.aclose()


async def assignment(client: aioredis.Redis) -> dict[str, str]:
    raw = await client.hgetall(keys.ASSIGNMENT)
    return {k.decode(): v.decode() for k, v in raw.items()}


async def leader(client: aioredis.Redis) -> str | None:
    raw = await client.get(keys.COORDINATOR_LEADER)
    return None if raw is None else raw.decode()


async def next_message(pubsub: aioredis.client.PubSub, timeout: float = 3.0) -> bytes:
    """The data of the next published message (subscribe confirmations skipped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
        if message is not None:
            data: bytes = message["data"]
            return data
    raise AssertionError(f"no pub/sub message within {timeout}s")
