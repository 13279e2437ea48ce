"""Leases and fenced publishing on a real 3-master Redis Cluster (redis-py RedisCluster).

Every multi-key script touches one symbol's hash-tagged keys (or only {fleet} keys),
so each runs inside one slot; a batch's pipeline spans several masters.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import orjson
import pytest
import structlog
from prometheus_client import CollectorRegistry
from redis.asyncio.cluster import RedisCluster

from services.coordinator.metrics import CoordinatorMetrics
from services.coordinator.service import Coordinator
from services.coordinator.settings import Settings as CoordinatorSettings
from shared import keys
from shared.lease import LeaseClient
from shared.lifecycle import Shutdown
from shared.membership import Membership
from shared.scripts import Scripts
from tests.publisher.helpers import PublisherUnderTest, candidate_fields
from tests.support.candidates import PARTITIONS, stream_of
from tests.support.redis_cluster import LocalCluster

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "BNBUSDT", "DOGEUSDT"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    running = LocalCluster().start()
    yield running
    running.stop()


@pytest.fixture
async def rc(cluster: LocalCluster) -> AsyncIterator[RedisCluster]:
    cluster.flushall()
    client = RedisCluster(host="127.0.0.1", port=cluster.ports[0])
    await client.initialize()
    yield client
    await client.aclose()


def masters_of(client: RedisCluster, names: list[str]) -> set[str]:
    return {client.get_node_from_key(name).name for name in names}


async def test_symbols_span_several_masters(rc: RedisCluster) -> None:
    # The premise of the other tests: the symbols do not all live on one master, and
    # each symbol's keys share a slot.
    assert len(masters_of(rc, [keys.report(s) for s in SYMBOLS])) >= 2
    for s in SYMBOLS:
        slots = {
            rc.keyslot(k) for k in (keys.token(s), keys.report(s), keys.audit(s), keys.lease(s))
        }
        assert len(slots) == 1


async def test_lease_and_fenced_publish_on_cluster(rc: RedisCluster) -> None:
    scripts = Scripts(rc)
    calc1 = LeaseClient(scripts, "calc-1", ttl_ms=60_000, margin_ms=100)
    calc2 = LeaseClient(scripts, "calc-2", ttl_ms=60_000, margin_ms=100)
    leases = {s: await calc1.acquire(s) for s in SYMBOLS}
    first: dict[str, int] = {}
    for s, lease in leases.items():
        assert lease is not None and lease.token >= 1
        first[s] = lease.token
    assert [await calc2.acquire(s) for s in SYMBOLS] == [None] * len(SYMBOLS)  # calc-1's

    pub = PublisherUnderTest("redis://unused", "pub-c", client=rc)
    await pub.start()
    assert len(pub.publisher.keeper.held) == PARTITIONS  # alone: every partition
    for s in SYMBOLS:
        await rc.xadd(stream_of(s), candidate_fields(s, first[s], "calc-1", 1_000))
    assert await pub.step() == len(SYMBOLS)
    assert pub.accepted == len(SYMBOLS)
    before = {s: await rc.hgetall(keys.report(s)) for s in SYMBOLS}
    assert all(before[s][b"token"] == str(first[s]).encode() for s in SYMBOLS)

    # Hand every lease to calc-2 (calc-1 released), then drop every cached script so
    # the pipeline meets NOSCRIPT on every master and must reload.
    second: dict[str, int] = {}
    for s in SYMBOLS:
        lease = leases[s]
        assert lease is not None and await calc1.release(lease)
        new = await calc2.acquire(s)
        assert new is not None and new.token > first[s]
        second[s] = new.token
    await rc.script_flush()
    for s in SYMBOLS:
        await rc.xadd(stream_of(s), candidate_fields(s, first[s], "calc-1", 9_000))  # stale
        await rc.xadd(stream_of(s), candidate_fields(s, second[s], "calc-2", 500))  # not newer
    assert await pub.step() == 2 * len(SYMBOLS)
    assert pub.rejected("stale_token") == len(SYMBOLS)
    assert pub.rejected("not_newer") == len(SYMBOLS)
    for s in SYMBOLS:
        assert await rc.hgetall(keys.report(s)) == before[s]  # untouched, byte-equal

    for s in SYMBOLS:
        await rc.xadd(stream_of(s), candidate_fields(s, second[s], "calc-2", 2_000))
    await pub.step()
    for s in SYMBOLS:
        stored = await rc.hgetall(keys.report(s))
        assert stored[b"token"] == str(second[s]).encode() and stored[b"node"] == b"calc-2"
        assert orjson.loads(stored[b"json"])["writer"]["nodeId"] == "calc-2"
        assert await rc.xlen(keys.audit(s)) == 2
    for s in SYMBOLS:
        pending = await rc.xpending(stream_of(s), keys.PUBLISHER_GROUP)
        assert pending["pending"] == 0


async def test_fleet_scripts_run_in_one_slot(rc: RedisCluster) -> None:
    """Membership heartbeat/leave and the coordinator's prune script work on a cluster."""
    scripts = Scripts(rc)
    fleet = [
        keys.NODES,
        keys.NODE_INFO,
        keys.ASSIGNMENT,
        keys.ASSIGNMENT_VERSION,
        keys.COORDINATOR_LEADER,
        keys.COORDINATOR_EPOCH,
        keys.PUBLISHERS,
    ]
    assert len({rc.keyslot(k) for k in fleet}) == 1
    m = Membership(rc, scripts, "calc-1")  # type: ignore[arg-type]
    await m.heartbeat()
    now, pruned, live = await scripts(
        "coordinator_prune", keys=[keys.NODES, keys.NODE_INFO], args=[60_000]
    )
    assert pruned == [] and live == [b"calc-1"] and now > 0
    ok, epoch = await scripts(
        "lease_acquire",
        keys=[keys.COORDINATOR_LEADER, keys.COORDINATOR_EPOCH],
        args=["coord-a", 5_000],
    )
    assert ok == 1 and epoch >= 1
    written = await scripts(
        "assignment_write",
        keys=[
            keys.COORDINATOR_LEADER,
            keys.COORDINATOR_EPOCH,
            keys.ASSIGNMENT,
            keys.ASSIGNMENT_VERSION,
        ],
        args=["coord-a", epoch, keys.ASSIGNMENT_CHANNEL, "BTCUSDT", "calc-1"],
    )
    assert written == [1, 1]
    rejected = await scripts(
        "assignment_write",
        keys=[
            keys.COORDINATOR_LEADER,
            keys.COORDINATOR_EPOCH,
            keys.ASSIGNMENT,
            keys.ASSIGNMENT_VERSION,
        ],
        args=["coord-a", epoch - 1, keys.ASSIGNMENT_CHANNEL, "BTCUSDT", "calc-2"],
    )
    assert rejected == [0, epoch]
    assert await rc.hgetall(keys.ASSIGNMENT) == {b"BTCUSDT": b"calc-1"}
    assert await m.leave()


