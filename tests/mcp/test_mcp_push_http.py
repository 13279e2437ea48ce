"""Push against a real ``python -m services.mcp`` process: ``GET /v1/stream`` (SSE), MCP
subscriptions over streamable HTTP (2026-07-28 listen and legacy sessions) and over stdio,
the /mcp GET guard, and SIGTERM with streams open.

Announcements: the tests SPUBLISH ``keys.report_updates(SYMBOL)`` themselves after writing
a report hash (``announce``), as the publisher's fenced write does.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest
import redis
from mcp import Client, StdioServerParameters
from mcp.client.subscriptions import ResourceUpdated
from mcp_types import ResourceUpdatedNotification, ServerNotification

from context8.redis_server import RedisServer
from shared.report import schema_errors
from tests.mcp.helpers import (
    REPO,
    HttpServerProcess,
    make_report,
    put_report,
    service_env,
    wait_for,
)
from tests.mcp.test_mcp_push import announce

DEADLINE_S = 5.0


@pytest.fixture(scope="module")
def server(redis_server: RedisServer) -> Iterator[HttpServerProcess]:
    proc = HttpServerProcess(
        redis_server.url, C8_MCP_SSE_HEARTBEAT_S="0.3", C8_MCP_PUSH_MIN_INTERVAL_MS="100"
    )
    proc.wait_ready()
    yield proc
    proc.stop()


class SseReader:
    """Reads ``text/event-stream`` frames as {field: value} (a comment is ``comment``)."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.aiter_lines()

    async def frame(self, timeout: float = DEADLINE_S) -> dict[str, str]:
        frame: dict[str, str] = {}
        async with asyncio.timeout(timeout):
            async for line in self._lines:
                if not line:
                    if frame:
                        return frame
                    continue
                field, _, value = line.partition(":")
                frame[field or "comment"] = value.removeprefix(" ")
        raise AssertionError(f"stream ended (partial frame {frame})")

    async def event(self, name: str, timeout: float = DEADLINE_S) -> dict[str, str]:
        """The next frame that is event ``name`` (skipping keep-alives and retry)."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.frame(timeout)
                if frame.get("event") == name:
                    return frame


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0)) as client:
        yield client


async def test_sse_stream_sends_current_reports_then_updates_and_keepalives(
    server: HttpServerProcess, store: redis.Redis, http: httpx.AsyncClient
) -> None:
    put_report(store, make_report("BTCUSDT", mid=65000.0))
    put_report(store, make_report("ETHUSDT", mid=3400.0))
    url = f"{server.base}/v1/stream"
    async with http.stream("GET", url, params={"symbols": "btcusdt,ETHUSDT"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        reader = SseReader(response)
        assert (await reader.frame()).get("retry") == "2000"
        snapshot = [orjson.loads((await reader.event("report"))["data"]) for _ in range(2)]
        assert [r["symbol"] for r in snapshot] == ["BTCUSDT", "ETHUSDT"]
        assert all(schema_errors(r) == [] for r in snapshot)
        written = await asyncio.to_thread(announce, store, "ETHUSDT", mid=3500.0)
        frame = await reader.event("report")
        update = orjson.loads(frame["data"])
        assert update["symbol"] == "ETHUSDT" and update["mid_price"] == 3500.0
        assert frame["id"] == f"ETHUSDT:{written}"
        assert "report_write_age_ms" in update  # served as GET /v1/reports/{symbol} serves it
        keepalive = await reader.frame(timeout=2)  # heartbeat is 0.3 s in this server
        assert keepalive == {"comment": "keepalive"}


async def test_sse_stream_rejects_bad_symbol_lists(
    server: HttpServerProcess, store: redis.Redis, http: httpx.AsyncClient
) -> None:
    put_report(store, make_report("BTCUSDT"))
    url = f"{server.base}/v1/stream"
    missing = await http.get(url)
    assert missing.status_code == 400 and "symbols is required" in missing.json()["error"]
    gap = await http.get(url, params={"symbols": "BTCUSDT,,ETHUSDT"})  # as the JSON routes
    assert gap.status_code == 400 and "symbols: empty item" in gap.json()["error"]
    invalid = await http.get(url, params={"symbols": "BTCUSDT,btc-usdt"})
    assert invalid.status_code == 400 and "invalid symbol 'btc-usdt'" in invalid.json()["error"]
    unknown = await http.get(url, params={"symbols": "BTCUSDT,XRPUSDT"})
    assert unknown.status_code == 404 and "unknown symbol 'XRPUSDT'" in unknown.json()["error"]
    many = ",".join(f"S{i}" for i in range(51))  # C8_MCP_MAX_BATCH defaults to 50
    too_many = await http.get(url, params={"symbols": many})
    assert too_many.status_code == 400 and "at most 50" in too_many.json()["error"]


async def test_get_mcp_without_a_session_is_a_json_405(
    server: HttpServerProcess, http: httpx.AsyncClient
) -> None:
    answer = await http.get(f"{server.base}/mcp", headers={"Accept": "text/event-stream"})
    assert answer.status_code == 405
    assert answer.headers["content-type"] == "application/json"
    assert "subscriptions/listen" in answer.json()["error"]
    assert "POST" in answer.headers["allow"]


async def test_mcp_listen_over_streamable_http(
    server: HttpServerProcess, store: redis.Redis
) -> None:
    put_report(store, make_report("BTCUSDT"))
    async with Client(f"{server.base}/mcp", read_timeout_seconds=10) as client:
        assert client.protocol_version == "2026-07-28"
        caps = client.server_capabilities.resources
        assert caps is not None and caps.subscribe is True
        async with client.listen(resource_subscriptions=["report://BTCUSDT"]) as sub:
            await asyncio.to_thread(announce, store, "BTCUSDT")
            async with asyncio.timeout(DEADLINE_S):
                event = await anext(aiter(sub))
        # the connection is still good for requests after the stream
        read = await client.read_resource("report://BTCUSDT")
    assert event == ResourceUpdated(uri="report://BTCUSDT")
    assert read.contents


def legacy_handler(received: list[str], arrived: asyncio.Event) -> Any:
    async def on_message(message: Any) -> None:
        inner = getattr(message, "root", message)
        if isinstance(message, ServerNotification | ResourceUpdatedNotification) and isinstance(
            inner, ResourceUpdatedNotification
        ):
            received.append(inner.params.uri)
            arrived.set()

    return on_message


async def legacy_round_trip(
    client: Client, store: redis.Redis, received: list[str], arrived: asyncio.Event
) -> None:
    """Subscribe, see an update, unsubscribe, see no more (ETHUSDT proves the order)."""
    caps = client.server_capabilities.resources
    assert caps is not None and caps.subscribe is True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # resources/subscribe is the legacy style on purpose
        await client.subscribe_resource("report://BTCUSDT")
        await client.subscribe_resource("report://ETHUSDT")

    async def wait_uri(uri: str) -> None:
        async with asyncio.timeout(DEADLINE_S):
            while uri not in received:
                arrived.clear()
                await arrived.wait()

    # A legacy HTTP client receives notifications only on its GET stream, which its SDK
    # opens in the background after initialize: announce until one arrives.
    async with asyncio.timeout(DEADLINE_S):
        while "report://BTCUSDT" not in received:
            await asyncio.to_thread(announce, store, "BTCUSDT")
            arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived.wait(), 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        await client.unsubscribe_resource("report://BTCUSDT")
    received.clear()
    await asyncio.to_thread(announce, store, "BTCUSDT", mid=2.0)
    await asyncio.to_thread(announce, store, "ETHUSDT")
    await wait_uri("report://ETHUSDT")
    assert received == ["report://ETHUSDT"]


async def test_legacy_subscribe_over_streamable_http_session(
    server: HttpServerProcess, store: redis.Redis
) -> None:
    for symbol in ("BTCUSDT", "ETHUSDT"):
        put_report(store, make_report(symbol))
    received: list[str] = []
    arrived = asyncio.Event()
    handler = legacy_handler(received, arrived)
    async with Client(
        f"{server.base}/mcp", mode="legacy", read_timeout_seconds=10, message_handler=handler
    ) as client:
        assert client.protocol_version != "2026-07-28"
        await legacy_round_trip(client, store, received, arrived)


async def test_both_subscription_styles_over_stdio(redis_url: str, store: redis.Redis) -> None:
    for symbol in ("BTCUSDT", "ETHUSDT"):
        put_report(store, make_report(symbol))
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "services.mcp", "--stdio"],
        env=service_env(redis_url),
        cwd=REPO,
    )
    async with Client(params, read_timeout_seconds=20) as client:
        assert client.protocol_version == "2026-07-28"
        async with client.listen(resource_subscriptions=["report://BTCUSDT"]) as sub:
            await asyncio.to_thread(announce, store, "BTCUSDT")
            async with asyncio.timeout(DEADLINE_S):
                assert await anext(aiter(sub)) == ResourceUpdated(uri="report://BTCUSDT")
    received: list[str] = []
    arrived = asyncio.Event()
    handler = legacy_handler(received, arrived)
    async with Client(
        params, mode="legacy", read_timeout_seconds=20, message_handler=handler
    ) as legacy:
        await legacy_round_trip(legacy, store, received, arrived)


async def test_stream_limit_then_sigterm_ends_open_streams_cleanly_and_exits_0(
    redis_url: str,
) -> None:
    store = redis.Redis.from_url(redis_url)
    put_report(store, make_report("BTCUSDT"))
    proc = HttpServerProcess(redis_url, C8_MCP_PUSH_MAX_SUBSCRIBERS="3")
    try:
        await asyncio.to_thread(proc.wait_ready)
        async with (
            httpx.AsyncClient(timeout=10) as http,
            http.stream("GET", f"{proc.base}/v1/stream", params={"symbols": "BTCUSDT"}) as response,
            Client(f"{proc.base}/mcp", read_timeout_seconds=10) as client,
            client.listen(resource_subscriptions=["report://BTCUSDT"]) as sub,
            Client(f"{proc.base}/mcp", mode="legacy", read_timeout_seconds=10) as legacy,
        ):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a legacy session with its GET stream open
                await legacy.subscribe_resource("report://BTCUSDT")
            reader = SseReader(response)
            await reader.event("report")
            # SSE + listen + the legacy session: the limit of this server is reached
            full = await http.get(f"{proc.base}/v1/stream", params={"symbols": "BTCUSDT"})
            assert full.status_code == 503 and "too many open streams" in full.json()["error"]
            started = time.monotonic()
            proc.proc.send_signal(signal.SIGTERM)
            end = await reader.event("end")
            assert orjson.loads(end["data"]) == {"reason": "shutdown"}
            async with asyncio.timeout(DEADLINE_S):
                remaining = [event async for event in sub]  # graceful close ends the loop
            assert remaining == []
            code = await asyncio.to_thread(proc.proc.wait, 10)
            took = time.monotonic() - started
        logs = proc.logs()
    finally:
        proc.stop()
        store.close()
    assert code == 0
    assert "Traceback" not in logs and "graceful shutdown exceeded" not in logs
    assert took < 3  # C8_MCP_SHUTDOWN_GRACE_S: the streams did not wait for it


def test_server_logs_no_errors(server: HttpServerProcess) -> None:
    wait_for(lambda: server.proc.poll() is None, 1, "the server to be running")
    assert "Traceback" not in server.logs()
