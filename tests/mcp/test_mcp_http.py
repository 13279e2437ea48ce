"""A real ``python -m services.mcp`` HTTP server: streamable HTTP MCP, JSON routes, metrics,
Redis failures and SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from importlib.metadata import version
from typing import Any

import httpx
import pytest
import redis
from mcp import Client
from mcp_types import CallToolResult, TextContent
from prometheus_client.parser import text_string_to_metric_families

from context8.redis_server import RedisServer, free_port
from shared.report import schema_errors
from tests.mcp.helpers import (
    HttpServerProcess,
    make_report,
    now_ms,
    put_report,
    register_symbol,
)


@pytest.fixture(scope="module")
def server(redis_server: RedisServer) -> Iterator[HttpServerProcess]:
    """One server for the module; each test's ``redis_url`` fixture flushes its Redis."""
    proc = HttpServerProcess(redis_server.url)
    proc.wait_ready()
    yield proc
    proc.stop()


@pytest.fixture
def store(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


async def call_tool(url: str, name: str, arguments: dict[str, Any]) -> CallToolResult:
    async with Client(url, read_timeout_seconds=10) as client:
        return await client.call_tool(name, arguments)


def metric_samples(metrics_port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_json_routes(server: HttpServerProcess, store: redis.Redis) -> None:
    stored = make_report("BTCUSDT", data_age_ms=90)
    put_report(store, stored)
    put_report(store, make_report("ETHUSDT", mid=3400.0))
    register_symbol(store, "SOLUSDT")

    one = httpx.get(f"{server.base}/v1/reports/btcusdt")
    assert one.status_code == 200
    assert one.headers["content-type"] == "application/json"
    assert one.headers["cache-control"] == "no-store"
    body = one.json()
    assert schema_errors(body) == []
    assert body["symbol"] == "BTCUSDT" and body["mid_price"] == stored["mid_price"]
    assert body["data_age_ms"] == 90 + body["report_write_age_ms"]

    unknown = httpx.get(f"{server.base}/v1/reports/XRPUSDT")
    assert unknown.status_code == 404
    assert unknown.json()["known_symbols"] == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    assert "unknown symbol 'XRPUSDT'" in unknown.json()["error"]

    pending = httpx.get(f"{server.base}/v1/reports/SOLUSDT")
    assert pending.status_code == 404
    assert "no report for 'SOLUSDT' yet" in pending.json()["error"]

    invalid = httpx.get(f"{server.base}/v1/reports/btc-usdt")
    assert invalid.status_code == 400
    assert "invalid symbol 'btc-usdt'" in invalid.json()["error"]

    every = httpx.get(f"{server.base}/v1/reports").json()
    assert [r["symbol"] for r in every["reports"]] == ["BTCUSDT", "ETHUSDT"]
    assert [(e["symbol"], e["status"]) for e in every["errors"]] == [("SOLUSDT", "unknown_symbol")]

    some = httpx.get(f"{server.base}/v1/reports", params={"symbols": "eth,ethusdt"}).json()
    assert [r["symbol"] for r in some["reports"]] == ["ETHUSDT"]
    assert [e["symbol"] for e in some["errors"]] == ["ETH"]

    symbols = httpx.get(f"{server.base}/v1/symbols").json()
    assert [(s["symbol"], s["status"]) for s in symbols["symbols"]] == [
        ("BTCUSDT", "ok"),
        ("ETHUSDT", "ok"),
        ("SOLUSDT", "no_report"),
    ]
    health = httpx.get(f"{server.base}/healthz")
    assert health.status_code == 200 and health.json()["redis"] == "ok"


def test_stale_reports_are_downgraded_at_read_time(
    server: HttpServerProcess, store: redis.Redis
) -> None:
    now = now_ms()
    put_report(store, make_report("BTCUSDT", data_age_ms=100, updated_at_ms=now - 4_000))
    put_report(store, make_report("ETHUSDT", data_age_ms=100, updated_at_ms=now - 20_000))
    btc = httpx.get(f"{server.base}/v1/reports/BTCUSDT").json()
    eth = httpx.get(f"{server.base}/v1/reports/ETHUSDT").json()
    assert btc["ingestion"]["status"] == "degraded" and btc["data_age_ms"] >= 4_100
    assert eth["ingestion"]["status"] == "down" and eth["data_age_ms"] >= 20_100
    assert schema_errors(btc) == [] and schema_errors(eth) == []


async def test_sdk_streamable_http_client(server: HttpServerProcess, store: redis.Redis) -> None:
    put_report(store, make_report("BTCUSDT"))
    async with Client(f"{server.base}/mcp", read_timeout_seconds=10) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        report = await client.call_tool("get_report", {"symbol": "btcusdt"})
        unknown = await client.call_tool("get_report", {"symbol": "ETHUSDT"})
        batch = await client.call_tool("get_reports", {"symbols": ["BTCUSDT", "ETHUSDT"]})
        resource = await client.read_resource("report://BTCUSDT")
    assert names == {"get_report", "get_reports", "list_symbols"}
    assert not report.is_error and report.structured_content is not None
    assert report.structured_content["symbol"] == "BTCUSDT"
    assert schema_errors(report.structured_content) == []
    assert unknown.is_error
    block = unknown.content[0]
    assert isinstance(block, TextContent)
    assert "unknown symbol 'ETHUSDT'; known symbols: BTCUSDT" in block.text
    assert batch.structured_content is not None
    assert [r["symbol"] for r in batch.structured_content["reports"]] == ["BTCUSDT"]
    assert resource.contents[0].mime_type == "application/json"


def test_metrics_expose_the_request_counters(server: HttpServerProcess, store: redis.Redis) -> None:
    put_report(store, make_report("BTCUSDT", updated_at_ms=now_ms() - 5_000))
    before = metric_samples(server.metrics_port)
    assert httpx.get(f"{server.base}/v1/reports/BTCUSDT").status_code == 200
    assert httpx.get(f"{server.base}/v1/reports/NOPE").status_code == 404
    after = metric_samples(server.metrics_port)

    def delta(name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        return after.get(key, 0.0) - before.get(key, 0.0)

    route = "/v1/reports/{symbol}"
    assert delta("context8_mcp_requests_total", transport="http", endpoint=route, status="ok") == 1
    assert (
        delta(
            "context8_mcp_requests_total",
            transport="http",
            endpoint=route,
            status="unknown_symbol",
        )
        == 1
    )
    duration = "context8_mcp_request_duration_seconds_count"
    assert delta(duration, transport="http", endpoint=route) == 2
    assert delta("context8_mcp_reports_served_total", status="degraded") == 1
    assert delta("context8_mcp_served_report_write_age_seconds_count") == 1
    assert ("context8_mcp_redis_errors_total", frozenset()) in after
    build = frozenset({("service", "mcp"), ("version", version("context8"))})
    assert after[("context8_build_info", build)] == 1


def test_redis_down_gives_503_and_tool_errors_without_crashing(redis_url: str) -> None:
    proc = HttpServerProcess(
        f"redis://127.0.0.1:{free_port()}/0",
        C8_REDIS_RETRIES="0",
        C8_REDIS_CONNECT_TIMEOUT_S="0.2",
        C8_REDIS_SOCKET_TIMEOUT_S="0.2",
    )
    try:
        proc.wait_ready(statuses=(503,))
        health = httpx.get(f"{proc.base}/healthz")
        assert health.status_code == 503 and "unavailable" in health.json()["error"]
        for path in ("/v1/reports/BTCUSDT", "/v1/reports", "/v1/symbols"):
            answer = httpx.get(f"{proc.base}{path}")
            assert answer.status_code == 503, path
            assert "report store (Redis) unavailable" in answer.json()["error"]
        result = asyncio.run(call_tool(f"{proc.base}/mcp", "get_report", {"symbol": "BTCUSDT"}))
        assert result.is_error
        block = result.content[0]
        assert isinstance(block, TextContent) and "unavailable" in block.text
        samples = metric_samples(proc.metrics_port)
        assert samples[("context8_mcp_redis_errors_total", frozenset())] >= 5
        assert proc.proc.poll() is None  # still serving
    finally:
        proc.stop()
    assert proc.proc.returncode == 0


def test_sigterm_stops_gracefully_with_exit_0(redis_url: str) -> None:
    store = redis.Redis.from_url(redis_url)
    put_report(store, make_report("BTCUSDT"))
    store.close()
    proc = HttpServerProcess(redis_url)
    try:
        proc.wait_ready()
        # a client whose keep-alive connection stays open must not hold up the shutdown
        with httpx.Client() as client:
            assert client.get(f"{proc.base}/v1/reports/BTCUSDT").status_code == 200
            started = time.monotonic()
            proc.proc.send_signal(signal.SIGTERM)
            code = proc.proc.wait(5)
            took = time.monotonic() - started
    finally:
        proc.stop()
    assert code == 0
    assert took < 5
