"""Push: the pure rate gate, the Redis listener (PushHub) and MCP resource subscriptions
(2026-07-28 subscriptions/listen and legacy resources/subscribe) in memory, over a real Redis.

Announcements: tests SPUBLISH ``keys.report_updates(SYMBOL)`` themselves after writing a
report hash (``announce``), as the publisher's fenced write does.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from mcp import Client
from mcp.client.subscriptions import ResourceUpdated
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import ResourceUpdatedNotification, ServerNotification
from prometheus_client import REGISTRY
from redis.cluster import RedisCluster

from context8.redis_server import RedisServer
from services.mcp.freshness import FreshnessPolicy
from services.mcp.push import (
    Hold,
    Merged,
    PushCapacityError,
    PushHub,
    RateGate,
    Send,
    Subscription,
    Update,
    parse_announcement,
)
from services.mcp.service import ReportService
from services.mcp.store import ReportStore
from services.mcp.tools import build_mcp_server
from shared import keys
from shared.redis_client import make_redis
from shared.settings import ServiceSettings
from tests.mcp.helpers import make_report, now_ms, put_report, register_symbol
from tests.support.redis_cluster import LocalCluster

DEADLINE_S = 5.0


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def announce(client: redis.Redis, symbol: str, *, mid: float = 65000.0) -> int:
    """Write a new report and announce it the way the publisher does; its updated_at."""
    report = make_report(symbol, mid=mid)
    put_report(client, report)
    client.spublish(keys.report_updates(symbol), str(report["updatedAt"]))
    return int(report["updatedAt"])


# --- the pure rate gate ----------------------------------------------------------------


def test_rate_gate_sends_the_first_update_and_holds_the_next_until_the_interval_ends() -> None:
    gate = RateGate(250)
    assert gate.offer(Update("BTCUSDT", 1), now_ms=1000) == Send()
    assert gate.offer(Update("BTCUSDT", 2), now_ms=1100) == Hold(due_ms=1250)
    # another symbol has its own interval
    assert gate.offer(Update("ETHUSDT", 3), now_ms=1100) == Send()
    assert gate.release("BTCUSDT", now_ms=1200) is None  # not due yet
    assert gate.release("BTCUSDT", now_ms=1250) == Update("BTCUSDT", 2)
    assert gate.release("BTCUSDT", now_ms=1260) is None  # nothing held any more
    # the release counts as a send: the next update waits a full interval again
    assert gate.offer(Update("BTCUSDT", 4), now_ms=1300) == Hold(due_ms=1500)
    assert gate.offer(Update("BTCUSDT", 5), now_ms=1600) == Merged()  # still held: merged
    assert gate.release("BTCUSDT", now_ms=1600) == Update("BTCUSDT", 5)


def test_rate_gate_coalesces_to_the_newest_update_never_an_older_one() -> None:
    gate = RateGate(250)
    gate.offer(Update("BTCUSDT", 10), now_ms=0)
    assert gate.offer(Update("BTCUSDT", 12), now_ms=10) == Hold(due_ms=250)
    assert gate.offer(Update("BTCUSDT", 11), now_ms=20) == Merged()  # late, older
    assert gate.offer(Update("BTCUSDT", 14), now_ms=30) == Merged()
    assert gate.held() == {"BTCUSDT": 14}
    assert gate.release("BTCUSDT", now_ms=250) == Update("BTCUSDT", 14)
    gate.offer(Update("BTCUSDT", 15), now_ms=300)
    gate.forget("BTCUSDT")
    assert gate.held() == {}
    assert gate.offer(Update("BTCUSDT", 16), now_ms=301) == Send()


def test_rate_gate_with_no_interval_sends_everything() -> None:
    gate = RateGate(0)
    assert [gate.offer(Update("A", i), now_ms=5) for i in range(3)] == [Send()] * 3


def test_parse_announcement() -> None:
    assert parse_announcement(b"1764689400123") == 1764689400123
    assert parse_announcement("42") == 42
    assert parse_announcement(b"") is None
    assert parse_announcement(b"nope") is None
    assert parse_announcement(b"0") is None


# --- the hub over a real Redis ------------------------------------------------------------


async def started_hub(url: str, **options: Any) -> tuple[PushHub, Any]:
    client = make_redis(ServiceSettings(redis_url=url, redis_socket_timeout_s=0.5))
    hub = PushHub(client, **options)
    await hub.start()
    return hub, client


@pytest.fixture
async def hub(redis_url: str) -> AsyncIterator[PushHub]:
    push, client = await started_hub(redis_url, min_interval_ms=200)
    yield push
    await push.stop()
    await client.aclose()


async def shard_subscribers(url: str, symbol: str) -> int:
    client = aioredis.Redis.from_url(url)
    try:
        reply = await client.execute_command("PUBSUB", "SHARDNUMSUB", keys.report_updates(symbol))
    finally:
        await client.aclose()
    return int(reply[1])


async def eventually(predicate: Any, what: str, timeout: float = DEADLINE_S) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)  # polling interval; the deadline decides


async def next_update(sub: Subscription, timeout: float = DEADLINE_S) -> Update:
    update = await sub.next(timeout=timeout)
    assert update is not None, f"no update within {timeout}s (closed: {sub.closed_reason})"
    return update


async def test_hub_subscribes_only_to_wanted_symbols_and_leaves_with_the_last_subscriber(
    hub: PushHub, redis_url: str, store: redis.Redis
) -> None:
    put_report(store, make_report("BTCUSDT"))
    first = await hub.open("sse", ["BTCUSDT"])
    second = await hub.open("sse", ["BTCUSDT"])
    assert await shard_subscribers(redis_url, "BTCUSDT") == 1  # one listener per process
    assert await shard_subscribers(redis_url, "ETHUSDT") == 0
    assert sample("context8_mcp_push_channels") == 1
    written = await asyncio.to_thread(announce, store, "BTCUSDT")
    assert await next_update(first) == Update("BTCUSDT", written)
    assert await next_update(second) == Update("BTCUSDT", written)
    first.close()
    assert await shard_subscribers(redis_url, "BTCUSDT") == 1
    second.close()
    await eventually(
        lambda: _is_zero(shard_subscribers(redis_url, "BTCUSDT")), "SUNSUBSCRIBE of BTCUSDT"
    )
    assert hub.subscriber_count() == 0


async def _is_zero(count: Any) -> bool:
    return int(await count) == 0


async def test_hub_rate_limits_per_subscriber_and_delivers_the_newest_at_interval_end(
    hub: PushHub, store: redis.Redis
) -> None:
    sub = await hub.open("sse", ["BTCUSDT"])
    coalesced = sample("context8_mcp_push_notifications_coalesced_total", kind="sse")
    base = now_ms()
    written = [base + i for i in range(5)]

    def burst() -> None:  # five writes in one round trip: well inside one 200 ms interval
        pipe = store.pipeline(transaction=False)
        for updated_at in written:
            pipe.spublish(keys.report_updates("BTCUSDT"), updated_at)
        pipe.execute()

    await asyncio.to_thread(burst)
    first = await next_update(sub)
    assert first.updated_at_ms == written[0]
    started = asyncio.get_running_loop().time()
    second = await next_update(sub)
    waited = asyncio.get_running_loop().time() - started
    # the newest of the held ones, not dropped and not an older one, at the interval end
    assert second.updated_at_ms == written[-1]
    assert waited <= 1.0  # due 200 ms after the first; generous for a loaded machine
    assert await sub.next(timeout=0.4) is None  # nothing else: the burst was merged
    merged = sample("context8_mcp_push_notifications_coalesced_total", kind="sse") - coalesced
    assert merged == 3  # updates 2, 3, 4 merged into 5
    sub.close()


async def test_a_slow_consumer_is_dropped_with_a_counted_reason(
    redis_url: str, store: redis.Redis
) -> None:
    push, client = await started_hub(redis_url, min_interval_ms=0, max_queue=2)
    try:
        dropped = sample(
            "context8_mcp_push_subscribers_dropped_total", kind="sse", reason="slow_consumer"
        )
        slow = await push.open("sse", ["BTCUSDT"])
        fast = await push.open("mcp_listen", ["BTCUSDT"])
        delivered = 0
        base = now_ms()
        for i in range(4):
            await asyncio.to_thread(store.spublish, keys.report_updates("BTCUSDT"), base + i)
            await next_update(fast)  # the fast one keeps up; the slow one never reads
            delivered += 1
        assert slow.closed_reason == "slow_consumer"
        assert await slow.next(timeout=0.1) is None
        assert not fast.closed and delivered == 4
        after = sample(
            "context8_mcp_push_subscribers_dropped_total", kind="sse", reason="slow_consumer"
        )
        assert after - dropped == 1
        assert push.subscriber_count("BTCUSDT") == 1
    finally:
        await push.stop()
        await client.aclose()


async def test_hub_reconnects_after_redis_restarts_and_delivers_the_missed_update() -> None:
    server = RedisServer().start()
    push, client = await started_hub(server.url, min_interval_ms=0)
    sync = redis.Redis.from_url(server.url)
    try:
        put_report(sync, make_report("BTCUSDT"))
        sub = await push.open("sse", ["BTCUSDT"])
        errors = sample("context8_mcp_push_redis_errors_total")
        server.kill()
        await eventually(
            lambda: _truthy(sample("context8_mcp_push_redis_errors_total") > errors),
            "the listener to notice that Redis is gone",
        )
        server.start()
        # written while the listener was not subscribed: never announced to it
        missed = make_report("BTCUSDT", updated_at_ms=now_ms() + 1000)
        put_report(redis.Redis.from_url(server.url), missed)
        update = await next_update(sub, timeout=15)
        assert update == Update("BTCUSDT", missed["updatedAt"])
        # and announcements flow again
        newer = missed["updatedAt"] + 1
        await asyncio.to_thread(sync.spublish, keys.report_updates("BTCUSDT"), newer)
        assert await next_update(sub) == Update("BTCUSDT", newer)
    finally:
        await push.stop()
        await client.aclose()
        sync.close()
        server.stop()


async def _truthy(value: bool) -> bool:
    return value


async def test_closed_hub_ends_subscriptions_and_refuses_new_ones(hub: PushHub) -> None:
    sub = await hub.open("sse", ["BTCUSDT"])
    hub.close_subscribers()
    assert await sub.next(timeout=1) is None and sub.closed_reason == "shutdown"
    late = await hub.open("sse", ["ETHUSDT"], timeout=0.1)
    assert late.closed


# --- MCP, in memory ---------------------------------------------------------------------------


@pytest.fixture
async def service(redis_url: str) -> AsyncIterator[ReportService]:
    client = make_redis(ServiceSettings(redis_url=redis_url))
    yield ReportService(ReportStore(client), FreshnessPolicy(2500, 12000), max_batch=5)
    await client.aclose()


@pytest.fixture
def server(service: ReportService, hub: PushHub) -> MCPServer:
    return build_mcp_server(service, "mcp_memory", push=hub)


async def test_listen_on_2026_protocol_delivers_report_updates(
    server: MCPServer, store: redis.Redis
) -> None:
    """The defect: resources.subscribe was advertised and subscriptions/listen acknowledged
    for report://BTCUSDT, then nothing was sent while the report changed."""
    put_report(store, make_report("BTCUSDT"))
    sent = sample("context8_mcp_push_notifications_sent_total", kind="mcp_listen")
    async with Client(server) as client:
        assert client.protocol_version == "2026-07-28"
        resources = client.server_capabilities.resources
        assert resources is not None and resources.subscribe is True
        async with client.listen(resource_subscriptions=["report://BTCUSDT"]) as sub:
            assert sub.honored.resource_subscriptions == ["report://BTCUSDT"]
            events = []
            for i in range(3):  # the report keeps changing: an update each time
                await asyncio.to_thread(announce, store, "BTCUSDT", mid=64000.0 + i)
                async with asyncio.timeout(DEADLINE_S):
                    events.append(await anext(aiter(sub)))
    assert events == [ResourceUpdated(uri="report://BTCUSDT")] * 3
    # counted once the send returned: the last one may race the client's leaving
    assert sample("context8_mcp_push_notifications_sent_total", kind="mcp_listen") - sent >= 2