async def test_coordinator_runs_on_cluster(cluster: LocalCluster, rc: RedisCluster) -> None:
    """The coordinator's loop (election, prune, fenced write, pub/sub wake-up) on a cluster."""
    from tests.coordinator.helpers import Worker, assignment, wait_for

    pubsub_client = RedisCluster(host="127.0.0.1", port=cluster.ports[1])
    await pubsub_client.initialize()
    settings = CoordinatorSettings(
        redis_url="redis://unused",
        node_id="coord-c",
        coordinator_tick_ms=30_000,  # only pub/sub can wake it after start-up
        coordinator_leader_ttl_ms=60_000,
        coordinator_min_hold_ms=0,
    )
    await rc.hset(keys.SYMBOLS, mapping=dict.fromkeys(SYMBOLS, "{}"))
    w1 = await Worker(rc, "calc-1").start()  # type: ignore[arg-type]
    coordinator = Coordinator(
        rc,
        pubsub_client,
        settings,
        CoordinatorMetrics(CollectorRegistry()),  # type: ignore[arg-type]
        structlog.get_logger(),
    )
    shutdown = Shutdown()
    task = asyncio.create_task(coordinator.run(shutdown))
    try:
        await wait_for(lambda: _all_on(rc, {"calc-1"}), what="initial assignment on the cluster")
        w2 = await Worker(rc, "calc-2").start()  # type: ignore[arg-type]
        await wait_for(
            lambda: _all_on(rc, {"calc-1", "calc-2"}), what="join seen through cluster pub/sub"
        )
        await w2.leave()
        await wait_for(lambda: _all_on(rc, {"calc-1"}), what="leave seen through pub/sub")
        assert set(await assignment(rc)) == set(SYMBOLS)  # type: ignore[arg-type]
    finally:
        shutdown.event.set()
        await asyncio.wait_for(task, 5)
        await w1.silence()
        await pubsub_client.aclose()
    assert await rc.get(keys.COORDINATOR_LEADER) is None


async def _all_on(rc: RedisCluster, nodes: set[str]) -> bool:
    owners = {v.decode() for v in (await rc.hgetall(keys.ASSIGNMENT)).values()}
    return owners == nodes
