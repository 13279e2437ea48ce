"""The coordinator against a real Redis with simulated workers (real heartbeats)."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from shared import keys
from tests.coordinator.helpers import (
    RunningCoordinator,
    Worker,
    assignment,
    leader,
    next_message,
    wait_for,
)

#: Enough symbols that, with these node ids, every node owns some (HRW is deterministic).
SYMBOLS = [f"SYM{i}USDT" for i in range(24)]


async def register(client: aioredis.Redis, symbols: list[str]) -> None:
    await client.hset(
        keys.SYMBOLS, mapping={s: '{"venue":"BINANCE","market":"usdm"}' for s in symbols}
    )


async def test_assigns_every_symbol_to_exactly_one_live_node(
    aredis: aioredis.Redis, redis_url: str
) -> None:
    await register(aredis, SYMBOLS)
    workers = [await Worker(aredis, f"calc-{i}").start() for i in range(3)]
    pubsub = aredis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(keys.ASSIGNMENT_CHANNEL)
    coord = RunningCoordinator(redis_url, "coord-a", coordinator_symbols="ltcusdt, TRXUSDT").start()
    try:
        wanted = {*SYMBOLS, "LTCUSDT", "TRXUSDT"}
        live = {w.node_id for w in workers}

        async def complete() -> bool:
            a = await assignment(aredis)
            return set(a) == wanted and set(a.values()) == live

        await wait_for(complete, what="every symbol assigned")
        version = int(await aredis.get(keys.ASSIGNMENT_VERSION))
        assert version >= 1
        assert int(await next_message(pubsub)) == 1
        assert coord.metric("context8_coordinator_is_leader") == 1
        assert coord.metric("context8_coordinator_live_nodes") == 3
        per_node = [coord.metric_labels("context8_coordinator_node_symbols", node=n) for n in live]
        assert sum(per_node) == len(wanted)

        # A new symbol registered by ingest is assigned without any membership change.
        await register(aredis, ["NEWUSDT"])
        await wait_for(lambda: _has(aredis, "NEWUSDT"), what="new symbol assigned")
        assert int(await aredis.get(keys.ASSIGNMENT_VERSION)) > version
    finally:
        await pubsub.aclose()
        await coord.stop()
        for w in workers:
            await w.silence()


async def _has(client: aioredis.Redis, symbol: str) -> bool:
    return symbol in await assignment(client)


async def test_leave_moves_symbols_at_once(aredis: aioredis.Redis, redis_url: str) -> None:
    """With a 30 s tick only the membership pub/sub message can trigger the move."""
    await register(aredis, SYMBOLS)
    workers = [await Worker(aredis, f"calc-{i}").start() for i in range(3)]
    coord = RunningCoordinator(
        redis_url,
        "coord-a",
        coordinator_tick_ms=30_000,
        coordinator_leader_ttl_ms=60_000,
        coordinator_node_ttl_ms=60_000,
    ).start()
    try:
        await wait_for(lambda: _complete(aredis, 3), what="initial assignment")
        before = await assignment(aredis)
        leaver = next(w for w in workers if w.node_id in before.values())
        await leaver.leave()

        async def moved() -> bool:
            a = await assignment(aredis)
            return set(a) == set(SYMBOLS) and leaver.node_id not in a.values()

        await wait_for(moved, timeout=3.0, what="the left node's symbols moved")
        after = await assignment(aredis)
        # Only the leaver's symbols moved (HRW + stickiness).
        for symbol, node in before.items():
            if node != leaver.node_id:
                assert after[symbol] == node
        assert coord.metric("context8_coordinator_symbols_moved_total") == sum(
            1 for n in before.values() if n == leaver.node_id
        )
    finally:
        await coord.stop()
        for w in workers:
            await w.silence()


async def _complete(client: aioredis.Redis, n_nodes: int) -> bool:
    a = await assignment(client)
    return set(a) == set(SYMBOLS) and len(set(a.values())) == n_nodes


async def test_silent_node_expires_after_ttl(aredis: aioredis.Redis, redis_url: str) -> None:
    await register(aredis, SYMBOLS)
    workers = [await Worker(aredis, f"calc-{i}").start() for i in range(2)]
    coord = RunningCoordinator(redis_url, "coord-a", coordinator_node_ttl_ms=500).start()
    try:
        await wait_for(lambda: _complete(aredis, 2), what="initial assignment")
        silent, alive = workers
        await silent.silence()

        async def only_alive() -> bool:
            a = await assignment(aredis)
            return set(a) == set(SYMBOLS) and set(a.values()) == {alive.node_id}

        await wait_for(only_alive, timeout=5.0, what="silent node pruned")
        assert await aredis.zscore(keys.NODES, silent.node_id) is None
        assert await aredis.hget(keys.NODE_INFO, silent.node_id) is None
        assert coord.metric("context8_coordinator_nodes_pruned_total") == 1
        # The live node was never pruned.
        assert await aredis.zscore(keys.NODES, alive.node_id) is not None
    finally:
        await coord.stop()
        for w in workers:
            await w.silence()


async def test_no_live_nodes_clears_assignment(aredis: aioredis.Redis, redis_url: str) -> None:
    await register(aredis, SYMBOLS[:2])
    worker = await Worker(aredis, "calc-0").start()
    coord = RunningCoordinator(redis_url, "coord-a").start()
    try:
        await wait_for(lambda: _count(aredis, 2), what="assigned")
        await worker.leave()
        await wait_for(lambda: _count(aredis, 0), what="assignment emptied")
    finally:
        await coord.stop()


async def _count(client: aioredis.Redis, n: int) -> bool:
    return len(await assignment(client)) == n


async def test_two_coordinators_one_leader_and_failover(
    aredis: aioredis.Redis, redis_url: str
) -> None:
    await register(aredis, SYMBOLS)
    workers = [await Worker(aredis, f"calc-{i}").start() for i in range(2)]
    a = RunningCoordinator(redis_url, "coord-a").start()
    b = RunningCoordinator(redis_url, "coord-b").start()
    try:
        await wait_for(lambda: _complete(aredis, 2), what="initial assignment")
        # Let both run several ticks, then check exactly one leads.
        await asyncio.wait_for(_ticks(a, b, 3), 5)
        leaders = [c for c in (a, b) if c.coordinator.leadership.is_leader]
        assert len(leaders) == 1
        first, standby = (a, b) if leaders[0] is a else (b, a)
        assert await leader(aredis) == first.settings.node_id
        assert first.metric("context8_coordinator_is_leader") == 1
        assert standby.metric("context8_coordinator_is_leader") == 0
        epoch = int(await aredis.get(keys.COORDINATOR_EPOCH))

        await first.stop()  # resigns at once

        async def standby_leads() -> bool:
            return await leader(aredis) == standby.settings.node_id

        await wait_for(standby_leads, timeout=3.0, what="standby took over")
        assert int(await aredis.get(keys.COORDINATOR_EPOCH)) > epoch
        # The new leader maintains the assignment: a joining node gets symbols.
        newcomer = await Worker(aredis, "calc-new").start()
        workers.append(newcomer)
        await wait_for(lambda: _complete(aredis, 3), what="newcomer assigned by new leader")
        assert standby.metric("context8_coordinator_leader_changes_total") == 1
        assert standby.metric_count("context8_coordinator_failover_seconds") == 1
    finally:
        if not first.shutdown.requested:
            await first.stop()
        await standby.stop()
        for w in workers:
            await w.silence()


async def _ticks(a: RunningCoordinator, b: RunningCoordinator, n: int) -> None:
    for _ in range(n):
        for c in (a, b):
            c.coordinator.ticked.clear()
            await c.coordinator.ticked.wait()


async def test_crashed_leader_is_replaced_after_lease_ttl(
    aredis: aioredis.Redis, redis_url: str
) -> None:
    """A leader that stops ticking without resigning loses the lease when it expires."""
    await register(aredis, SYMBOLS[:3])
    worker = await Worker(aredis, "calc-0").start()
    crashed = RunningCoordinator(
        redis_url, "coord-crashed", coordinator_leader_ttl_ms=400, coordinator_leader_margin_ms=100
    )
    standby = RunningCoordinator(
        redis_url, "coord-b", coordinator_leader_ttl_ms=400, coordinator_leader_margin_ms=100
    )
    try:
        await crashed.coordinator.tick()  # leads for one tick, then goes silent
        assert await leader(aredis) == "coord-crashed"
        standby.start()

        async def standby_leads() -> bool:
            return await leader(aredis) == "coord-b"

        await wait_for(standby_leads, timeout=3.0, what="takeover after TTL")
        await wait_for(lambda: _count(aredis, 3), what="assignment by the new leader")
    finally:
        await standby.stop()
        await crashed.client.aclose()
        await crashed.pubsub_client.aclose()
        await worker.silence()


async def test_deposed_leader_write_is_rejected_by_epoch(
    aredis: aioredis.Redis, redis_url: str
) -> None:
    await register(aredis, SYMBOLS)
    w0 = await Worker(aredis, "calc-0").start()
    # Long local validity: the deposed leader still *believes* it leads.
    old = RunningCoordinator(redis_url, "coord-old", coordinator_leader_ttl_ms=60_000)
    new = RunningCoordinator(redis_url, "coord-new", coordinator_leader_ttl_ms=60_000)
    try:
        await old.coordinator.tick()
        assert await assignment(aredis) == dict.fromkeys(SYMBOLS, "calc-0")
        old_epoch = old.coordinator.leadership.epoch
        assert old_epoch is not None
        # The old leader's lease is lost on the server (expiry while it was paused).
        await aredis.delete(keys.COORDINATOR_LEADER)
        await new.coordinator.tick()
        new_epoch = new.coordinator.leadership.epoch
        assert new_epoch is not None and new_epoch > old_epoch
        version = await aredis.get(keys.ASSIGNMENT_VERSION)

        # Membership changes; the deposed leader recomputes and tries to write.
        w1 = await Worker(aredis, "calc-1").start()
        await w0.leave()
        assert old.coordinator.leadership.is_leader  # its local view is stale
        written = await old.coordinator.reconcile(old_epoch)
        assert written is None
        assert old.metric("context8_coordinator_assignment_writes_rejected_total") == 1
        assert not old.coordinator.leadership.is_leader  # stepped down
        assert await aredis.get(keys.ASSIGNMENT_VERSION) == version
        assert await assignment(aredis) == dict.fromkeys(SYMBOLS, "calc-0")

        # Even re-holding the lease key is not enough: the epoch must match too.
        await aredis.set(keys.COORDINATOR_LEADER, "coord-old")
        old.coordinator.leadership.epoch = old_epoch
        old.coordinator.leadership._valid_until = float("inf")
        assert await old.coordinator.reconcile(old_epoch) is None
        assert await aredis.get(keys.ASSIGNMENT_VERSION) == version
        await aredis.set(keys.COORDINATOR_LEADER, "coord-new")

        # The real leader's write goes through.
        plan = await new.coordinator.reconcile(new_epoch)
        assert plan is not None
        assert await assignment(aredis) == dict.fromkeys(SYMBOLS, "calc-1")
        await w1.silence()
    finally:
        for c in (old, new):
            await c.client.aclose()
            await c.pubsub_client.aclose()
        await w0.silence()


async def test_min_hold_delays_a_move_to_a_joining_node(
    aredis: aioredis.Redis, redis_url: str
) -> None:
    symbols = [f"S{i}" for i in range(40)]
    await register(aredis, symbols)
    w0 = await Worker(aredis, "calc-0").start()
    coord = RunningCoordinator(redis_url, "coord-a", coordinator_min_hold_ms=60_000)
    try:
        await coord.coordinator.tick()
        assert set((await assignment(aredis)).values()) == {"calc-0"}
        w1 = await Worker(aredis, "calc-1").start()
        await coord.coordinator.tick()
        # Held: the joiner gets nothing yet although HRW would give it about half.
        assert set((await assignment(aredis)).values()) == {"calc-0"}
        # A symbol registered now has no owner to hold it: plain HRW.
        await register(aredis, ["LATE1", "LATE2", "LATE3", "LATE4", "LATE5", "LATE6"])
        await coord.coordinator.tick()
        a = await assignment(aredis)
        assert len(a) == 46
        assert "calc-1" in {a[s] for s in ("LATE1", "LATE2", "LATE3", "LATE4", "LATE5", "LATE6")}
        await w1.silence()
    finally:
        await coord.client.aclose()
        await coord.pubsub_client.aclose()
        await w0.silence()


async def test_leader_repairs_an_assignment_changed_behind_its_back(
    aredis: aioredis.Redis, redis_url: str
) -> None:
    """E.g. a Redis failover that lost the last write: the version moved, so re-read."""
    await register(aredis, SYMBOLS)
    workers = [await Worker(aredis, f"calc-{i}").start() for i in range(2)]
    coord = RunningCoordinator(redis_url, "coord-a").start()
    try:
        await wait_for(lambda: _complete(aredis, 2), what="initial assignment")
        good = await assignment(aredis)
        await aredis.hset(keys.ASSIGNMENT, mapping={SYMBOLS[0]: "ghost", SYMBOLS[1]: "ghost"})
        await aredis.incr(keys.ASSIGNMENT_VERSION)

        async def repaired() -> bool:
            return await assignment(aredis) == good

        await wait_for(repaired, what="assignment repaired by the leader")
    finally:
        await coord.stop()
        for w in workers:
            await w.silence()
