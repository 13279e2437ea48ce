"""Lease calls of many symbols share one round trip (``services.calc.leasing``)."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from services.calc.leasing import BatchedScripts
from services.calc.settings import Settings
from services.calc.worker import CalcWorker
from shared import keys
from shared.lease import LeaseClient
from tests.calc.calc_kit import running, wait_for

SYMBOLS = [f"S{i}USDT" for i in range(8)]


async def test_calls_of_one_turn_share_a_pipeline_and_get_their_own_replies(
    aredis: aioredis.Redis, redis_url: str
) -> None:
    client = aioredis.Redis.from_url(redis_url)
    scripts = BatchedScripts(client)
    leases = LeaseClient(scripts, "calc-a", 5_000, 1_000)
    await aredis.set(keys.lease("S3USDT"), "calc-b", px=60_000)  # held by another node
    got = await asyncio.gather(*(leases.acquire(s) for s in SYMBOLS))
    assert scripts.rounds == 1
    assert [g is None for g in got] == [s == "S3USDT" for s in SYMBOLS]
    held = [g for g in got if g is not None]
    for lease in held:
        assert await aredis.get(keys.lease(lease.symbol)) == b"calc-a"
    # Renewals in one turn: one round again; a lease taken meanwhile is refused alone.
    await aredis.set(keys.lease("S5USDT"), "calc-b", px=60_000)
    renewed = await asyncio.gather(*(leases.renew(lease) for lease in held))
    assert scripts.rounds == 2
    assert [ok for ok in renewed] == [lease.symbol != "S5USDT" for lease in held]
    # A failing call (no key: the script errors) fails alone, in its own caller.
    results = await asyncio.gather(
        scripts("lease_renew", [], []),
        leases.renew(held[0]),
        return_exceptions=True,
    )
    assert isinstance(results[0], ResponseError) and results[1] is True
    assert scripts.rounds == 3
    await client.aclose()


def _renewals(worker: CalcWorker) -> float:
    return float(worker.m.lease_renewals._value.get())


async def test_a_worker_renews_all_its_leases_in_one_round_trip(
    aredis: aioredis.Redis, redis_url: str
) -> None:
    settings = Settings(
        redis_url=redis_url, node_id="calc-a", calc_lease_ttl_ms=300, calc_lease_margin_ms=50
    )
    async with running(settings) as worker:
        await aredis.hset(keys.ASSIGNMENT, mapping=dict.fromkeys(SYMBOLS, "calc-a"))  # type: ignore[arg-type]
        await aredis.publish(keys.ASSIGNMENT_CHANNEL, "1")
        await wait_for(
            lambda: (
                len(worker.runners) == len(SYMBOLS)
                and all(r.lease is not None for r in worker.runners.values())
            ),
            timeout=10,
            what="every lease",
        )
        rounds, renewals = worker.lease_scripts.rounds, _renewals(worker)
        await wait_for(
            lambda: _renewals(worker) >= renewals + 3 * len(SYMBOLS), timeout=10, what="renewals"
        )
        # Every renewal round of the 8 leases was one pipeline (a round in flight while
        # reading the counters may add one).
        done = _renewals(worker) - renewals
        assert worker.lease_scripts.rounds - rounds <= done / len(SYMBOLS) + 1
        # Another node takes one lease over: this worker loses it, keeps the others.
        victim = SYMBOLS[2]
        await aredis.set(keys.lease(victim), "calc-b", px=60_000)
        await aredis.incr(keys.token(victim))
        runner = worker.runners[victim]
        await wait_for(lambda: runner.lease is None, timeout=10, what="the lease lost")
        assert all(r.lease is not None for s, r in worker.runners.items() if s != victim)
        # ... and takes it back once it is free again (the lease loop acquires anew).
        await aredis.delete(keys.lease(victim))
        await wait_for(lambda: runner.lease is not None, timeout=10, what="the lease again")
