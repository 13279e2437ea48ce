"""StreamWriter on a real Redis: order, checkpoints, exactly-once retries, failed parts,
and only the feed claim's holder writes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from context8.redis_server import RedisServer
from services.ingest import metrics
from services.ingest.writer import StreamWriter
from shared import keys, wire
from shared.redis_client import make_redis
from shared.settings import ServiceSettings
from tests.chaos.tcp_proxy import TcpProxy
from tests.support.polling import apoll
from tests.support.redis_cluster import LocalCluster


def _trade(n: int) -> dict[bytes, bytes]:
    payload = wire.TradePayload(id=str(n), px=100 + n, sz=1, pp=1, sp=3, side="B", liq=False)
    return wire.encode(payload, 1_000 + n, 2_000 + n)


def _snap(u: int) -> dict[bytes, bytes]:
    return wire.encode(wire.SnapPayload(u=u, pp=1, sp=3, b=[(99, 1)], a=[(101, 1)]), u, u)


async def _ids(client: Redis, symbol: str) -> list[str]:
    """The trade ids in the symbol's stream, in stream order."""
    out = []
    for _, fields in await client.xrange(keys.stream(symbol)):
        payload = wire.decode(fields).payload
        out.append(payload.id if isinstance(payload, wire.TradePayload) else f"snap{payload.u}")
    return out


NODE = "ingest-test"


async def _owning(client: Redis, symbols: list[str], **kw: object) -> StreamWriter:
    """A writer of process ``NODE`` holding the claims of ``symbols``."""
    writer = StreamWriter(client, maxlen=10_000, owner=NODE, **kw)  # type: ignore[arg-type]
    for symbol in symbols:
        await client.set(keys.feed_claim(symbol), NODE)
        writer.own(symbol)
    return writer


@contextlib.asynccontextmanager
async def running(writer: StreamWriter) -> AsyncIterator[StreamWriter]:
    task = asyncio.create_task(writer.run())
    try:
        yield writer
    finally:
        assert await writer.close(timeout=5.0) == 0
        await task


async def test_entries_keep_their_order_per_symbol_and_the_checkpoint_names_the_last_snap(
    aredis: Redis,
) -> None:
    writer = await _owning(aredis, ["BTCUSDT", "ETHUSDT"], batch_size=7)
    async with running(writer):
        for n in range(40):
            writer.append("BTCUSDT", "trade", _trade(n))
            if n % 3 == 0:
                writer.append("ETHUSDT", "trade", _trade(1000 + n))
            if n in (5, 17, 30):
                writer.append("BTCUSDT", "snap", _snap(n))
        await writer.wait_idle()
    btc = await _ids(aredis, "BTCUSDT")
    expected = []
    for n in range(40):
        expected.append(str(n))
        if n in (5, 17, 30):
            expected.append(f"snap{n}")
    assert btc == expected
    assert await _ids(aredis, "ETHUSDT") == [str(1000 + n) for n in range(0, 40, 3)]
    # The pointer names the newest snapshot entry, which is in the stream.
    pointer = await aredis.get(keys.checkpoint("BTCUSDT"))
    entry = await aredis.xrange(keys.stream("BTCUSDT"), pointer, pointer)
    assert entry and wire.decode(entry[0][1]).payload == wire.decode(_snap(30)).payload
    assert await aredis.get(keys.checkpoint("ETHUSDT")) is None
    assert writer.written == 40 + 14 + 3
    newest = await aredis.xrevrange(keys.stream("BTCUSDT"), count=1)
    assert writer.last_ids["BTCUSDT"] == newest[0][0]


async def test_a_restarted_redis_without_the_script_is_reloaded(aredis: Redis) -> None:
    writer = await _owning(aredis, ["BTCUSDT"], batch_size=5)
    async with running(writer):
        writer.append("BTCUSDT", "trade", _trade(1))
        await writer.wait_idle()
        await aredis.script_flush()  # as after a restart: EVALSHA answers NOSCRIPT
        writer.append("BTCUSDT", "trade", _trade(2))
        await writer.wait_idle()
    assert await _ids(aredis, "BTCUSDT") == ["1", "2"]


async def test_a_failing_symbol_does_not_hold_back_the_others_and_is_retried_in_order(
    aredis: Redis,
) -> None:
    await aredis.set(keys.stream("BADUSDT"), "not a stream")  # XADD: WRONGTYPE
    errors = metrics.WRITE_ERRORS._value.get()
    writer = await _owning(aredis, ["BADUSDT", "BTCUSDT"], batch_size=50)
    async with running(writer):
        for n in range(10):
            writer.append("BADUSDT", "trade", _trade(n))
            writer.append("BTCUSDT", "trade", _trade(n))
        await apoll(lambda: _has(aredis, "BTCUSDT", 10), 10, "the good symbol's entries")
        assert metrics.WRITE_ERRORS._value.get() > errors
        assert writer.pending == 10  # the failed part, still queued
        for n in range(10, 15):
            writer.append("BTCUSDT", "trade", _trade(n))
        await apoll(lambda: _has(aredis, "BTCUSDT", 15), 10, "later entries")
        await aredis.delete(keys.stream("BADUSDT"))
        await writer.wait_idle()
    assert await _ids(aredis, "BADUSDT") == [str(n) for n in range(10)]
    assert await _ids(aredis, "BTCUSDT") == [str(n) for n in range(15)]


async def _has(client: Redis, symbol: str, count: int) -> bool:
    return int(await client.xlen(keys.stream(symbol))) == count


