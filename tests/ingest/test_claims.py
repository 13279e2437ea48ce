"""Who writes a symbol: feed claims on c8:feed:{SYMBOL}, hot standbys and takeovers.

The keeper on a real Redis, then real ingest processes: a standby configured for the
same symbols writes nothing while the owner lives, takes over when the owner is paused
past its claim's TTL (the paused owner's late appends are refused), when it is killed,
when it is cut off from Redis (its delayed appends land late and are refused), and at
once when it stops cleanly.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import redis
from ingest_support import DATA, start_ingest, stream_entries, wait_for
from redis.asyncio import Redis

from context8.redis_server import RedisServer
from services.ingest.claims import ClaimKeeper
from shared import keys
from shared.wire import StatusPayload
from tests.chaos.tcp_proxy import TcpProxy
from tests.support.polling import apoll
from tests.support.streams import check_stream_consistency

ETH = DATA / "binance-usdm/ETHUSDT/ethusdt_20240718.gz"


class _Log:
    def __init__(self) -> None:
        self.events: list[str] = []

    def info(self, event: str, **_: object) -> None:
        self.events.append(event)

    warning = info


def _keeper(client: Redis, node: str, events: list[tuple[str, str, str]]) -> ClaimKeeper:
    return ClaimKeeper(
        client,
        node,
        ["BTCUSDT", "ETHUSDT"],
        ttl_s=0.3,
        log=_Log(),
        on_acquired=lambda s, prev: events.append((node, "acquired", f"{s}<-{prev}")),
        on_lost=lambda s, why: events.append((node, "lost", s)),
    )


async def test_keeper_holds_renews_stands_by_and_takes_over(aredis: Redis) -> None:
    events: list[tuple[str, str, str]] = []
    a, b = _keeper(aredis, "ingest-a", events), _keeper(aredis, "ingest-b", events)
    await a.step()
    await b.step()
    assert a.held == {"BTCUSDT", "ETHUSDT"} and b.held == set()
    assert b.holders == {"BTCUSDT": "ingest-a", "ETHUSDT": "ingest-a"}
    # A vanished claim (Redis restarted without it) is simply taken again by its holder.
    await aredis.delete(keys.feed_claim("ETHUSDT"))
    a._renewed_at = 0.0  # renewal due now
    await a.step()
    assert a.held == {"BTCUSDT", "ETHUSDT"}
    assert await aredis.get(keys.feed_claim("ETHUSDT")) == b"ingest-a"
    # ``a`` stops renewing (paused): its claims lapse and ``b`` takes both over.
    await apoll(lambda: _step_holds(b, 2), 5, "the standby to take both claims")
    assert ("ingest-b", "acquired", "BTCUSDT<-ingest-a") in events
    # ``a`` comes back: renewal finds the claims another's, so ``a`` stands by.
    a._renewed_at = 0.0
    await a.step()
    assert a.held == set() and [e for e in events if e[0] == "ingest-a"][-1][1] == "lost"
    # A clean stop gives the claims back: ``a`` takes them at its next pass.
    await b.release()
    await a.step()
    assert a.held == {"BTCUSDT", "ETHUSDT"}


async def _step_holds(keeper: ClaimKeeper, count: int) -> bool:
    await keeper.step()
    return len(keeper.held) == count


def _takeovers(entries: list) -> list[str]:
    return [
        e.payload.reason
        for _, e in entries
        if isinstance(e.payload, StatusPayload)
        and "takeover" in e.payload.reason
        and e.payload.state == "resync"
    ]


def test_standby_takes_over_a_paused_then_a_killed_owner_and_never_writes_beside_it(
    redis_url: str, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(redis_url)
    env = {"ingest_replay_files": str(ETH), "ingest_speed": "1", "ingest_claim_ttl_s": "1"}
    first = start_ingest(redis_url, tmp_path / "a.log", node_id="ingest-a", **env)
    second = None
    try:
        wait_for(lambda: client.xlen(keys.stream("ETHUSDT")) > 200, timeout=60)
        second = start_ingest(redis_url, tmp_path / "b.log", node_id="ingest-b", **env)
        wait_for(lambda: "standby for symbols" in (tmp_path / "b.log").read_text(), 60)
        written = client.xlen(keys.stream("ETHUSDT"))
        assert client.get(keys.feed_claim("ETHUSDT")) == b"ingest-a"
        # Paused past the TTL: the standby takes over within the TTL plus a tick.
        os.kill(first.pid, signal.SIGSTOP)
        paused = time.monotonic()
        wait_for(lambda: client.get(keys.feed_claim("ETHUSDT")) == b"ingest-b", 10)
        assert time.monotonic() - paused < 2.5
        os.kill(first.pid, signal.SIGCONT)
        # The owner woke up with entries queued: the append script refuses them.
        wait_for(lambda: "feed claim lost; standing by" in (tmp_path / "a.log").read_text(), 10)
        # Now kill -9 the new owner: the first process, a standby again, takes over.
        second.kill()
        killed = time.monotonic()
        wait_for(lambda: client.get(keys.feed_claim("ETHUSDT")) == b"ingest-a", 10)
        assert time.monotonic() - killed < 2.5
        wait_for(lambda: len(_takeovers(stream_entries(client, "ETHUSDT"))) == 2, 10)
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=15) == 0
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
    entries = stream_entries(client, "ETHUSDT")
    assert len(entries) > written
    assert _takeovers(entries) == [
        "ingest takeover by ingest-b from ingest-a",
        "ingest takeover by ingest-a from ingest-b",
    ]
    # One writer at a time: the consumer's contract holds across both takeovers (every
    # takeover is resync + the new writer's book, then its chained deltas).
    counts = check_stream_consistency(entries).counts
    assert counts["snap:checkpoint"] >= 2
    assert client.get(keys.feed_claim("ETHUSDT")) is None  # released on the clean stop
    client.close()


def test_a_partitioned_owners_late_writes_are_refused(
    redis_server: RedisServer, redis_url: str, tmp_path: Path
) -> None:
    """The owner reaches Redis through a proxy that holds its bytes (a one-way partition):
    its claim lapses, the standby takes over, and on heal the owner's held appends (sent
    while its claim was still valid) reach Redis late, where the append script refuses
    them; the owner stands by."""
    client = redis.Redis.from_url(redis_url)
    proxy = TcpProxy("127.0.0.1", redis_server.port).start()
    env = {"ingest_replay_files": str(ETH), "ingest_speed": "1", "ingest_claim_ttl_s": "1"}
    first = start_ingest(proxy.url, tmp_path / "a.log", node_id="ingest-a", **env)
    second = None
    try:
        wait_for(lambda: client.xlen(keys.stream("ETHUSDT")) > 200, timeout=60)
        second = start_ingest(redis_url, tmp_path / "b.log", node_id="ingest-b", **env)
        wait_for(lambda: "standby for symbols" in (tmp_path / "b.log").read_text(), 60)
        proxy.cut("hold_up")
        wait_for(lambda: client.get(keys.feed_claim("ETHUSDT")) == b"ingest-b", 10)
        proxy.heal()
        wait_for(lambda: "feed claim lost; standing by" in (tmp_path / "a.log").read_text(), 15)
        wait_for(lambda: len(_takeovers(stream_entries(client, "ETHUSDT"))) == 1, 10)
        written = client.xlen(keys.stream("ETHUSDT"))
        wait_for(lambda: client.xlen(keys.stream("ETHUSDT")) > written + 100, 30)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(20)
        proxy.close()
    # Had a late append landed beside the new owner's entries, the chain would break.
    check_stream_consistency(stream_entries(client, "ETHUSDT"))
    client.close()
