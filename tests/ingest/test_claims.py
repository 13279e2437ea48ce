"""One ingest process per symbol: claims on c8:feed:{SYMBOL}, with real processes."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
import redis
from ingest_support import DATA, replay_once, start_ingest, wait_for
from redis.asyncio import Redis

from services.ingest.claims import ClaimLost, FeedClaims
from shared import keys
from shared.errors import ConfigError
from tests.support.polling import apoll

ETH = DATA / "binance-usdm/ETHUSDT/ethusdt_20240718.gz"


class _Log:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, event: str, **_: object) -> None:
        self.warnings.append(event)


def test_a_second_process_for_the_same_symbol_is_a_clear_startup_error(
    redis_url: str, tmp_path: Path
) -> None:
    first = start_ingest(
        redis_url, tmp_path / "first.log", ingest_replay_files=str(ETH), ingest_speed="1"
    )
    client = redis.Redis.from_url(redis_url)
    try:
        wait_for(lambda: client.xlen(keys.stream("ETHUSDT")) > 0, timeout=60)
        holder = client.get(keys.feed_claim("ETHUSDT"))
        assert isinstance(holder, bytes) and holder
        second = start_ingest(
            redis_url,
            tmp_path / "second.log",
            ingest_replay_files=str(ETH),
            ingest_claim_ttl_s="0.5",  # waits up to 1 s for the claim, then gives up
        )
        assert second.wait(timeout=60) == 2
        log = (tmp_path / "second.log").read_text()
        assert "symbols already ingested by another process: ETHUSDT by " in log
        assert holder.decode() in log
        assert first.poll() is None  # the owner is untouched and keeps its claim
        assert client.get(keys.feed_claim("ETHUSDT")) == holder
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=10) == 0
        assert client.get(keys.feed_claim("ETHUSDT")) is None  # released on a clean stop
    finally:
        if first.poll() is None:
            first.kill()
        client.close()


def test_a_claim_left_by_a_killed_process_is_waited_for_then_taken(
    redis_url: str, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(redis_url)
    # What a kill -9'ed ingest leaves behind: its claim, expiring after its TTL.
    client.set(keys.feed_claim("ETHUSDT"), "ingest-dead", px=1500)
    proc = replay_once(redis_url, tmp_path / "ingest.log", [ETH])
    try:
        assert proc.wait(timeout=90) == 0
        log = (tmp_path / "ingest.log").read_text()
        assert "waiting for the claims to be released or to expire" in log
        assert client.xlen(keys.stream("ETHUSDT")) > 1000
    finally:
        if proc.poll() is None:
            proc.kill()
        client.close()


async def test_a_claim_taken_over_while_running_raises_claim_lost(aredis: Redis) -> None:
    claims = FeedClaims(aredis, "ingest-a", ["BTCUSDT", "ETHUSDT"], ttl_s=0.3, log=_Log())
    await claims.acquire(wait_s=0)
    assert await aredis.get(keys.feed_claim("BTCUSDT")) == b"ingest-a"
    keeper = asyncio.create_task(claims.keep())
    # Redis lost the claim (a restart without it): taken again, no error.
    await aredis.delete(keys.feed_claim("ETHUSDT"))
    key = keys.feed_claim("ETHUSDT")
    await apoll(lambda: _is(aredis, key, b"ingest-a"), 5, "the lost claim to be taken again")
    assert not keeper.done()
    # Another process holds it now: this one must stop writing.
    await aredis.set(keys.feed_claim("BTCUSDT"), "ingest-b", px=60_000)
    with pytest.raises(ClaimLost, match="BTCUSDT is now claimed by ingest-b"):
        await asyncio.wait_for(keeper, 5)
    await claims.release()
    assert await aredis.get(keys.feed_claim("BTCUSDT")) == b"ingest-b"  # not ours: kept
    assert await aredis.get(keys.feed_claim("ETHUSDT")) is None
    late = FeedClaims(aredis, "ingest-c", ["ETHUSDT", "BTCUSDT"], ttl_s=0.3, log=_Log())
    with pytest.raises(ConfigError, match="BTCUSDT by ingest-b"):
        await late.acquire(0)
    assert await aredis.get(keys.feed_claim("ETHUSDT")) == b"ingest-c"  # the free one
    await late.release()  # what the service does before exiting 2
    assert await aredis.get(keys.feed_claim("ETHUSDT")) is None
    assert await aredis.get(keys.feed_claim("BTCUSDT")) == b"ingest-b"


async def _is(client: Redis, key: str, value: bytes) -> bool:
    return bool(await client.get(key) == value)
