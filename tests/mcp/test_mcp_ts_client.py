"""Proof with an independent client: the TypeScript MCP SDK from npm (tests/js/mcp_client.mjs)
against a real ``python -m services.mcp`` over a real redis-server, over streamable HTTP and
stdio. The script lists the tools, calls every one with valid arguments and validates each
structuredContent against the tool's advertised outputSchema with ajv (draft 2020-12)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis

from tests.mcp.helpers import HttpServerProcess, make_report, now_ms, put_report, register_symbol
from tests.mcp.js_clients import (
    node_env,
    run_ts_client,
    stdio_server_command,
    stdio_server_env,
)
from tests.support.asset_reports import btc_asset_report, put_asset_report

#: Tools every build has; tools added later are called too (the script calls all it lists).
CORE_TOOLS = {"get_report", "get_reports", "list_symbols"}

pytestmark = pytest.mark.usefixtures("js_clients")


@pytest.fixture
def reports(redis_url: str) -> str:
    """BTCUSDT and ETHUSDT published, SOLUSDT registered without a report, the BTC asset
    report published (get_asset)."""
    client = redis.Redis.from_url(redis_url)
    put_report(client, make_report("BTCUSDT"))
    put_asset_report(client, btc_asset_report(), now_ms())
    put_report(client, make_report("ETHUSDT", mid=3400.0))
    register_symbol(client, "SOLUSDT")
    client.close()
    return redis_url


def check_summary(summary: dict[str, Any], transport: str) -> None:
    assert summary.get("fatal") is None, summary.get("fatal")
    assert summary["transport"] == transport
    assert summary["server"]["name"] == "context8"
    names = {tool["name"] for tool in summary["tools"]}
    assert names >= CORE_TOOLS, names
    for tool in summary["tools"]:
        # Every tool advertises an outputSchema, answers without error and its
        # structuredContent validates against that schema (ajv, draft 2020-12).
        assert tool["hasOutputSchema"], tool
        assert not tool["isError"], tool
        assert tool["hasStructuredContent"] and tool["valid"], tool
    by_name = {tool["name"]: tool for tool in summary["tools"]}
    # ajv is not vacuous: the same schemas reject an empty object.
    assert all(by_name[name]["rejectsEmpty"] for name in CORE_TOOLS)
    assert {"symbol", "served_at", "report_write_age_ms"} <= set(
        by_name["get_report"]["structuredKeys"]
    )
    assert {"reports", "errors"} <= set(by_name["get_reports"]["structuredKeys"])
    assert "symbols" in by_name["list_symbols"]["structuredKeys"]
    assert summary["ok"] is True


def test_ts_sdk_client_over_streamable_http(
    server: HttpServerProcess, reports: str, tmp_path: Path
) -> None:
    code, summary, stderr = run_ts_client(["http", f"{server.base}/mcp"], node_env(tmp_path))
    check_summary(summary, "http")
    assert code == 0, stderr


def test_ts_sdk_client_over_stdio(reports: str, tmp_path: Path) -> None:
    env = node_env(tmp_path, stdio_server_env(reports))
    code, summary, stderr = run_ts_client(["stdio", *stdio_server_command()], env)
    check_summary(summary, "stdio")
    assert code == 0, stderr


def test_ts_sdk_client_reports_a_tool_error(
    server: HttpServerProcess, redis_url: str, tmp_path: Path
) -> None:
    """The harness itself: an unknown symbol is a tool error the script reports (exit 1),
    so a green summary above is not a script that never fails."""
    client = redis.Redis.from_url(redis_url)
    put_report(client, make_report("BTCUSDT"))
    put_asset_report(client, btc_asset_report(), now_ms())
    client.close()
    code, summary, _ = run_ts_client(
        ["--args", '{"get_report": {"symbol": "XRPUSDT"}}', "http", f"{server.base}/mcp"],
        node_env(tmp_path),
    )
    assert code == 1 and summary["ok"] is False
    failed = {tool["name"]: tool for tool in summary["tools"] if tool["isError"]}
    assert set(failed) == {"get_report"}
    assert "XRPUSDT" in failed["get_report"]["errorText"]
