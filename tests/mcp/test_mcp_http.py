"""A real ``python -m services.mcp`` HTTP server: streamable HTTP MCP, JSON routes, metrics,
Redis failures and SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import time
from importlib.metadata import version
from typing import Any

import httpx
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
    assert one.headers["cache-control"] == "no-cache"  # revalidate with the ETag
    body = one.json()
    assert schema_errors(body) == []
    assert body["symbol"] == "BTCUSDT" and body["mid_price"] == stored["mid_price"]
    assert body["data_age_ms"] == 90 + body["report_write_age_ms"]

    unknown = httpx.get(f"{server.base}/v1/reports/XRPUSDT")
    assert unknown.status_code == 404
    assert unknown.json()["known_count"] == 3 and unknown.json()["suggestions"] == []
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
    assert health.json()["reports"] == {"ok": 2, "degraded": 0, "down": 0, "no_report": 1}
    assert health.json()["status"] == "degraded"  # SOLUSDT has no report


def test_sections_and_etag(server: HttpServerProcess, store: redis.Redis) -> None:
    put_report(store, make_report("BTCUSDT"))
    whole = httpx.get(f"{server.base}/v1/reports/BTCUSDT")
    part = httpx.get(f"{server.base}/v1/reports/BTCUSDT", params={"sections": "l1,health"})
    assert part.status_code == 200
    body = part.json()
    assert {"best_bid", "spread_bps", "health", "ingestion", "data_age_ms"} <= set(body)
    assert not {"depth", "flow", "liquidity", "anomalies"} & set(body)
    assert len(part.content) < len(whole.content) / 2
    bad = httpx.get(f"{server.base}/v1/reports/BTCUSDT", params={"sections": "l1,orders"})
    assert bad.status_code == 400 and "unknown section 'orders'" in bad.json()["error"]

    tag = whole.headers["etag"]
    assert tag.startswith('W/"') and part.headers["etag"] != tag
    same = httpx.get(f"{server.base}/v1/reports/BTCUSDT", headers={"If-None-Match": tag})
    assert same.status_code == 304 and same.content == b"" and same.headers["etag"] == tag
    put_report(store, make_report("BTCUSDT", updated_at_ms=now_ms() + 1))
    changed = httpx.get(f"{server.base}/v1/reports/BTCUSDT", headers={"If-None-Match": tag})
    assert changed.status_code == 200 and changed.headers["etag"] != tag


def test_unknown_routes_and_methods_answer_json(server: HttpServerProcess) -> None:
    missing = httpx.get(f"{server.base}/v2/nothing")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/json"
    assert "no route '/v2/nothing'" in missing.json()["error"]
    wrong = httpx.post(f"{server.base}/v1/symbols")
    assert wrong.status_code == 405 and wrong.headers["content-type"] == "application/json"
    assert "GET" in wrong.headers["allow"] and "POST" in wrong.json()["error"]


def test_health_and_readiness_follow_the_reports(
    server: HttpServerProcess, store: redis.Redis
) -> None:
    """/healthz used to answer ok with every report down."""
    none = httpx.get(f"{server.base}/readyz")
    assert none.status_code == 503 and none.json()["ready"] is False
    put_report(store, make_report("BTCUSDT", updated_at_ms=now_ms() - 60_000))
    down = httpx.get(f"{server.base}/healthz")
    assert down.status_code == 200  # the process and Redis are fine: not a restart case
    assert down.json()["status"] == "down"
    assert down.json()["reports"]["down"] == 1
    assert httpx.get(f"{server.base}/readyz").status_code == 503
    put_report(store, make_report("ETHUSDT"))
    assert httpx.get(f"{server.base}/healthz").json()["status"] == "degraded"
    ready = httpx.get(f"{server.base}/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True


def test_reports_without_symbols_page_by_the_batch_limit(redis_server: RedisServer) -> None:
    """GET /v1/reports used to return every report (3.8 MB at 1000 symbols)."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    proc = HttpServerProcess(redis_server.url, C8_MCP_MAX_BATCH="3")
    try:
        proc.wait_ready()
        for i in range(7):
            put_report(client, make_report(f"S{i}USDT"))
        seen: list[str] = []
        cursor: str | None = None
        while True:
            params = {} if cursor is None else {"cursor": cursor}
            page = httpx.get(f"{proc.base}/v1/reports", params=params).json()
            assert len(page["reports"]) <= 3 and page["total"] == 7
            seen += [r["symbol"] for r in page["reports"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == [f"S{i}USDT" for i in range(7)]
        dupes = httpx.get(f"{proc.base}/v1/reports", params={"symbols": "s1usdt," * 5 + "S1USDT"})
        assert dupes.status_code == 200 and len(dupes.json()["reports"]) == 1
    finally:
        proc.stop()
        client.close()


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
    assert {"get_report", "get_reports", "list_symbols"} <= names
    assert not report.is_error and report.structured_content is not None
    assert report.structured_content["symbol"] == "BTCUSDT"
    assert schema_errors(report.structured_content) == []
    assert unknown.is_error
    block = unknown.content[0]
    assert isinstance(block, TextContent)
    assert "unknown symbol 'ETHUSDT'; did you mean BTCUSDT?" in block.text
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
