"""The publisher against a real Redis: fencing, ordering, malformed input, claiming."""

from __future__ import annotations

import asyncio
import time

import orjson
import redis.asyncio as aioredis

from shared import keys
from shared.lease import LeaseClient
from shared.lifecycle import Shutdown
from shared.scripts import Scripts
from tests.publisher.helpers import (
    PublisherUnderTest,
    add_candidate,
    candidate_fields,
    pending_count,
    report_dict,
    wait_for,
)
from tests.support.candidates import PARTITIONS, partition_of, stream_of

SYM = "BTCUSDT"


async def grant(client: aioredis.Redis, node: str, symbol: str = SYM) -> int:
    """Acquire the symbol's writer lease for ``node`` (real lease script); its token."""
    lease = await LeaseClient(Scripts(client), node, ttl_ms=60_000, margin_ms=100).acquire(symbol)
    assert lease is not None
    return lease.token


async def stored(client: aioredis.Redis, symbol: str = SYM) -> dict[bytes, bytes]:
    result: dict[bytes, bytes] = await client.hgetall(keys.report(symbol))
    return result


async def test_accepts_current_newer_candidate_and_audits(
    aredis: aioredis.Redis, redis_url: str
) -> None:
    pub = PublisherUnderTest(redis_url)
    try:
        await pub.start()
        token = await grant(aredis, "calc-1")
        await add_candidate(aredis, SYM, token, "calc-1", 1_000)
        before_ms = time.time_ns() // 1_000_000
        assert await pub.step() == 1
        report = await stored(aredis)
        assert report[b"token"] == str(token).encode()
        assert report[b"event_ms"] == b"1000"
        assert report[b"node"] == b"calc-1"
        body = orjson.loads(report[b"json"])
        assert before_ms <= body["updatedAt"] <= time.time_ns() // 1_000_000
        assert body == report_dict(SYM, token, "calc-1", 1_000) | {"updatedAt": body["updatedAt"]}
        audit = await aredis.xrange(keys.audit(SYM))
        assert len(audit) == 1
        assert audit[0][1] == {
            b"token": str(token).encode(),
            b"node": b"calc-1",
            b"event_ms": b"1000",
        }
        assert pub.accepted == 1
        assert await pending_count(aredis) == 0
        assert pub.metric("context8_publisher_publish_latency_seconds_count") == 1

        # A newer report from the same holder replaces it and is audited too.
        await add_candidate(aredis, SYM, token, "calc-1", 2_000)
        await pub.step()
        assert (await stored(aredis))[b"event_ms"] == b"2000"
        assert await aredis.xlen(keys.audit(SYM)) == 2
        assert pub.accepted == 2
    finally:
        await pub.close()


async def test_stale_token_rejected_and_report_untouched(
    aredis: aioredis.Redis, redis_url: str
) -> None:
    pub = PublisherUnderTest(redis_url)
    try:
        await pub.start()
        old = await grant(aredis, "calc-1")
        await add_candidate(aredis, SYM, old, "calc-1", 1_000)
        await pub.step()
        before = await stored(aredis)
        assert before[b"token"] == str(old).encode()

        # The lease moves to calc-2 (calc-1 was paused past its TTL): a new token.
        await aredis.delete(keys.lease(SYM))
        new = await grant(aredis, "calc-2")
        assert new > old
        # The old holder wakes up and sends a *newer* report with its old token.
        await add_candidate(aredis, SYM, old, "calc-1", 5_000)
        await pub.step()
        assert await stored(aredis) == before  # byte-equal: json, token, times
        assert await aredis.xlen(keys.audit(SYM)) == 1
        assert pub.rejected("stale_token") == 1
        assert pub.accepted == 1
        assert await pending_count(aredis) == 0  # rejected entries are acked

        # A token from the future (never granted) is just as stale.
        await add_candidate(aredis, SYM, new + 5, "calc-2", 6_000)
        await pub.step()
        assert pub.rejected("stale_token") == 2
        assert await stored(aredis) == before

        # The new holder's report goes through.
        await add_candidate(aredis, SYM, new, "calc-2", 6_000)
        await pub.step()
        assert (await stored(aredis))[b"token"] == str(new).encode()
    finally:
        await pub.close()


async def test_not_newer_rejected(aredis: aioredis.Redis, redis_url: str) -> None:
    pub = PublisherUnderTest(redis_url)
    try:
        await pub.start()
        token = await grant(aredis, "calc-1")
        await add_candidate(aredis, SYM, token, "calc-1", 2_000)
        await pub.step()
        before = await stored(aredis)
        await add_candidate(aredis, SYM, token, "calc-1", 2_000)  # same event time
        await add_candidate(aredis, SYM, token, "calc-1", 1_999)  # older
        await pub.step()
        assert pub.rejected("not_newer") == 2
        assert await stored(aredis) == before
        assert await aredis.xlen(keys.audit(SYM)) == 1
        assert await pending_count(aredis) == 0
    finally:
        await pub.close()