async def test_listen_keeps_the_clients_uri_spelling(server: MCPServer, store: redis.Redis) -> None:
    put_report(store, make_report("ETHUSDT"))
    async with (
        Client(server) as client,
        client.listen(resource_subscriptions=["report://ethusdt"]) as sub,
    ):
        await asyncio.to_thread(announce, store, "ETHUSDT")
        async with asyncio.timeout(DEADLINE_S):
            event = await anext(aiter(sub))
    assert event == ResourceUpdated(uri="report://ethusdt")


async def test_listen_to_an_unknown_or_invalid_resource_is_a_clear_error(
    server: MCPServer, store: redis.Redis
) -> None:
    put_report(store, make_report("BTCUSDT"))
    async with Client(server) as client:
        with pytest.raises(MCPError) as unknown:
            async with client.listen(resource_subscriptions=["report://XRPUSDT"]):
                pass
        with pytest.raises(MCPError) as other:
            async with client.listen(resource_subscriptions=["file:///etc/passwd"]):
                pass
        with pytest.raises(MCPError) as invalid:
            async with client.listen(resource_subscriptions=["report://btc-usdt"]):
                pass
    assert "cannot subscribe to report://XRPUSDT: unknown symbol 'XRPUSDT'" in str(unknown.value)
    assert "only report://SYMBOL resources" in str(other.value)
    assert "invalid symbol" in str(invalid.value)


