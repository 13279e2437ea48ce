"""Proof with ``@modelcontextprotocol/inspector`` (npm) in CLI mode against a real
``python -m services.mcp`` over a real redis-server, over stdio and streamable HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis

from shared.report import schema_errors
from tests.mcp.helpers import REPO, HttpServerProcess, make_report, put_report
from tests.mcp.js_clients import (
    node_env,
    run_inspector,
    stdio_server_command,
    stdio_server_env,
)

CORE_TOOLS = {"get_report", "get_reports", "list_symbols"}

pytestmark = pytest.mark.usefixtures("js_clients")


@pytest.fixture
def btc(redis_url: str) -> str:
    client = redis.Redis.from_url(redis_url)
    put_report(client, make_report("BTCUSDT"))
    client.close()
    return redis_url


def target(transport: str, base: str, redis_url: str) -> list[str]:
    """Inspector arguments naming the server: a URL (http) or a command (stdio)."""
    if transport == "http":
        return [f"{base}/mcp", "--transport", "http"]
    env = stdio_server_env(redis_url)
    pairs = [
        arg
        for key, value in env.items()
        if key.startswith("C8_")
        for arg in ("-e", f"{key}={value}")
    ]
    return ["--transport", "stdio", "--cwd", str(REPO), *pairs, *stdio_server_command()]


def result_of(done: Any) -> dict[str, Any]:
    assert done.returncode == 0, f"inspector exit {done.returncode}: {done.stderr}"
    answer: dict[str, Any] = json.loads(done.stdout)["result"]
    return answer


@pytest.mark.parametrize("transport", ["http", "stdio"])
def test_inspector_lists_the_tools(
    transport: str, server: HttpServerProcess, btc: str, tmp_path: Path
) -> None:
    # --strict: exit 6 if the Inspector finds a tool schema that is not portable (errors;
    # nullable ``type`` arrays are only warnings).
    done = run_inspector(
        [*target(transport, server.base, btc), "--method", "tools/list", "--strict"],
        node_env(tmp_path),
    )
    tools = {tool["name"]: tool for tool in result_of(done)["tools"]}
    assert set(tools) >= CORE_TOOLS
    assert tools["get_report"]["inputSchema"]["required"] == ["symbol"]
    assert tools["get_report"]["annotations"]["readOnlyHint"] is True
    assert all("outputSchema" in tool for tool in tools.values())


@pytest.mark.parametrize("transport", ["http", "stdio"])
def test_inspector_calls_get_report(
    transport: str, server: HttpServerProcess, btc: str, tmp_path: Path
) -> None:
    done = run_inspector(
        [
            *target(transport, server.base, btc),
            "--method",
            "tools/call",
            "--tool-name",
            "get_report",
            "--tool-arg",
            "symbol=btcusdt",
        ],
        node_env(tmp_path),
    )
    result = result_of(done)
    assert result.get("isError") is False
    report = result["structuredContent"]
    assert report["symbol"] == "BTCUSDT"
    assert schema_errors(report) == []
    assert json.loads(result["content"][0]["text"])["symbol"] == "BTCUSDT"


def test_inspector_shows_a_tool_error(server: HttpServerProcess, btc: str, tmp_path: Path) -> None:
    done = run_inspector(
        [
            *target("http", server.base, btc),
            "--method",
            "tools/call",
            "--tool-name",
            "get_report",
            "--tool-arg",
            "symbol=XRPUSDT",
        ],
        node_env(tmp_path),
    )
    # A tool error is a result (isError), not a protocol failure; the CLI prints it and
    # exits 5 ("tool_is_error") so scripts can tell it from a transport error.
    assert done.returncode == 5, done.stderr
    assert json.loads(done.stderr)["error"]["code"] == "tool_is_error"
    result = json.loads(done.stdout)["result"]
    assert result["isError"] is True
    assert "XRPUSDT" in result["content"][0]["text"]
