"""Which candidate partitions this publisher reads: one reader per partition at a time.

Report candidates are partitioned by symbol (``keys.candidate_partition``), so every
candidate of a symbol travels one stream, in order. Each partition is read by exactly
one publisher, the holder of its lease (``keys.candidates_owner(p)``, ``SET NX PX``,
renewed every third of the TTL, only while still its own): one reader keeps a symbol's
reports in order, and per-symbol fencing (the calc worker's token) makes a second
delivery harmless anyway.

Publishers share the partitions evenly: each announces itself in ``keys.PUBLISHERS``
(``presence.lua``, server time, a TTL) and aims at ``ceil(P / live publishers)``
partitions: it gives up the partitions beyond its share (its readers finish their batch
first) and takes free ones up to it. A dead publisher's leases lapse after the TTL and
the others take its partitions over at their next step; a stopping one gives its
partitions back at once.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError

from shared import keys
from shared.redis_client import RedisClient
from shared.scripts import Scripts


def share(partitions: int, publishers: int) -> int:
    """Partitions each of ``publishers`` live publishers should read (ceil)."""
    return -(-partitions // max(1, publishers))


def plan(held: set[int], partitions: int, target: int, start: int) -> tuple[list[int], list[int]]:
    """(partitions to give up, partitions to try to take, in order) towards ``target``.

    Partitions are ordered from ``start`` (a per-publisher offset, so publishers that
    start together do not all race for partition 0); the ones given up are the last of
    that order, so a publisher keeps the same partitions while the number of
    publishers stays the same. Taking stops once the share is reached.
    """
    order = [(start + i) % partitions for i in range(partitions)]
    if len(held) > target:
        return [p for p in order if p in held][target:], []
    if len(held) < target:
        return [], [p for p in order if p not in held]
    return [], []


class PartitionKeeper:
    """The partition leases of one publisher (``node_id``)."""

    def __init__(
        self,
        client: RedisClient,
        node_id: str,
        partitions: int,
        ttl_ms: int,
        log: Any,
        on_loss: Callable[[int], Awaitable[None]],
    ) -> None:
        self._client = client
        self._scripts = Scripts(client)
        self.node_id = node_id
        self.partitions = partitions
        self.ttl_ms = ttl_ms
        self._log = log
        self._on_loss = on_loss
        #: Partitions taken over so far.
        self.taken = 0
        #: partition -> monotonic time until which its lease is surely held.
        self.held: dict[int, float] = {}
        self.publishers = 1
        self._start = zlib.crc32(node_id.encode()) % partitions
        self._renewed_at = 0.0

    @property
    def tick_s(self) -> float:
        """How often ``step`` should run: a fifth of the TTL."""
        return self.ttl_ms / 5000

    def valid(self, partition: int) -> bool:
        """True while this publisher surely holds ``partition``'s lease."""
        return time.monotonic() < self.held.get(partition, 0.0)

    async def step(self) -> None:
        """Announce, renew what is due, give up or take partitions towards the share."""
        sent = time.monotonic()
        self.publishers = int(
            await self._scripts(
                "presence", keys=[keys.PUBLISHERS], args=[self.node_id, self.ttl_ms]
            )
        )
        if self.held and sent - self._renewed_at >= self.ttl_ms / 3000:
            held = sorted(self.held)
            replies = await self._scripts.pipelined(
                "lease_renew",
                [([keys.candidates_owner(p)], [self.node_id, self.ttl_ms]) for p in held],
            )
            self._renewed_at = sent
            for partition, renewed in zip(held, replies, strict=True):
                if isinstance(renewed, Exception):
                    raise renewed
                if renewed:
                    self.held[partition] = sent + self.ttl_ms / 1000 * 0.9
                else:
                    await self._lose(partition, "lease lost")
        give_up, take = plan(
            set(self.held), self.partitions, share(self.partitions, self.publishers), self._start
        )
        for partition in give_up:
            await self._lose(partition, "beyond this publisher's share")
            await self._release(partition)
        target = share(self.partitions, self.publishers)
        for partition in take:
            if len(self.held) >= target:
                break
            got = await self._client.set(
                keys.candidates_owner(partition), self.node_id, nx=True, px=self.ttl_ms
            )
            if got:
                self.held[partition] = sent + self.ttl_ms / 1000 * 0.9
                self.taken += 1
                self._log.info("partition_taken", partition=partition, publishers=self.publishers)

    async def _lose(self, partition: int, why: str) -> None:
        self.held.pop(partition, None)
        self._log.info("partition_dropped", partition=partition, why=why)
        await self._on_loss(partition)

    async def _release(self, partition: int) -> None:
        try:
            await self._scripts(
                "lease_release", keys=[keys.candidates_owner(partition)], args=[self.node_id]
            )
        except RedisError as exc:
            self._log.warning("partition_release_failed", partition=partition, error=repr(exc))

    async def leave(self) -> None:
        """Give every partition back and withdraw from the publishers (a clean stop)."""
        for partition in sorted(self.held):
            await self._lose(partition, "stopping")
            await self._release(partition)
        try:
            await self._client.zrem(keys.PUBLISHERS, self.node_id)
        except RedisError as exc:
            self._log.warning("publisher_leave_failed", error=repr(exc))
