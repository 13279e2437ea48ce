"""Prompts, completions, tool annotations and report cache hints through the Python SDK
client (in memory) over a real redis-server."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import orjson
import pytest
import redis
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, PromptReference, ResourceTemplateReference, TextContent
from prometheus_client import REGISTRY

from context8.redis_server import RedisServer
from services.mcp.freshness import FreshnessPolicy
from services.mcp.service import ReportService
from services.mcp.store import ReportStore
from services.mcp.tools import build_mcp_server
from shared.redis_client import make_redis
from shared.settings import ServiceSettings
from tests.mcp.helpers import (
    HttpServerProcess,
    make_report,
    now_ms,
    put_report,
    register_symbol,
    unreachable_redis,
)

TRANSPORT = "mcp_memory"
#: A long cycle so a freshly written report's cache hint is > 0 even on a slow box.
LONG_CYCLE_MS = 60_000


@pytest.fixture
async def service(redis_url: str) -> AsyncIterator[ReportService]:
    client = make_redis(ServiceSettings(redis_url=redis_url))
    yield ReportService(ReportStore(client), FreshnessPolicy(2500, 12000), max_batch=5)
    await client.aclose()


@pytest.fixture
def server(service: ReportService) -> MCPServer:
    return build_mcp_server(service, TRANSPORT, report_cycle_ms=LONG_CYCLE_MS)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def prompt_text(messages: list[object]) -> str:
    texts = []
    for message in messages:
        content = message.content  # type: ignore[attr-defined]
        assert isinstance(content, TextContent)
        texts.append(content.text)
    return "\n".join(texts)


async def test_prompts_are_listed_with_described_arguments(server: MCPServer) -> None:
    async with Client(server) as client:
        prompts = {p.name: p for p in (await client.list_prompts()).prompts}
    assert set(prompts) == {"market_brief", "liquidity_check", "compare_symbols"}
    expected = {
        "market_brief": ["symbol"],
        "liquidity_check": ["symbol", "notional", "side"],
        "compare_symbols": ["symbols"],
    }
    for name, prompt in prompts.items():
        assert prompt.title and prompt.description and len(prompt.description) > 60
        assert prompt.arguments is not None
        assert [a.name for a in prompt.arguments] == expected[name]
        for argument in prompt.arguments:
            assert argument.required is True
            assert argument.description and len(argument.description) > 20
    notional = prompts["liquidity_check"].arguments[1]  # type: ignore[index]
    assert "quote currency" in (notional.description or "")


async def test_prompts_name_the_tools_to_call(server: MCPServer) -> None:
    async with Client(server) as client:
        brief = await client.get_prompt("market_brief", {"symbol": " btcusdt "})
        check = await client.get_prompt(
            "liquidity_check", {"symbol": "ethusdt", "notional": "25,000", "side": "SELL"}
        )
        compare = await client.get_prompt("compare_symbols", {"symbols": "btcusdt, ETHUSDT"})
        tools = {tool.name for tool in (await client.list_tools()).tools}
    brief_text = prompt_text(list(brief.messages))
    assert [m.role for m in brief.messages] == ["user"]
    assert 'get_report with {"symbol": "BTCUSDT", "sections": [' in brief_text
    assert 'get_history with {"symbol": "BTCUSDT"' in brief_text
    # the server's own freshness thresholds are quoted
    assert "more than 2500 ms" in brief_text and "more than 12000 ms" in brief_text
    check_text = prompt_text(list(check.messages))
    assert "a market sell of 25000 (quote currency" in check_text
    assert 'get_report with {"symbol": "ETHUSDT"' in check_text
    assert "Walk depth.bids from the best (highest) price down" in check_text
    compare_text = prompt_text(list(compare.messages))
    assert 'get_reports once with {"symbols": ["BTCUSDT", "ETHUSDT"]}' in compare_text
    # every tool the recipes name is served
    named = set(
        re.findall(
            r"\b(get_\w+|list_symbols) (?:with|once|per)\b", brief_text + check_text + compare_text
        )
    )
    assert named == {"get_report", "get_reports", "get_history"}
    assert named <= tools


@pytest.mark.parametrize(
    ("name", "arguments", "message"),
    [
        ("market_brief", {"symbol": "BTC-USDT"}, "invalid symbol 'BTC-USDT'"),
        ("market_brief", {}, "prompt 'market_brief' needs argument(s) symbol"),
        (
            "liquidity_check",
            {"symbol": "BTCUSDT", "notional": "-3", "side": "buy"},
            "invalid notional '-3': expected a positive number in the quote currency",
        ),
        (
            "liquidity_check",
            {"symbol": "BTCUSDT", "notional": "100", "side": "long"},
            "invalid side 'long': expected buy or sell",
        ),
        (
            "liquidity_check",
            {"symbol": "BTCUSDT"},
            "prompt 'liquidity_check' needs argument(s) notional, side",
        ),
        ("compare_symbols", {"symbols": "BTCUSDT"}, "at least 2 distinct symbols"),
        (
            "compare_symbols",
            {"symbols": "A,B,C,D,E,F"},
            "6 symbols given; compare_symbols takes at most 5",
        ),
    ],
)
async def test_invalid_prompt_arguments_are_clear_errors(
    server: MCPServer, name: str, arguments: dict[str, str], message: str
) -> None:
    async with Client(server) as client:
        with pytest.raises(MCPError) as raised:
            await client.get_prompt(name, arguments)
    assert raised.value.error.code == INVALID_PARAMS
    assert message in raised.value.error.message


async def test_prompt_requests_are_counted(server: MCPServer) -> None:
    labels = {"transport": TRANSPORT, "endpoint": "prompt:liquidity_check"}
    ok = sample("context8_mcp_requests_total", **labels, status="ok")
    bad = sample("context8_mcp_requests_total", **labels, status="invalid_request")
    async with Client(server) as client:
        args = {"symbol": "BTCUSDT", "notional": "1000", "side": "buy"}
        await client.get_prompt("liquidity_check", args)
        with pytest.raises(MCPError):
            await client.get_prompt("liquidity_check", {**args, "side": "hold"})
    assert sample("context8_mcp_requests_total", **labels, status="ok") == ok + 1
    assert sample("context8_mcp_requests_total", **labels, status="invalid_request") == bad + 1


async def test_completions_list_the_known_symbols(server: MCPServer, store: redis.Redis) -> None:
    for symbol in ("BTCUSDT", "BTCUSDC", "ETHUSDT"):
        put_report(store, make_report(symbol))
    register_symbol(store, "BTCEUR")  # registered by ingest, no report yet
    async with Client(server) as client:
        assert client.server_capabilities.completions is not None
        brief = await client.complete(
            PromptReference(name="market_brief"), {"name": "symbol", "value": "bt"}
        )
        check = await client.complete(
            PromptReference(name="liquidity_check"), {"name": "symbol", "value": "ETH"}
        )
        side = await client.complete(
            PromptReference(name="liquidity_check"), {"name": "side", "value": "b"}
        )
        template = await client.complete(
            ResourceTemplateReference(uri="report://{symbol}"),
            {"name": "symbol", "value": "btcusd"},
        )
        listing = await client.complete(
            PromptReference(name="compare_symbols"), {"name": "symbols", "value": "ethusdt,b"}
        )
        every = await client.complete(
            PromptReference(name="market_brief"), {"name": "symbol", "value": ""}
        )
    assert brief.completion.values == ["BTCEUR", "BTCUSDC", "BTCUSDT"]
    assert (brief.completion.total, brief.completion.has_more) == (3, False)
    assert check.completion.values == ["ETHUSDT"]
    assert side.completion.values == []
    assert template.completion.values == ["BTCUSDC", "BTCUSDT"]
    assert listing.completion.values == ["ETHUSDT,BTCEUR", "ETHUSDT,BTCUSDC", "ETHUSDT,BTCUSDT"]
    assert every.completion.values == ["BTCEUR", "BTCUSDC", "BTCUSDT", "ETHUSDT"]


async def test_completions_stop_at_100_with_total_and_has_more(
    server: MCPServer, store: redis.Redis
) -> None:
    for i in range(120):
        register_symbol(store, f"S{i:03d}USDT")
    async with Client(server) as client:
        done = await client.complete(
            ResourceTemplateReference(uri="report://{symbol}"), {"name": "symbol", "value": "s"}
        )
    assert len(done.completion.values) == 100
    assert done.completion.values[0] == "S000USDT"
    assert (done.completion.total, done.completion.has_more) == (120, True)


async def test_completion_with_redis_down_offers_nothing_instead_of_failing() -> None:
    dead = unreachable_redis()
    server = build_mcp_server(ReportService(ReportStore(dead), FreshnessPolicy()), TRANSPORT)
    try:
        async with Client(server) as client:
            done = await client.complete(
                PromptReference(name="market_brief"), {"name": "symbol", "value": "B"}
            )
            # prompts need no Redis
            brief = await client.get_prompt("market_brief", {"symbol": "BTCUSDT"})
    finally:
        await dead.aclose()
    assert done.completion.values == []
    assert "get_report" in prompt_text(list(brief.messages))


async def test_every_tool_has_a_title_and_all_behaviour_hints(server: MCPServer) -> None:
    async with Client(server) as client:
        tools = (await client.list_tools()).tools
    assert tools
    for tool in tools:
        hints = tool.annotations
        assert hints is not None, tool.name
        assert tool.title and hints.title == tool.title, tool.name
        assert hints.read_only_hint is True, tool.name
        assert hints.idempotent_hint is True, tool.name
        assert hints.open_world_hint is False, tool.name
    titles = {tool.name: tool.title for tool in tools}
    assert titles["get_report"] == "Market report"


async def test_report_reads_carry_a_cache_hint_from_freshness(
    server: MCPServer, store: redis.Redis
) -> None:
    now = now_ms()
    put_report(store, make_report("BTCUSDT", updated_at_ms=now))
    put_report(store, make_report("ETHUSDT", updated_at_ms=now - 4_000))  # degraded
    put_report(store, make_report("SOLUSDT", status="down", updated_at_ms=now))
    async with Client(server) as client:
        fresh = await client.read_resource("report://BTCUSDT", cache_mode="bypass")
        late = await client.read_resource("report://ETHUSDT", cache_mode="bypass")
        down = await client.read_resource("report://SOLUSDT", cache_mode="bypass")
    served = orjson.loads(fresh.contents[0].text)  # type: ignore[union-attr]
    assert served["ingestion"]["status"] == "ok"
    assert fresh.ttl_ms == LONG_CYCLE_MS - served["report_write_age_ms"] > 0
    assert fresh.cache_scope == "private"
    assert (late.ttl_ms, late.cache_scope) == (0, "private")
    assert (down.ttl_ms, down.cache_scope) == (0, "private")


async def test_the_sdk_client_reuses_a_fresh_report_until_its_hint_expires(
    server: MCPServer, store: redis.Redis
) -> None:
    put_report(store, make_report("BTCUSDT", mid=65000.0))
    async with Client(server) as client:
        first = await client.read_resource("report://BTCUSDT")
        put_report(store, make_report("BTCUSDT", mid=66000.0))
        cached = await client.read_resource("report://BTCUSDT")
        refreshed = await client.read_resource("report://BTCUSDT", cache_mode="refresh")
    mids = [
        orjson.loads(r.contents[0].text)["mid_price"]  # type: ignore[union-attr]
        for r in (first, cached, refreshed)
    ]
    assert mids == [65000.0, 65000.0, 66000.0]


async def test_default_cycle_bounds_the_hint_to_250_ms(
    service: ReportService, store: redis.Redis
) -> None:
    put_report(store, make_report("BTCUSDT"))
    async with Client(build_mcp_server(service, TRANSPORT)) as client:
        result = await client.read_resource("report://BTCUSDT", cache_mode="bypass")
    served = orjson.loads(result.contents[0].text)  # type: ignore[union-attr]
    assert result.ttl_ms == max(0, 250 - served["report_write_age_ms"])


async def test_http_server_serves_guidance_with_the_configured_cycle(
    redis_server: RedisServer, store: redis.Redis
) -> None:
    """``python -m services.mcp`` over streamable HTTP: C8_MCP_REPORT_CYCLE_MS reaches the
    cache hint; prompts and completions are served."""
    proc = HttpServerProcess(
        redis_server.url,
        C8_MCP_REPORT_CYCLE_MS=str(LONG_CYCLE_MS),
        # a slow box must not see the report go stale (ttl 0) between write and read
        C8_MCP_STALE_AFTER_MS="60000",
        C8_MCP_DOWN_AFTER_MS="120000",
    )
    proc.wait_ready()
    # written once the server is up, so it is still fresh when read
    put_report(store, make_report("BTCUSDT"))
    try:
        async with Client(f"{proc.base}/mcp", read_timeout_seconds=10) as client:
            prompts = {p.name for p in (await client.list_prompts()).prompts}
            done = await client.complete(
                ResourceTemplateReference(uri="report://{symbol}"), {"name": "symbol", "value": "b"}
            )
            brief = await client.get_prompt("market_brief", {"symbol": "btcusdt"})
            read = await client.read_resource("report://BTCUSDT", cache_mode="bypass")
    finally:
        proc.stop()
    assert prompts == {"market_brief", "liquidity_check", "compare_symbols"}
    assert done.completion.values == ["BTCUSDT"]
    assert '"symbol": "BTCUSDT"' in prompt_text(list(brief.messages))
    served = orjson.loads(read.contents[0].text)  # type: ignore[union-attr]
    assert read.ttl_ms == LONG_CYCLE_MS - served["report_write_age_ms"] > 250
