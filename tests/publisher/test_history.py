"""Report history and the update announcement, written by fenced_publish.lua.

Over a real redis-server: the script directly (fencing, bounds, ids) and the real
publisher (first report of each second / minute, the row it projects).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import redis.asyncio as aioredis

from services.publisher.core import write_args, write_keys
from shared import keys
from shared.history import (
    HISTORY_COARSE_MAXLEN,
    HISTORY_MAXLEN,
    decode_row,
    encode_row,
    event_ms_of,
)
from shared.lease import LeaseClient
from shared.scripts import Scripts
from tests.publisher.helpers import PublisherUnderTest, candidate_fields, report_dict
from tests.support.candidates import stream_of

SYM = "ETHUSDT"


async def grant(client: aioredis.Redis, node: str, symbol: str = SYM) -> int:
    await client.delete(keys.lease(symbol))  # the previous holder's lease lapsed
    lease = await LeaseClient(Scripts(client), node, ttl_ms=60_000, margin_ms=100).acquire(symbol)
    assert lease is not None
    return lease.token


def call(
    token: int, node: str, event_ms: int, *, mid: float = 100.0, symbol: str = SYM
) -> tuple[list[str], list[Any]]:
    """fenced_publish's keys and args as the publisher passes them (with a history row)."""
    report = report_dict(symbol, token, node, event_ms) | {"mid_price": mid}
    # The "write time" (event + 7) is distinct per write: it is what gets announced.
    args = write_args(
        token, event_ms, node, orjson.dumps(report), event_ms + 7, 1000, encode_row(report)
    )
    return write_keys(symbol), args


async def history(client: aioredis.Redis, key: str) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for entry_id, fields in await client.xrange(key):
        row = decode_row(fields[b"r"])
        assert row is not None
        rows.append((event_ms_of(entry_id), row))
    return rows


async def smessages(pubsub: Any, count: int, timeout: float = 5.0) -> list[bytes]:
    """The next ``count`` sharded messages (fails after ``timeout`` s)."""
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"timed out waiting for announcements, got {got}"
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
        if message is not None and message["type"] == "smessage":
            got.append(message["data"])
    return got


async def test_stale_and_not_newer_writes_add_no_row_and_no_announcement(
    aredis: aioredis.Redis, redis_url: str
) -> None:
    scripts = Scripts(aredis)
    listener = aioredis.Redis.from_url(redis_url)
    pubsub = listener.pubsub()
    try:
        await pubsub.ssubscribe(keys.report_updates(SYM))
        old = await grant(aredis, "calc-1")
        assert (await scripts("fenced_publish", *call(old, "calc-1", 1_000)))[0] == 1
        new = await grant(aredis, "calc-2")
        before = {k: await aredis.xlen(k) for k in (keys.history(SYM), keys.history_coarse(SYM))}

        # The old holder, later in event time (a new second and minute): refused, no trace.
        assert (await scripts("fenced_publish", *call(old, "calc-1", 120_000)))[0] == 0
        # The new holder, not newer than the stored report: refused, no trace.
        assert (await scripts("fenced_publish", *call(new, "calc-2", 1_000)))[0] == -1
        after = {k: await aredis.xlen(k) for k in before}
        assert after == before == {keys.history(SYM): 1, keys.history_coarse(SYM): 1}

        status, _current, rows = await scripts("fenced_publish", *call(new, "calc-2", 180_000))
        assert (status, rows) == (1, 2)
        # Messages on one connection arrive in order: only the two accepted writes.
        assert await smessages(pubsub, 2) == [b"1007", b"180007"]
        assert [t for t, _ in await history(aredis, keys.history(SYM))] == [1_000, 180_000]
    finally:
        await pubsub.aclose()
        await listener.aclose()


async def test_first_report_of_each_second_and_minute_is_kept(aredis: aioredis.Redis) -> None:
    scripts = Scripts(aredis)
    token = await grant(aredis, "calc-1")
    events = [59_000, 59_400, 59_999, 60_000, 60_001, 61_500, 119_999, 120_000, 185_250]
    results = [
        await scripts("fenced_publish", *call(token, "calc-1", e, mid=float(i + 1)))
        for i, e in enumerate(events)
    ]
    assert [r[0] for r in results] == [1] * len(events)
    assert [r[2] for r in results] == [2, 0, 0, 2, 0, 1, 1, 2, 2]
    fine = await history(aredis, keys.history(SYM))
    assert [(t, row["mid_price"]) for t, row in fine] == [
        (59_000, 1.0),
        (60_000, 4.0),
        (61_500, 6.0),
        (119_999, 7.0),
        (120_000, 8.0),
        (185_250, 9.0),
    ]
    coarse = await history(aredis, keys.history_coarse(SYM))
    assert [(t, row["mid_price"]) for t, row in coarse] == [
        (59_000, 1.0),
        (60_000, 4.0),
        (120_000, 8.0),
        (185_250, 9.0),
    ]


