"""The MCP server object, in memory (mcp.Client), over a real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import jsonschema
import orjson
import pytest
import redis
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, TextContent
from prometheus_client import REGISTRY

from services.mcp.freshness import FreshnessPolicy
from services.mcp.schemas import batch_schema, report_sections_schema, served_report_schema
from services.mcp.service import ReportService
from services.mcp.store import ReportStore
from services.mcp.tools import build_mcp_server
from shared import keys
from shared.redis_client import make_redis
from shared.report import schema_errors
from shared.settings import ServiceSettings
from tests.mcp.helpers import make_report, now_ms, put_report, register_symbol, unreachable_redis

TRANSPORT = "mcp_memory"


@pytest.fixture
async def server(redis_url: str) -> AsyncIterator[MCPServer]:
    client = make_redis(ServiceSettings(redis_url=redis_url))
    service = ReportService(ReportStore(client), FreshnessPolicy(2500, 12000), max_batch=5)
    yield build_mcp_server(service, TRANSPORT)
    await client.aclose()


def text_of(result: CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_lists_the_read_only_tools_with_descriptions_and_schemas(server: MCPServer) -> None:
    async with Client(server) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert {"get_report", "get_reports", "list_symbols"} <= set(tools)
    for tool in tools.values():
        assert tool.description and len(tool.description) > 100
        assert tool.annotations is not None and tool.annotations.read_only_hint is True
        assert tool.output_schema is not None and tool.output_schema["type"] == "object"
    assert tools["get_report"].input_schema["required"] == ["symbol"]
    assert tools["get_report"].output_schema == report_sections_schema(2500, 12000)
    props = tools["get_report"].output_schema["properties"]
    assert "2500 ms" in props["ingestion"]["properties"]["status"]["description"]
    assert "basis points" in props["spread_bps"]["description"]
    assert "base" in props["best_bid"]["description"]


async def test_get_report_serves_the_stored_report_with_fresh_read_time_fields(
    server: MCPServer, store: redis.Redis
) -> None:
    stored = make_report("BTCUSDT", data_age_ms=150)
    put_report(store, stored)
    before = sample("context8_mcp_reports_served_total", status="ok")
    async with Client(server) as client:
        result = await client.call_tool("get_report", {"symbol": "BTCUSDT"})
    read_at = now_ms()
    assert not result.is_error, text_of(result)
    served = result.structured_content
    assert served is not None
    assert schema_errors(served) == []
    jsonschema.validate(served, served_report_schema())
    write_age = served["report_write_age_ms"]
    assert 0 <= write_age <= read_at - stored["updatedAt"]
    assert served["data_age_ms"] == stored["data_age_ms"] + write_age
    assert served["ingestion"]["status"] == "ok"
    untouched = {"data_age_ms", "served_at", "report_write_age_ms"}
    assert {k: v for k, v in served.items() if k not in untouched} == {
        k: v for k, v in stored.items() if k not in untouched
    }
    # the unstructured text block carries the same JSON for clients without structured output
    assert orjson.loads(text_of(result))["symbol"] == "BTCUSDT"
    assert sample("context8_mcp_reports_served_total", status="ok") == before + 1


async def test_symbol_input_is_case_insensitive(server: MCPServer, store: redis.Redis) -> None:
    put_report(store, make_report("ETHUSDT", mid=3400.0))
    async with Client(server) as client:
        for raw in ("ethusdt", " EthUsdt "):
            result = await client.call_tool("get_report", {"symbol": raw})
            assert not result.is_error, text_of(result)
            assert result.structured_content is not None
            assert result.structured_content["symbol"] == "ETHUSDT"
            assert result.structured_content["mid_price"] == 3400.0


async def test_unknown_symbol_error_says_how_many_are_known(
    server: MCPServer, store: redis.Redis
) -> None:
    put_report(store, make_report("BTCUSDT"))
    register_symbol(store, "SOLUSDT")  # registered by ingest, no report yet
    before = sample(
        "context8_mcp_requests_total",
        transport=TRANSPORT,
        endpoint="get_report",
        status="unknown_symbol",
    )
    async with Client(server) as client:
        unknown = await client.call_tool("get_report", {"symbol": "xrpusdt"})
        pending = await client.call_tool("get_report", {"symbol": "SOLUSDT"})
    assert unknown.is_error
    message = text_of(unknown)
    assert "unknown symbol 'XRPUSDT'" in message
    assert "2 symbols are known" in message and "list_symbols" in message
    assert pending.is_error
    assert "no report for 'SOLUSDT' yet" in text_of(pending)
    after = sample(
        "context8_mcp_requests_total",
        transport=TRANSPORT,
        endpoint="get_report",
        status="unknown_symbol",
    )
    assert after == before + 2


async def test_invalid_symbol_is_a_clear_tool_error(server: MCPServer) -> None:
    async with Client(server) as client:
        result = await client.call_tool("get_report", {"symbol": "BTC-USDT"})
    assert result.is_error
    assert "invalid symbol 'BTC-USDT'" in text_of(result)
    assert "A-Z" in text_of(result)


async def test_list_symbols_reports_each_symbol_freshness(
    server: MCPServer, store: redis.Redis
) -> None:
    now = now_ms()
    put_report(store, make_report("BTCUSDT", updated_at_ms=now))
    put_report(store, make_report("ETHUSDT", updated_at_ms=now - 5_000))
    put_report(store, make_report("BNBUSDT", updated_at_ms=now - 60_000))
    register_symbol(store, "BTCUSDT")
    register_symbol(store, "SOLUSDT", venue="BYBIT")
    async with Client(server) as client:
        result = await client.call_tool("list_symbols", {})
    assert not result.is_error, text_of(result)
    body = result.structured_content
    assert body is not None
    rows = {row["symbol"]: row for row in body["symbols"]}
    assert [row["symbol"] for row in body["symbols"]] == sorted(rows)
    assert set(rows) == {"BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT"}
    assert rows["BTCUSDT"]["status"] == "ok"
    assert rows["ETHUSDT"]["status"] == "degraded"
    assert rows["BNBUSDT"]["status"] == "down"
    assert rows["BNBUSDT"]["report_write_age_ms"] >= 60_000
    assert rows["SOLUSDT"] == {
        "symbol": "SOLUSDT",
        "venue": "BYBIT",
        "market": "usdm",
        "status": "no_report",
        "data_age_ms": None,
        "report_write_age_ms": None,
        "generated_at": None,
    }
    assert (body["stale_after_ms"], body["down_after_ms"]) == (2500, 12000)


async def test_stale_report_is_downgraded_and_its_data_age_grows(
    server: MCPServer, store: redis.Redis
) -> None:
    now = now_ms()
    put_report(store, make_report("BTCUSDT", data_age_ms=100, updated_at_ms=now - 4_000))
    put_report(store, make_report("ETHUSDT", data_age_ms=100, updated_at_ms=now - 16_000))
    # stored as degraded by the publisher and freshly written: never upgraded to ok
    put_report(store, make_report("BNBUSDT", status="degraded", updated_at_ms=now))
    async with Client(server) as client:
        btc = (await client.call_tool("get_report", {"symbol": "BTCUSDT"})).structured_content
        eth = (await client.call_tool("get_report", {"symbol": "ETHUSDT"})).structured_content
        bnb = (await client.call_tool("get_report", {"symbol": "BNBUSDT"})).structured_content
    assert btc is not None and eth is not None and bnb is not None
    assert btc["ingestion"]["status"] == "degraded"
    assert btc["data_age_ms"] >= 4_100
    assert eth["ingestion"]["status"] == "down"
    assert eth["data_age_ms"] >= 16_100
    assert bnb["ingestion"]["status"] == "degraded"
    for served in (btc, eth, bnb):
        assert schema_errors(served) == []


async def test_get_reports_batches_and_lists_failures_per_symbol(
    server: MCPServer, store: redis.Redis
) -> None:
    put_report(store, make_report("BTCUSDT"))
    put_report(store, make_report("ETHUSDT", mid=3400.0))
    store.hset("c8:report:{BNBUSDT}", mapping={"json": b"{broken", "updated_at": now_ms()})
    async with Client(server) as client:
        some = await client.call_tool(
            "get_reports", {"symbols": ["ethusdt", "bad!", "XRPUSDT", "BTCUSDT", "ETHUSDT"]}
        )
        every = await client.call_tool("get_reports", {})
        too_many = await client.call_tool("get_reports", {"symbols": list("ABCDEF")})
    assert not some.is_error, text_of(some)
    body: dict[str, Any] | None = some.structured_content
    assert body is not None
    jsonschema.validate(body, batch_schema())
    assert [r["symbol"] for r in body["reports"]] == ["ETHUSDT", "BTCUSDT"]
    assert [(e["symbol"], e["status"]) for e in body["errors"]] == [
        ("bad!", "invalid_symbol"),
        ("XRPUSDT", "unknown_symbol"),
    ]
    everything = every.structured_content
    assert everything is not None
    assert [r["symbol"] for r in everything["reports"]] == ["BTCUSDT", "ETHUSDT"]
    assert [(e["symbol"], e["status"]) for e in everything["errors"]] == [("BNBUSDT", "corrupt")]
    assert too_many.is_error
    assert "at most 5" in text_of(too_many)


async def test_report_resource_template(server: MCPServer, store: redis.Redis) -> None:
    put_report(store, make_report("BTCUSDT"))
    async with Client(server) as client:
        templates = (await client.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == ["report://{symbol}"]
        contents = (await client.read_resource("report://btcusdt")).contents
        with pytest.raises(MCPError, match="unknown symbol 'ETHUSDT'"):
            await client.read_resource("report://ETHUSDT")
    assert len(contents) == 1
    assert contents[0].mime_type == "application/json"
    served = orjson.loads(contents[0].text)  # type: ignore[union-attr]
    assert served["symbol"] == "BTCUSDT"
    assert schema_errors(served) == []


async def test_redis_down_is_a_counted_tool_error_not_a_crash() -> None:
    dead = unreachable_redis()
    service = ReportService(ReportStore(dead), FreshnessPolicy())
    server = build_mcp_server(service, TRANSPORT)
    errors_before = sample("context8_mcp_redis_errors_total")
    unavailable_before = sample(
        "context8_mcp_requests_total",
        transport=TRANSPORT,
        endpoint="list_symbols",
        status="unavailable",
    )
    try:
        async with Client(server) as client:
            report = await client.call_tool("get_report", {"symbol": "BTCUSDT"})
            listing = await client.call_tool("list_symbols", {})
            # the server keeps answering after the failures
            again = await client.call_tool("get_report", {"symbol": "BTCUSDT"})
    finally:
        await dead.aclose()
    for result in (report, listing, again):
        assert result.is_error
        assert "report store (Redis) unavailable" in text_of(result)
    assert sample("context8_mcp_redis_errors_total") == errors_before + 3
    after = sample(
        "context8_mcp_requests_total",
        transport=TRANSPORT,
        endpoint="list_symbols",
        status="unavailable",
    )
    assert after == unavailable_before + 1


async def test_get_reports_without_symbols_pages_by_the_batch_limit(
    server: MCPServer, store: redis.Redis
) -> None:
    """No symbols used to return every report at once (12.4 MB over MCP at 1000
    symbols): now at most max_batch (5 here) per call, with a cursor to page on."""
    symbols = [f"S{i:02d}USDT" for i in range(12)]
    for symbol in symbols:
        put_report(store, make_report(symbol))
    pages: list[list[str]] = []
    cursor: str | None = None
    async with Client(server) as client:
        while True:
            args: dict[str, Any] = {} if cursor is None else {"cursor": cursor}
            result = await client.call_tool("get_reports", args)
            assert not result.is_error, text_of(result)
            body = result.structured_content
            assert body is not None
            jsonschema.validate(body, batch_schema())
            assert body["total"] == 12
            pages.append([r["symbol"] for r in body["reports"]])
            cursor = body["next_cursor"]
            if cursor is None:
                break
    assert [len(p) for p in pages] == [5, 5, 2]
    assert [s for page in pages for s in page] == symbols


async def test_batch_limit_counts_distinct_symbols(server: MCPServer, store: redis.Redis) -> None:
    put_report(store, make_report("BTCUSDT"))
    async with Client(server) as client:
        same = await client.call_tool("get_reports", {"symbols": ["btcusdt"] * 6 + ["BTCUSDT"]})
        many = await client.call_tool("get_reports", {"symbols": [f"X{i}" for i in range(6)]})
    assert not same.is_error, text_of(same)
    assert same.structured_content is not None
    assert [r["symbol"] for r in same.structured_content["reports"]] == ["BTCUSDT"]
    assert many.is_error and "6 distinct symbols requested; at most 5" in text_of(many)


async def test_unknown_symbol_errors_stay_short_with_many_known_symbols(
    server: MCPServer, store: redis.Redis
) -> None:
    """Each unknown-symbol error used to embed every known symbol (29 KB at 1000)."""
    pipe = store.pipeline()
    for i in range(1000):
        pipe.hset(keys.SYMBOLS, f"S{i:04d}USDT", b'{"venue":"BINANCE","market":"usdm"}')
    pipe.execute()
    put_report(store, make_report("BTCUSDT"))
    async with Client(server) as client:
        one = await client.call_tool("get_report", {"symbol": "BTCUSD"})
        batch = await client.call_tool(
            "get_reports", {"symbols": ["XRPUSDT", "DOGEUSDT", "BTCUSD", "S0001USDC", "S9USDT"]}
        )
    assert one.is_error
    assert len(text_of(one)) < 300
    assert "did you mean BTCUSDT" in text_of(one) and "1001 symbols are known" in text_of(one)
    assert batch.structured_content is not None
    errors = batch.structured_content["errors"]
    assert [e["status"] for e in errors] == ["unknown_symbol"] * 5
    assert all(len(e["error"]) < 300 for e in errors)
    assert "S0001USDT" in errors[3]["error"]


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("", "''"),
        ("A" * 65, "'" + "A" * 64 + "'…"),
        ("btcuſdt", "'btcuſdt'"),
        ("BTC USDT", "'BTC USDT'"),
    ],
)
async def test_symbol_input_errors_are_clear_and_ascii_only(
    server: MCPServer, store: redis.Redis, raw: str, shown: str
) -> None:
    """ "" and 65 characters used to return a raw pydantic dump; Unicode case mapping
    turned 'btcuſdt' (long s) into BTCUSDT and answered for it."""
    put_report(store, make_report("BTCUSDT"))
    async with Client(server) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        result = await client.call_tool("get_report", {"symbol": raw})
    symbol_schema = tools["get_report"].input_schema["properties"]["symbol"]
    assert symbol_schema["maxLength"] == 40 and symbol_schema["pattern"] == "^[A-Za-z0-9]{1,40}$"
    assert result.is_error
    assert f"invalid symbol {shown}: expected 1-40 ASCII letters" in text_of(result)
    assert "validation error" not in text_of(result).lower()


async def test_sections_and_compact_text(server: MCPServer, store: redis.Redis) -> None:
    """The text copy used to be indent-2 JSON (11 KB for a 3.8 KB report); sections
    return only the asked parts, with identity and freshness always present."""
    put_report(store, make_report("BTCUSDT"))
    async with Client(server) as client:
        whole = await client.call_tool("get_report", {"symbol": "BTCUSDT"})
        part = await client.call_tool("get_report", {"symbol": "BTCUSDT", "sections": ["l1"]})
        bad = await client.call_tool("get_report", {"symbol": "BTCUSDT", "sections": ["book"]})
    assert whole.structured_content is not None and part.structured_content is not None
    text = text_of(whole)
    assert "\n" not in text and orjson.loads(text) == whole.structured_content
    assert len(text) == len(orjson.dumps(whole.structured_content))
    jsonschema.validate(whole.structured_content, served_report_schema(2500, 12000))
    body = part.structured_content
    jsonschema.validate(body, report_sections_schema(2500, 12000))
    assert {"best_bid", "spread_bps", "symbol", "ingestion", "data_age_ms"} <= set(body)
    assert not {"depth", "flow", "liquidity", "health"} & set(body)
    assert orjson.loads(text_of(part)) == body
    assert bad.is_error and "unknown section 'book'" in text_of(bad)


async def test_list_symbols_pages_by_500(server: MCPServer, store: redis.Redis) -> None:
    pipe = store.pipeline()
    for i in range(1203):
        pipe.hset(keys.SYMBOLS, f"S{i:04d}USDT", b'{"venue":"BINANCE","market":"usdm"}')
    pipe.execute()
    sizes: list[int] = []
    names: list[str] = []
    cursor: str | None = None
    async with Client(server) as client:
        while True:
            args: dict[str, Any] = {} if cursor is None else {"cursor": cursor}
            result = await client.call_tool("list_symbols", args)
            body = result.structured_content
            assert body is not None and body["total"] == 1203
            sizes.append(len(body["symbols"]))
            names += [row["symbol"] for row in body["symbols"]]
            assert len(text_of(result)) < 120_000
            cursor = body["next_cursor"]
            if cursor is None:
                break
    assert sizes == [500, 500, 203] and names == sorted(set(names)) and len(names) == 1203
