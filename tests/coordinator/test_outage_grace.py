"""A Redis outage longer than the node TTL does not look like every worker dying.

Pure: ``OutageGrace`` stretches the prune TTL by the blind stretch, for one TTL. Against a
real Redis: the coordinator reaches Redis through a TCP proxy that drops every connection
for 1.5 s while the workers cannot heartbeat either (node TTL 600 ms); when the coordinator
sees Redis again before the workers do, it keeps them, and a worker that really died is
still dropped afterwards.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import redis.asyncio as aioredis

from services.coordinator.outage import OutageGrace
from shared import keys
from tests.chaos.tcp_proxy import TcpProxy
from tests.coordinator.helpers import RunningCoordinator, Worker, assignment, wait_for
from tests.coordinator.test_coordinator import SYMBOLS, register

OUTAGE_S = 1.5


def test_grace_stretches_the_ttl_by_the_blind_stretch_for_one_ttl() -> None:
    grace = OutageGrace(node_ttl_ms=600, tick_ms=100, last_ok_s=10.0)
    for t in (10.1, 10.2, 10.35):  # regular ticks, some late: no grace
        grace.reached(t)
        assert grace.prune_ttl_ms(t) == 600
    grace.reached(12.35)  # blind for 2 s
    assert grace.prune_ttl_ms(12.35) == 2600
    assert grace.prune_ttl_ms(12.9) == 2600
    assert grace.prune_ttl_ms(12.96) == 600  # one node TTL later: back to normal
    # A coordinator that starts while Redis is out counts from its start.
    late = OutageGrace(node_ttl_ms=600, tick_ms=100, last_ok_s=0.0)
    late.reached(3.0)
    assert late.prune_ttl_ms(3.0) == 3600


async def test_outage_longer_than_node_ttl_keeps_live_workers(
    aredis: aioredis.Redis, redis_url: str
) -> None:
    await register(aredis, SYMBOLS)
    target = urlsplit(redis_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379).start()
    workers = [await Worker(aredis, f"calc-{i}").start() for i in range(2)]
    coord = RunningCoordinator(proxy.url, "coord-a", coordinator_node_ttl_ms=600).start()
    try:

        async def complete() -> bool:
            a = await assignment(aredis)
            return set(a) == set(SYMBOLS) and len(set(a.values())) == 2

        await wait_for(complete, what="initial assignment")
        before = await assignment(aredis)
        epoch = int(await aredis.get(keys.COORDINATOR_EPOCH))

        # The outage: the coordinator's connections are dropped and no worker heartbeats.
        proxy.cut("drop")
        for w in workers:
            await w.silence()
        await asyncio.sleep(OUTAGE_S)  # the fault's length (a parameter, not a sync)
        proxy.heal()

        # The coordinator sees Redis first: it is elected again (its lease expired) and
        # finishes that tick before any worker heartbeats.
        async def reelected() -> bool:
            return int(await aredis.get(keys.COORDINATOR_EPOCH) or 0) > epoch

        await wait_for(reelected, timeout=10, what="coordinator back")
        coord.coordinator.ticked.clear()
        await wait_for(coord.coordinator.ticked.is_set, timeout=5, what="a full tick")
        assert await assignment(aredis) == before
        assert coord.metric("context8_coordinator_nodes_pruned_total") == 0

        # The workers come back; a worker that then really dies is still dropped.
        for w in workers:
            await w.start()
        dead, alive = workers
        await dead.silence()

        async def only_alive() -> bool:
            a = await assignment(aredis)
            return set(a) == set(SYMBOLS) and set(a.values()) == {alive.node_id}

        await wait_for(only_alive, timeout=10, what="dead worker dropped")
        assert coord.metric("context8_coordinator_nodes_pruned_total") == 1
    finally:
        await coord.stop()
        for w in workers:
            await w.silence()
        proxy.close()