async def test_streams_stay_within_maxlen_with_monotonic_ids(aredis: aioredis.Redis) -> None:
    scripts = Scripts(aredis)
    token = await grant(aredis, "calc-1")
    writes = HISTORY_MAXLEN + 150  # a minute apart: a row in both streams every time
    first = 1_700_000_000_000
    events = [first + i * 60_000 for i in range(writes)]
    for start in range(0, writes, 500):
        calls = [call(token, "calc-1", e) for e in events[start : start + 500]]
        results = await scripts.pipelined("fenced_publish", calls)
        assert all(r[0] == 1 and r[2] == 2 for r in results)
    assert await aredis.xlen(keys.history(SYM)) == HISTORY_MAXLEN
    assert await aredis.xlen(keys.history_coarse(SYM)) == HISTORY_COARSE_MAXLEN
    for key, maxlen in ((keys.history(SYM), HISTORY_MAXLEN), (keys.history_coarse(SYM), 1440)):
        ids = [event_ms_of(i) for i, _ in await aredis.xrange(key)]
        assert ids == events[-maxlen:]  # exact trimming: the newest rows, in order


async def test_a_history_stream_ahead_of_the_report_does_not_fail_the_write(
    aredis: aioredis.Redis,
) -> None:
    scripts = Scripts(aredis)
    token = await grant(aredis, "calc-1")
    await scripts("fenced_publish", *call(token, "calc-1", 900_000))
    await aredis.delete(keys.report(SYM))  # the report is gone, its history is not
    status, _current, rows = await scripts("fenced_publish", *call(token, "calc-1", 5_000))
    assert (status, rows) == (1, -1)  # written, the row skipped
    assert (await aredis.hget(keys.report(SYM), "event_ms")) == b"5000"
    assert await aredis.xlen(keys.history(SYM)) == 1


async def test_the_publisher_writes_one_row_per_second_and_announces_every_write(
    aredis: aioredis.Redis, redis_url: str
) -> None:
    pub = PublisherUnderTest(redis_url)
    listener = aioredis.Redis.from_url(redis_url)
    pubsub = listener.pubsub()
    try:
        await pubsub.ssubscribe(keys.report_updates(SYM))
        await pub.start()
        token = await grant(aredis, "calc-1")
        events = [1_000, 1_400, 1_999, 2_000, 2_500, 61_000]
        for i, event_ms in enumerate(events):
            body = report_dict(SYM, token, "calc-1", event_ms) | {"mid_price": 100.0 + i}
            fields = candidate_fields(SYM, token, "calc-1", event_ms, body)
            await aredis.xadd(stream_of(SYM), fields)  # type: ignore[arg-type]
        assert await pub.step() == len(events)
        assert pub.accepted == len(events)

        fine = await history(aredis, keys.history(SYM))
        assert [(t, row["mid_price"]) for t, row in fine] == [
            (1_000, 100.0),
            (2_000, 103.0),
            (61_000, 105.0),
        ]
        assert [t for t, _ in await history(aredis, keys.history_coarse(SYM))] == [1_000, 61_000]
        assert pub.metric("context8_publisher_history_rows_total") == 5
        assert pub.metric("context8_publisher_history_errors_total") == 0
        stored = orjson.loads(await aredis.hget(keys.report(SYM), "json"))
        assert fine[-1][1]["spread_bps"] == stored["spread_bps"]
        assert fine[-1][1]["ingestion.status"] == "ok"

        announced = await smessages(pubsub, len(events))
        assert [int(m) for m in announced] == sorted(int(m) for m in announced)
        assert announced[-1] == await aredis.hget(keys.report(SYM), "updated_at")

        # A stale candidate through the publisher: rejected, nothing added, nothing said.
        new = await grant(aredis, "calc-2")
        await aredis.xadd(stream_of(SYM), candidate_fields(SYM, token, "calc-1", 200_000))  # type: ignore[arg-type]
        await aredis.xadd(stream_of(SYM), candidate_fields(SYM, new, "calc-2", 200_500))  # type: ignore[arg-type]
        assert await pub.step() == 2
        assert pub.rejected("stale_token") == 1
        assert [t for t, _ in await history(aredis, keys.history(SYM))][-2:] == [61_000, 200_500]
        # A marker published after the step ends the messages the step caused: one.
        await aredis.execute_command("SPUBLISH", keys.report_updates(SYM), "marker")
        assert await smessages(pubsub, 2) == [
            await aredis.hget(keys.report(SYM), "updated_at"),
            b"marker",
        ]
    finally:
        await pubsub.aclose()
        await listener.aclose()
        await pub.close()