async def test_a_batch_whose_reply_was_lost_is_not_written_twice(
    redis_server: RedisServer, redis_url: str
) -> None:
    proxy = TcpProxy("127.0.0.1", redis_server.port).start()
    direct = Redis.from_url(redis_url)
    via_proxy = Redis.from_url(proxy.url)
    try:
        await direct.set(keys.feed_claim("BTCUSDT"), NODE)
        writer = StreamWriter(
            via_proxy, maxlen=10_000, owner=NODE, batch_size=100, flush_interval_s=0.005
        )
        writer.own("BTCUSDT")
        async with running(writer):
            writer.append("BTCUSDT", "trade", _trade(0))
            await writer.wait_idle()
            # Redis runs the next batch, but its reply never comes back: the connection
            # drops first. The writer cannot know the batch landed and sends it again.
            proxy.cut("hold_down")
            for n in range(1, 6):
                writer.append("BTCUSDT", "trade", _trade(n))
                if n == 3:
                    writer.append("BTCUSDT", "snap", _snap(n))
            await apoll(lambda: _has(direct, "BTCUSDT", 7), 10, "the batch to run in Redis")
            errors = metrics.WRITE_ERRORS._value.get()
            proxy.cut("drop")
            proxy.heal()
            for n in range(6, 8):
                writer.append("BTCUSDT", "trade", _trade(n))
            await writer.wait_idle()
            assert metrics.WRITE_ERRORS._value.get() > errors  # it did fail and retry
        expected = ["0", "1", "2", "3", "snap3", "4", "5", "6", "7"]
        assert await _ids(direct, "BTCUSDT") == expected
        pointer = await direct.get(keys.checkpoint("BTCUSDT"))
        ((_, fields),) = await direct.xrange(keys.stream("BTCUSDT"), pointer, pointer)
        assert wire.decode(fields).kind == "snap"
    finally:
        await via_proxy.aclose()
        await direct.aclose()
        proxy.close()


@pytest.mark.parametrize("batch_size", [1, 3, 500])
async def test_any_batch_size_writes_the_same_stream(aredis: Redis, batch_size: int) -> None:
    writer = await _owning(aredis, ["BTCUSDT"], batch_size=batch_size)
    async with running(writer):
        for n in range(25):
            writer.append("BTCUSDT", "trade", _trade(n))
        await writer.wait_idle()
    assert await _ids(aredis, "BTCUSDT") == [str(n) for n in range(25)]


async def test_only_wire_entries_are_accepted(aredis: Redis) -> None:
    writer = await _owning(aredis, ["BTCUSDT"])
    with pytest.raises(ValueError, match="not a wire entry"):
        writer.append("BTCUSDT", "trade", {b"k": b"trade", b"v": b"1"})
    assert writer.pending == 0


async def test_only_the_claim_holder_writes_and_a_refused_part_disowns_the_symbol(
    aredis: Redis,
) -> None:
    lost: list[tuple[str, str]] = []
    writer = await _owning(
        aredis, ["BTCUSDT", "ETHUSDT"], batch_size=100, on_lost=lambda s, m: lost.append((s, m))
    )
    writer.append("XRPUSDT", "trade", _trade(0))  # a standby symbol: dropped, not queued
    assert writer.pending == 0 and writer.dropped == 1
    async with running(writer):
        writer.append("BTCUSDT", "trade", _trade(1))
        writer.append("ETHUSDT", "trade", _trade(2))
        await writer.wait_idle()
        # The process was paused past its TTL and another took BTCUSDT over: the script
        # refuses this process's next part in the same step as the check.
        await aredis.set(keys.feed_claim("BTCUSDT"), "ingest-other")
        for n in range(3, 6):
            writer.append("BTCUSDT", "trade", _trade(n))
        writer.append("ETHUSDT", "trade", _trade(6))
        await writer.wait_idle()
        assert lost and lost[0][0] == "BTCUSDT" and "held by ingest-other" in lost[0][1]
        assert "BTCUSDT" not in writer.owned and writer.pending == 0
        writer.append("BTCUSDT", "trade", _trade(7))  # disowned: dropped at once
        assert writer.pending == 0
    assert await _ids(aredis, "BTCUSDT") == ["1"]
    assert await _ids(aredis, "ETHUSDT") == ["2", "6"]
    assert writer.dropped == 1 + 3 + 1


async def test_on_a_cluster_the_writer_rides_out_a_primary_failover() -> None:
    """kill -9 of the primary serving BTCUSDT: the promoted replica has no script cache
    (NOSCRIPT) and the dead node is still in the client's map; the writer keeps going and
    every entry lands once, in order."""
    cluster = LocalCluster(masters=3, replicas=1, node_timeout_ms=1000).start()
    url = "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in cluster.primary_ports())
    client = make_redis(ServiceSettings(redis_url=url))
    try:
        await client.set(keys.feed_claim("BTCUSDT"), NODE)
        writer = StreamWriter(client, maxlen=10_000, owner=NODE, batch_size=20)
        writer.own("BTCUSDT")
        task = asyncio.create_task(writer.run())
        for n in range(10):
            writer.append("BTCUSDT", "trade", _trade(n))
        await writer.wait_idle()
        killed_at = time.monotonic()
        old, _ = cluster.kill_primary_of(keys.stream("BTCUSDT"))
        for n in range(10, 40):
            writer.append("BTCUSDT", "trade", _trade(n))
        cluster.wait_promoted(keys.stream("BTCUSDT"), old, killed_at)
        for n in range(40, 50):
            writer.append("BTCUSDT", "trade", _trade(n))
        await apoll(lambda: writer.pending == 0, 20, "every entry written after the failover")
        assert not task.done(), task
        assert await writer.close(timeout=5.0) == 0
        await task
        assert await _ids(client, "BTCUSDT") == [str(n) for n in range(50)]
    finally:
        await client.aclose()
        cluster.stop()
