"""Report history on the read side (services/mcp/history.py): pure planning and selection,
then the ``get_history`` tool (in-memory MCP client) and ``GET /v1/reports/{s}/history``
(a real server process) over rows the real publisher and fenced_publish.lua wrote."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult, TextContent

from context8.redis_server import free_port
from services.mcp.errors import InvalidArgumentError, StoreUnavailableError
from services.mcp.freshness import FreshnessPolicy
from services.mcp.history import (
    DEFAULT_FIELDS,
    DEFAULT_MINUTES,
    HISTORY_FIELDS,
    MAX_POINTS,
    HistoryReader,
    output_schema,
    parse_fields,
    parse_minutes,
    plan,
    select,
)
from services.mcp.service import ReportService
from services.mcp.store import ReportStore
from services.mcp.tools import build_mcp_server
from services.publisher.core import write_args, write_keys
from shared import keys
from shared.errors import UnknownSymbolError
from shared.history import encode_row
from shared.lease import LeaseClient
from shared.redis_client import make_redis
from shared.scripts import Scripts
from shared.settings import ServiceSettings
from tests.mcp.helpers import HttpServerProcess
from tests.publisher.helpers import PublisherUnderTest, candidate_fields, report_dict
from tests.support.candidates import stream_of

SYM = "BTCUSDT"
T0 = 1_699_999_980_000  # a whole minute


def row(**values: Any) -> bytes:
    report: dict[str, Any] = {"mid_price": 100.0, "depth": {"imbalance": 0.5}}
    report.update(values)
    return encode_row(report)


# --- pure -----------------------------------------------------------------------------


def test_minutes_and_fields_are_checked_with_clear_errors() -> None:
    assert parse_minutes(None) == parse_minutes("") == DEFAULT_MINUTES
    assert parse_minutes(" 90 ") == 90 and parse_minutes(1440) == 1440
    for bad in (0, 1441, "-5", "ten", 2.5, True):
        with pytest.raises(InvalidArgumentError, match="expected a whole number 1-1440"):
            parse_minutes(bad)
    assert parse_fields(None) == parse_fields("") == parse_fields([]) == DEFAULT_FIELDS
    assert parse_fields("mid_price, depth.imbalance,mid_price") == ("mid_price", "depth.imbalance")
    assert parse_fields(["liquidity.volume_profile.POC"]) == ("liquidity.volume_profile.POC",)
    with pytest.raises(InvalidArgumentError) as err:
        parse_fields(["mid_price", "imbalance"])
    message = str(err.value)
    assert message.startswith("unknown history field 'imbalance'; did you mean depth.imbalance?")
    assert message.endswith(", ".join(HISTORY_FIELDS)) and len(message) < 1500
    with pytest.raises(InvalidArgumentError, match="unknown history field int"):
        parse_fields([3])  # type: ignore[list-item]


def test_plan_picks_the_stream_and_thins_to_the_point_cap() -> None:
    assert plan(15) == plan(15, MAX_POINTS)
    p = plan(10)
    assert (p.coarse, p.source_s, p.resolution_s, p.count) == (False, 1, 1, 601)
    p = plan(60)
    assert (p.coarse, p.resolution_s, p.count) == (False, 6, 3601)
    p = plan(61)
    assert (p.coarse, p.source_s, p.resolution_s, p.count) == (True, 60, 60, 62)
    p = plan(1440)
    assert (p.coarse, p.resolution_s, p.count) == (True, 180, 1441)  # 1440 rows / 600 -> 3
    assert plan(1440, max_points=2000).resolution_s == 60


def test_select_keeps_the_window_first_of_each_bucket_and_at_most_max_points() -> None:
    entries = [(T0 + i * 1000, row(mid_price=float(i))) for i in range(120)]
    t, values = select(entries, ["mid_price"], 1, 1)  # the last minute: 60 rows
    assert t == [T0 + i * 1000 for i in range(60, 120)]
    assert values["mid_price"] == [float(i) for i in range(60, 120)]
    t, values = select(entries, ["mid_price", "depth.imbalance"], 2, 10)
    assert t == [T0 + i * 1000 for i in range(0, 120, 10)]  # the first of each 10 s
    assert values["depth.imbalance"] == [0.5] * 12
    t, _ = select(entries, ["mid_price"], 2, 1, max_points=7)
    assert t == [T0 + i * 1000 for i in range(113, 120)]  # the newest 7
    assert select([], ["mid_price"], 5, 1) == ([], {"mid_price": []})


def test_select_skips_unreadable_rows_and_keeps_nulls() -> None:
    entries = [
        (T0, row(spread_bps=None)),
        (T0 + 1000, b"garbage"),
        (T0 + 2000, b"[99, 1]"),  # a row version this reader does not know
        (T0 + 3000, row(spread_bps=1.5)),
    ]
    t, values = select(entries, ["spread_bps"], 5, 1)
    assert t == [T0, T0 + 3000] and values == {"spread_bps": [None, 1.5]}


# --- over Redis -------------------------------------------------------------------------


@pytest.fixture
async def reader(redis_url: str) -> AsyncIterator[tuple[HistoryReader, MCPServer]]:
    client = make_redis(ServiceSettings(redis_url=redis_url))
    service = ReportService(ReportStore(client), FreshnessPolicy(2500, 12000))
    yield HistoryReader(service), build_mcp_server(service, "mcp_memory")
    await client.aclose()


async def publish_rows(client: aioredis.Redis, events: list[int], symbol: str = SYM) -> None:
    """Accepted fenced writes (the real script) at ``events``, mid_price = event seconds."""
    scripts = Scripts(client)
    lease = await LeaseClient(scripts, "calc-1", 60_000, 100).acquire(symbol)
    assert lease is not None
    calls = []
    for event_ms in events:
        report = report_dict(symbol, lease.token, "calc-1", event_ms)
        report["mid_price"] = float(event_ms // 1000)
        args = write_args(
            lease.token, event_ms, "calc-1", orjson.dumps(report), event_ms, 100, encode_row(report)
        )
        calls.append((write_keys(symbol), args))
    for start in range(0, len(calls), 500):
        results = await scripts.pipelined("fenced_publish", calls[start : start + 500])
        assert all(r[0] == 1 for r in results)


def text_of(result: CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


async def test_tool_serves_what_the_real_publisher_wrote(
    aredis: aioredis.Redis, redis_url: str, reader: tuple[HistoryReader, MCPServer]
) -> None:
    _, server = reader
    pub = PublisherUnderTest(redis_url)
    try:
        await pub.start()
        lease = await LeaseClient(Scripts(aredis), "calc-1", 60_000, 100).acquire(SYM)
        assert lease is not None
        for i, event_ms in enumerate([T0, T0 + 300, T0 + 1000, T0 + 2500]):
            body = report_dict(SYM, lease.token, "calc-1", event_ms) | {"mid_price": 10.0 + i}
            fields = candidate_fields(SYM, lease.token, "calc-1", event_ms, body)
            await aredis.xadd(stream_of(SYM), fields)  # type: ignore[arg-type]
        assert await pub.step() == 4
    finally:
        await pub.close()

    async with Client(server) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        result = await client.call_tool(
            "get_history", {"symbol": "btcusdt", "minutes": 5, "fields": ["mid_price"]}
        )
    tool = tools["get_history"]
    assert tool.annotations is not None and tool.annotations.read_only_hint is True
    assert tool.output_schema == output_schema()
    assert tool.input_schema["required"] == ["symbol"]
    assert tool.input_schema["properties"]["minutes"]["maximum"] == 1440
    assert not result.is_error, text_of(result)
    body = result.structured_content
    assert body is not None
    assert {k: body[k] for k in ("symbol", "minutes", "resolution_s", "fields", "points")} == {
        "symbol": SYM,
        "minutes": 5,
        "resolution_s": 1,
        "fields": ["mid_price"],
        "points": 3,
    }
    assert body["t"] == [T0, T0 + 1000, T0 + 2500]  # the first report of each second
    assert body["values"] == {"mid_price": [10.0, 12.0, 13.0]}
    assert orjson.loads(text_of(result)) == body


async def test_long_windows_read_the_minute_stream_and_respect_the_cap(
    aredis: aioredis.Redis, reader: tuple[HistoryReader, MCPServer]
) -> None:
    history, _ = reader
    # 2 h at one report every 20 s: 360 rows in the 1 s stream, 120 in the 1 min one.
    await publish_rows(aredis, [T0 + i * 20_000 for i in range(360)])
    newest = T0 + 359 * 20_000

    hour = await history.get_history(SYM, 60, "mid_price")
    assert hour["resolution_s"] == 6 and hour["points"] == 180  # rows 20 s apart, last hour
    assert hour["t"][-1] == newest and hour["t"][0] > newest - 3_600_000
    assert hour["values"]["mid_price"][-1] == newest // 1000

    two = await history.get_history(SYM, 120, ["mid_price", "ingestion.status"])
    assert two["resolution_s"] == 60 and two["points"] == 120
    assert all((t - T0) % 60_000 == 0 for t in two["t"])  # the first report of each minute
    assert set(two["values"]["ingestion.status"]) == {"ok"}

    day = await history.get_history(SYM, 1440)
    assert day["fields"] == list(DEFAULT_FIELDS) and day["resolution_s"] == 180
    buckets = {(T0 + k * 60_000) // 180_000 for k in range(120)}  # 3 min buckets over 2 h
    assert day["points"] == len(buckets) and [t // 180_000 for t in day["t"]] == sorted(buckets)
    assert len(orjson.dumps(day)) < 20_000


async def test_errors_unknown_symbol_no_history_yet_and_bad_arguments(
    aredis: aioredis.Redis, reader: tuple[HistoryReader, MCPServer]
) -> None:
    history, server = reader
    await publish_rows(aredis, [T0])
    await aredis.hset(keys.SYMBOLS, "SOLUSDT", b'{"venue": "BINANCE", "market": "usdm"}')
    # A report written before history existed: an empty series, not an error.
    await aredis.hset(keys.report("ETHUSDT"), mapping={"json": b"{}", "updated_at": 1})
    empty = await history.get_history("ethusdt", 5)
    assert (empty["points"], empty["t"], empty["values"]["mid_price"]) == (0, [], [])

    with pytest.raises(UnknownSymbolError, match="unknown symbol 'XRPUSDT'"):
        await history.get_history("XRPUSDT")
    with pytest.raises(UnknownSymbolError, match="no report for 'SOLUSDT' yet"):
        await history.get_history("SOLUSDT")

    async with Client(server) as client:
        bad_field = await client.call_tool("get_history", {"symbol": SYM, "fields": "imbalance"})
        bad_minutes = await client.call_tool("get_history", {"symbol": SYM, "minutes": 0})
        bad_symbol = await client.call_tool("get_history", {"symbol": "btc-usdt"})
        ok = await client.call_tool("get_history", {"symbol": SYM, "fields": "spread_bps"})
    assert bad_field.is_error and "did you mean depth.imbalance?" in text_of(bad_field)
    assert bad_minutes.is_error and "expected a whole number 1-1440" in text_of(bad_minutes)
    assert bad_symbol.is_error and "invalid symbol" in text_of(bad_symbol)
    assert not ok.is_error and ok.structured_content is not None
    assert ok.structured_content["values"] == {"spread_bps": [0.078]}


async def test_redis_down_is_store_unavailable() -> None:
    client = make_redis(ServiceSettings(redis_url=f"redis://127.0.0.1:{free_port()}"))
    service = ReportService(ReportStore(client), FreshnessPolicy(2500, 12000))
    try:
        with pytest.raises(StoreUnavailableError, match="while reading the history of BTCUSDT"):
            await HistoryReader(service).get_history(SYM)
    finally:
        await client.aclose()


async def test_http_route(server: HttpServerProcess, aredis: aioredis.Redis) -> None:
    await publish_rows(aredis, [T0, T0 + 1000, T0 + 2000])
    base = f"{server.base}/v1/reports"
    async with httpx.AsyncClient(timeout=10) as http:
        ok = await http.get(f"{base}/btcusdt/history?minutes=2&fields=mid_price,health.score")
        default = await http.get(f"{base}/BTCUSDT/history")
        repeated = await http.get(
            f"{base}/BTCUSDT/history?minutes=2&fields=mid_price&fields=health.score"
        )
        bad = await http.get(f"{base}/BTCUSDT/history?fields=nope")
        bad_minutes = await http.get(f"{base}/BTCUSDT/history?minutes=5000")
        invalid = await http.get(f"{base}/btc-usdt/history")
        unknown = await http.get(f"{base}/XRPUSDT/history")
        report = await http.get(f"{base}/BTCUSDT")
    assert ok.status_code == 200 and ok.headers["cache-control"] == "no-store"
    body = ok.json()
    assert body["t"] == [T0, T0 + 1000, T0 + 2000] and body["resolution_s"] == 1
    assert body["values"] == {"mid_price": [T0 // 1000, T0 // 1000 + 1, T0 // 1000 + 2]} | {
        "health.score": [90, 90, 90]
    }
    assert default.status_code == 200 and default.json()["minutes"] == DEFAULT_MINUTES
    assert default.json()["resolution_s"] == 2  # 15 min of 1 s rows thinned to <= 600 points
    assert default.json()["values"]["mid_price"] == [T0 // 1000, T0 // 1000 + 2]
    assert repeated.json()["values"] == body["values"]
    assert bad.status_code == 400 and "unknown history field 'nope'" in bad.json()["error"]
    assert bad_minutes.status_code == 400
    assert invalid.status_code == 400
    assert unknown.status_code == 404 and "XRPUSDT" in unknown.json()["error"]
    assert report.status_code == 200 and report.json()["symbol"] == SYM  # still its own route
