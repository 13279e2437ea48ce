"""Asset reports over a real ``python -m services.mcp``: get_asset / list_assets (MCP) and
GET /v1/assets[/{asset}] (HTTP), served with read-time freshness."""

from __future__ import annotations

import httpx
import jsonschema
import pytest
import redis
from mcp import Client
from mcp_types import TextContent

from services.mcp.assets import (
    asset_list_schema,
    normalize_asset,
    serve_asset,
    served_asset_schema,
)
from services.mcp.freshness import FreshnessPolicy
from shared.errors import InvalidSymbolError
from tests.mcp.helpers import HttpServerProcess, now_ms
from tests.support.asset_reports import btc_asset_report, put_asset_report, register_btc


def test_asset_names_are_case_insensitive_with_an_optional_prefix() -> None:
    assert normalize_asset(" btc ") == "BTC"
    assert normalize_asset("asset:eth") == "ETH"
    for bad in ("", "BTC-USD", "x" * 21, "btcſ", 5):
        with pytest.raises(InvalidSymbolError, match="invalid asset"):
            normalize_asset(bad)


def test_serving_ages_every_market_and_downgrades_late_reports() -> None:
    report = btc_asset_report()
    policy = FreshnessPolicy(stale_after_ms=3000, down_after_ms=15000)
    fresh = serve_asset(report, 1_000, 1_200, policy)
    assert fresh["freshness"] == "ok" and fresh["report_write_age_ms"] == 200
    assert fresh["data_age_ms"] == report["data_age_ms"] + 200
    assert [m["data_age_ms"] for m in fresh["markets"]] == [
        m["data_age_ms"] + 200 for m in report["markets"]
    ]
    assert serve_asset(report, 1_000, 5_000, policy)["freshness"] == "degraded"
    assert serve_asset(report, 1_000, 20_000, policy)["freshness"] == "down"
    assert serve_asset(report, None, 20_000, policy)["freshness"] == "down"
    partial = serve_asset({**report, "status": "partial"}, 1_000, 1_200, policy)
    assert partial["freshness"] == "degraded"
    assert report.get("freshness") is None  # the stored report is not modified
    jsonschema.validate(fresh, served_asset_schema())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**fresh, "freshness": "fine"}, served_asset_schema())


def test_http_routes(server: HttpServerProcess, store: redis.Redis) -> None:
    report = btc_asset_report()
    written = now_ms()
    put_asset_report(store, report, written)
    register_btc(store)
    base = server.base
    got = httpx.get(f"{base}/v1/assets/btc", timeout=5)
    assert got.status_code == 200, got.text
    body = got.json()
    jsonschema.validate(body, served_asset_schema())
    for field in ("asset", "generated_at", "consolidated", "crosses", "basis_reference"):
        assert body[field] == report[field]
    assert [m["best_bid"] for m in body["markets"]] == [m["best_bid"] for m in report["markets"]]
    assert body["freshness"] == "ok" and body["report_write_age_ms"] >= 0
    listing = httpx.get(f"{base}/v1/assets", timeout=5).json()
    jsonschema.validate(listing, asset_list_schema())
    assert listing["assets"] == [
        {
            "asset": "BTC",
            "members": ["BTCUSDPERP", "BTCUSDT", "BTCUSDTSPOT"],
            "freshness": "ok",
            "generated_at": report["generated_at"],
        }
    ]
    unknown = httpx.get(f"{base}/v1/assets/BTX", timeout=5)
    assert unknown.status_code == 404
    assert unknown.json()["suggestions"] == ["BTC"]
    assert "unknown asset 'BTX'; did you mean BTC?" in unknown.json()["error"]
    assert httpx.get(f"{base}/v1/assets/BT-C", timeout=5).status_code == 400
    document = httpx.get(f"{base}/openapi.json", timeout=5).json()
    assert {"/v1/assets/{asset}", "/v1/assets"} <= set(document["paths"])


def test_registered_asset_without_a_report_is_a_clear_404(
    server: HttpServerProcess, store: redis.Redis
) -> None:
    register_btc(store)
    got = httpx.get(f"{server.base}/v1/assets/BTC", timeout=5)
    assert got.status_code == 404
    assert "no report for asset 'BTC' yet" in got.json()["error"]
    listing = httpx.get(f"{server.base}/v1/assets", timeout=5).json()
    assert listing["assets"][0]["freshness"] == "no_report"


async def test_mcp_tools(server: HttpServerProcess, store: redis.Redis) -> None:
    report = btc_asset_report()
    put_asset_report(store, report, now_ms())
    register_btc(store)
    async with Client(f"{server.base}/mcp", read_timeout_seconds=10) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        got = await client.call_tool("get_asset", {"asset": "asset:btc"})
        listing = await client.call_tool("list_assets", {})
        unknown = await client.call_tool("get_asset", {"asset": "ETH"})
    assert {"get_asset", "list_assets"} <= set(tools)
    assert tools["get_asset"].output_schema is not None
    assert not got.is_error and got.structured_content is not None
    jsonschema.validate(got.structured_content, tools["get_asset"].output_schema)
    assert got.structured_content["consolidated"] == report["consolidated"]
    assert got.structured_content["crosses"] == report["crosses"]
    assert listing.structured_content is not None
    assert [a["asset"] for a in listing.structured_content["assets"]] == ["BTC"]
    assert unknown.is_error
    block = unknown.content[0]
    assert isinstance(block, TextContent)
    assert "unknown asset 'ETH'" in block.text and "1 assets are known" in block.text