async def test_batch_is_applied_in_stream_order(aredis: aioredis.Redis, redis_url: str) -> None:
    pub = PublisherUnderTest(redis_url)
    try:
        await pub.start()
        btc = await grant(aredis, "calc-1", "BTCUSDT")
        eth = await grant(aredis, "calc-2", "ETHUSDT")
        for e in (1_000, 3_000, 2_000):
            await add_candidate(aredis, "BTCUSDT", btc, "calc-1", e)
        await add_candidate(aredis, "ETHUSDT", eth, "calc-2", 1_500)
        assert await pub.step() == 4
        assert (await stored(aredis, "BTCUSDT"))[b"event_ms"] == b"3000"
        assert (await stored(aredis, "ETHUSDT"))[b"event_ms"] == b"1500"
        assert pub.accepted == 3 and pub.rejected("not_newer") == 1
        assert pub.metric("context8_publisher_batch_size_sum") == 4
    finally:
        await pub.close()


async def test_malformed_and_invalid_are_counted_acked_and_skipped(
    aredis: aioredis.Redis, redis_url: str
) -> None:
    pub = PublisherUnderTest(redis_url)
    try:
        await pub.start()
        token = await grant(aredis, "calc-1")
        good = candidate_fields(SYM, token, "calc-1", 1_000)
        await aredis.xadd(stream_of(SYM), {b"junk": b"1"})
        await aredis.xadd(stream_of(SYM), good | {b"t": b"x"})
        await aredis.xadd(stream_of(SYM), good | {b"r": b"not json"})
        await aredis.xadd(stream_of(SYM), good | {b"s": b"bad symbol"})
        bad_schema = report_dict(SYM, token, "calc-1", 900) | {"venue": "FTX"}
        await aredis.xadd(stream_of(SYM), candidate_fields(SYM, token, "calc-1", 900, bad_schema))
        await aredis.xadd(stream_of(SYM), good)
        assert await pub.step() == 6
        assert pub.rejected("malformed") == 4
        assert pub.rejected("invalid") == 1
        assert pub.accepted == 1  # the good one in the same batch still lands
        assert (await stored(aredis))[b"event_ms"] == b"1000"
        assert await pending_count(aredis) == 0
    finally:
        await pub.close()


async def test_validation_can_be_switched_off(aredis: aioredis.Redis, redis_url: str) -> None:
    pub = PublisherUnderTest(redis_url, publisher_validate=False)
    try:
        await pub.start()
        token = await grant(aredis, "calc-1")
        body = report_dict(SYM, token, "calc-1", 1_000) | {"venue": "FTX"}
        await aredis.xadd(stream_of(SYM), candidate_fields(SYM, token, "calc-1", 1_000, body))
        await pub.step()
        assert pub.accepted == 1 and pub.rejected("invalid") == 0
    finally:
        await pub.close()


async def test_a_dead_publishers_partition_and_pending_entries_are_taken_over(
    aredis: aioredis.Redis, redis_url: str
) -> None:
    live = PublisherUnderTest(redis_url, "pub-live", publisher_partition_ttl_ms=300)
    try:
        token = await grant(aredis, "calc-1")
        await add_candidate(aredis, SYM, token, "calc-1", 1_000)
        # Another publisher holds SYM's partition, read the entry and died before
        # writing or acking it (its lease still runs for 300 ms).
        partition = partition_of(SYM)
        await aredis.set(keys.candidates_owner(partition), "pub-dead", px=300)
        await aredis.xgroup_create(stream_of(SYM), keys.PUBLISHER_GROUP, id="0", mkstream=True)
        taken = await aredis.xreadgroup(
            keys.PUBLISHER_GROUP, "pub-dead", {stream_of(SYM): ">"}, count=10
        )
        assert len(taken[0][1]) == 1
        await live.start()
        assert partition not in live.publisher.keeper.held
        assert await live.step() == 0 and await pending_count(aredis) == 1

        async def took_over() -> bool:
            await live.start()  # a keeper step, then open (claims what is pending)
            return partition in live.publisher.keeper.held

        await wait_for(took_over, what="the dead publisher's partition taken over")
        assert live.metric("context8_publisher_claimed_total") == 1
        assert live.accepted == 1
        assert await pending_count(aredis) == 0
        assert (await stored(aredis))[b"event_ms"] == b"1000"
    finally:
        await live.close()