def legacy_client(server: MCPServer, received: list[str], event: asyncio.Event) -> Client:
    async def on_message(message: Any) -> None:
        if isinstance(message, ServerNotification):
            message = message.root if hasattr(message, "root") else message
        if isinstance(message, ResourceUpdatedNotification):
            received.append(message.params.uri)
            event.set()

    return Client(server, mode="legacy", message_handler=on_message)


async def legacy_call(client: Client, method: str, uri: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated at 2026-07-28: that is the point
        await getattr(client, method)(uri)


async def wait_for_uri(received: list[str], event: asyncio.Event, uri: str) -> None:
    async with asyncio.timeout(DEADLINE_S):
        while uri not in received:
            event.clear()
            await event.wait()


async def test_legacy_subscribe_and_unsubscribe(server: MCPServer, store: redis.Redis) -> None:
    for symbol in ("BTCUSDT", "ETHUSDT"):
        put_report(store, make_report(symbol))
    received: list[str] = []
    arrived = asyncio.Event()
    async with legacy_client(server, received, arrived) as client:
        assert client.protocol_version != "2026-07-28"
        resources = client.server_capabilities.resources
        assert resources is not None and resources.subscribe is True
        await legacy_call(client, "subscribe_resource", "report://BTCUSDT")
        await legacy_call(client, "subscribe_resource", "report://ETHUSDT")
        await asyncio.to_thread(announce, store, "BTCUSDT")
        await wait_for_uri(received, arrived, "report://BTCUSDT")
        await legacy_call(client, "unsubscribe_resource", "report://BTCUSDT")
        received.clear()
        # BTCUSDT first, then ETHUSDT: had the BTCUSDT one still been delivered, it would
        # have arrived before the ETHUSDT one (one listener, in order).
        await asyncio.to_thread(announce, store, "BTCUSDT", mid=1.0)
        await asyncio.to_thread(announce, store, "ETHUSDT")
        await wait_for_uri(received, arrived, "report://ETHUSDT")
        assert received == ["report://ETHUSDT"]
        with pytest.raises(MCPError) as unknown:
            await legacy_call(client, "subscribe_resource", "report://DOGEUSDT")
    assert "unknown symbol 'DOGEUSDT'" in str(unknown.value)


async def test_registered_symbol_without_a_report_can_be_subscribed(
    server: MCPServer, store: redis.Redis
) -> None:
    register_symbol(store, "SOLUSDT")
    async with (
        Client(server) as client,
        client.listen(resource_subscriptions=["report://SOLUSDT"]) as sub,
    ):
        await asyncio.to_thread(announce, store, "SOLUSDT")
        async with asyncio.timeout(DEADLINE_S):
            assert await anext(aiter(sub)) == ResourceUpdated(uri="report://SOLUSDT")


async def test_without_push_no_subscription_capability_is_advertised(
    service: ReportService,
) -> None:
    plain = build_mcp_server(service, "mcp_memory")
    async with Client(plain) as modern:
        resources = modern.server_capabilities.resources
        assert resources is not None and not resources.subscribe
    async with Client(plain, mode="legacy") as legacy:
        resources = legacy.server_capabilities.resources
        assert resources is not None and not resources.subscribe


async def test_hub_on_redis_cluster_uses_sharded_pubsub_per_slot_owner() -> None:
    local = await asyncio.to_thread(LocalCluster(masters=3).start)
    url = "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in local.primary_ports())
    push, client = await started_hub(url, min_interval_ms=0)
    publisher = RedisCluster(host="127.0.0.1", port=local.primary_ports()[0])
    try:
        symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT"]
        owners = {local.primary_of(keys.report_updates(s)) for s in symbols}
        assert len(owners) > 1  # the channels live on different nodes
        sub = await push.open("sse", symbols)
        assert await push.wait_listening(symbols, timeout=DEADLINE_S)
        base = now_ms()
        for i, symbol in enumerate(symbols):
            await asyncio.to_thread(publisher.spublish, keys.report_updates(symbol), base + i)
        got = {(await next_update(sub)).symbol for _ in symbols}
        assert got == set(symbols)
    finally:
        await push.stop()
        await client.aclose()
        publisher.close()
        await asyncio.to_thread(local.stop)


async def test_subscriptions_beyond_the_limit_are_refused_until_one_leaves(
    redis_url: str, store: redis.Redis
) -> None:
    push, client = await started_hub(redis_url, max_subscribers=1)
    try:
        put_report(store, make_report("BTCUSDT"))
        first = await push.open("sse", ["BTCUSDT"])
        assert push.at_capacity
        with pytest.raises(PushCapacityError, match="too many open subscriptions"):
            push.subscription("mcp_listen")
        first.close()
        second = await push.open("mcp_listen", ["BTCUSDT"])
        assert not second.closed
        second.close()
    finally:
        await push.stop()
        await client.aclose()