async def test_publishers_share_the_partitions_and_take_over_a_stopped_ones(
    aredis: aioredis.Redis, redis_url: str
) -> None:
    """Two run loops split the partitions evenly; candidates keep landing exactly once
    while one of them stops and the other takes its partitions over."""
    a = PublisherUnderTest(redis_url, "pub-a", publisher_partition_ttl_ms=500)
    b = PublisherUnderTest(redis_url, "pub-b", publisher_partition_ttl_ms=500)
    stop_a, stop_b = Shutdown(), Shutdown()
    runs = [
        asyncio.create_task(a.publisher.run(stop_a)),
        asyncio.create_task(b.publisher.run(stop_b)),
    ]
    symbols = ["BTCUSDT", "ETHUSDT", "XRPUSDT", "SOLUSDT", "BNBUSDT", "ADAUSDT"]
    try:
        tokens = {s: await grant(aredis, "calc-1", s) for s in symbols}

        async def split() -> bool:
            held = (len(a.publisher.keeper.held), len(b.publisher.keeper.held))
            return held == (PARTITIONS // 2, PARTITIONS // 2)

        await wait_for(split, 10, "the partitions split evenly")
        for n in range(1, 21):
            for s in symbols:
                await add_candidate(aredis, s, tokens[s], "calc-1", n * 1_000)
            if n == 10:
                # Both must have published before a stops (under load a could otherwise
                # stop before reading anything, and the split would be untested).
                async def both_published() -> bool:
                    return a.accepted > 0 and b.accepted > 0

                await wait_for(both_published, 10, "both publishers writing")
                stop_a.event.set()  # a stops cleanly: gives its partitions back

        async def all_written() -> bool:
            rows = [await aredis.hget(keys.report(s), "event_ms") for s in symbols]
            return all(r == b"20000" for r in rows)

        await wait_for(all_written, 10, "every symbol's last candidate written")
        await asyncio.wait_for(runs[0], 5)
        assert len(b.publisher.keeper.held) == PARTITIONS
        for s in symbols:  # each candidate audited exactly once: none lost, none twice
            audit = await aredis.xrange(keys.audit(s))
            assert [int(f[b"event_ms"]) for _, f in audit] == [n * 1_000 for n in range(1, 21)]
        assert a.accepted + b.accepted == 20 * len(symbols)
        assert a.accepted > 0 and b.accepted > 0
    finally:
        stop_a.event.set()
        stop_b.event.set()
        await asyncio.gather(*runs, return_exceptions=True)
        await a.close()
        await b.close()


async def test_run_loop_publishes_and_stops_cleanly(aredis: aioredis.Redis, redis_url: str) -> None:
    pub = PublisherUnderTest(redis_url, "pub-loop")
    shutdown = Shutdown()
    task = asyncio.create_task(pub.publisher.run(shutdown))
    try:
        token = await grant(aredis, "calc-1")
        await add_candidate(aredis, SYM, token, "calc-1", 1_000)

        async def written() -> bool:
            return await aredis.hget(keys.report(SYM), "event_ms") == b"1000"

        await wait_for(written, what="report written by the run loop")
        shutdown.event.set()
        await asyncio.wait_for(task, 5)
        assert await pending_count(aredis) == 0
        consumers = await aredis.xinfo_consumers(stream_of(SYM), keys.PUBLISHER_GROUP)
        assert all(c["name"] != b"pub-loop" for c in consumers)  # left the group
    finally:
        if not task.done():
            shutdown.event.set()
            await asyncio.wait_for(task, 5)
        await pub.close()


async def test_entries_written_before_the_group_existed_are_delivered(
    aredis: aioredis.Redis, redis_url: str
) -> None:
    token = await grant(aredis, "calc-1")
    await add_candidate(aredis, SYM, token, "calc-1", 1_000)  # creates the stream, no group
    pub = PublisherUnderTest(redis_url)
    try:
        await pub.start()
        await pub.start()  # idempotent (BUSYGROUP ignored, partitions held already)
        assert await pub.step() == 1
        assert pub.accepted == 1
    finally:
        await pub.close()


async def test_lost_script_cache_is_reloaded(aredis: aioredis.Redis, redis_url: str) -> None:
    """After SCRIPT FLUSH (a restarted or failed-over Redis) writes still land, in order."""
    pub = PublisherUnderTest(redis_url)
    try:
        await pub.start()
        token = await grant(aredis, "calc-1")
        await aredis.script_flush()
        for e in (1_000, 3_000, 2_000):
            await add_candidate(aredis, SYM, token, "calc-1", e)
        assert await pub.step() == 3
        assert pub.accepted == 2 and pub.rejected("not_newer") == 1
        assert (await stored(aredis))[b"event_ms"] == b"3000"
        assert pub.metric("context8_publisher_errors_total") == 0
    finally:
        await pub.close()
