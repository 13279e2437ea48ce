"""``python -m services.mcp --stdio`` as a real subprocess."""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time

import pytest
import redis
from mcp import Client, StdioServerParameters
from mcp_types import TextContent

from shared.report import schema_errors
from tests.mcp.helpers import REPO, make_report, put_report, register_symbol, service_env

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "context8-test", "version": "1"},
    },
}


async def test_sdk_client_over_stdio(redis_url: str) -> None:
    client_redis = redis.Redis.from_url(redis_url)
    put_report(client_redis, make_report("BTCUSDT"))
    register_symbol(client_redis, "ETHUSDT")
    client_redis.close()
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "services.mcp", "--stdio"],
        env=service_env(redis_url),
        cwd=REPO,
    )
    async with Client(params, read_timeout_seconds=20) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        report = await client.call_tool("get_report", {"symbol": "btcusdt"})
        unknown = await client.call_tool("get_report", {"symbol": "DOGEUSDT"})
        listing = await client.call_tool("list_symbols", {})
    assert {"get_report", "get_reports", "list_symbols"} <= names
    assert not report.is_error
    assert report.structured_content is not None
    assert report.structured_content["symbol"] == "BTCUSDT"
    assert schema_errors(report.structured_content) == []
    assert unknown.is_error
    block = unknown.content[0]
    assert isinstance(block, TextContent)
    assert "unknown symbol 'DOGEUSDT'" in block.text and "2 symbols are known" in block.text
    assert listing.structured_content is not None
    assert [s["symbol"] for s in listing.structured_content["symbols"]] == ["BTCUSDT", "ETHUSDT"]


def _start_initialized(redis_url: str) -> subprocess.Popen[bytes]:
    """A stdio server that has answered ``initialize`` (so it is fully up)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.mcp", "--stdio"],
        cwd=REPO,
        env=service_env(redis_url),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(INITIALIZE).encode() + b"\n")
    proc.stdin.flush()
    ready, _, _ = select.select([proc.stdout], [], [], 20.0)
    if not ready:
        proc.kill()
        proc.wait(5)
        pytest.fail("stdio server did not answer initialize within 20 s")
    answer = json.loads(proc.stdout.readline())
    assert answer["id"] == 1 and answer["result"]["serverInfo"]["name"] == "context8"
    return proc


def _exit_within(proc: subprocess.Popen[bytes], seconds: float) -> tuple[int, float]:
    start = time.monotonic()
    try:
        code = proc.wait(seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        pytest.fail(f"process still running {seconds} s later")
    return code, time.monotonic() - start


def test_stdio_exits_zero_when_the_client_closes_stdin(redis_url: str) -> None:
    proc = _start_initialized(redis_url)
    assert proc.stdin is not None
    proc.stdin.close()
    code, _ = _exit_within(proc, 5.0)
    assert code == 0


def test_stdio_exits_zero_on_sigterm_with_stdin_still_open(redis_url: str) -> None:
    proc = _start_initialized(redis_url)
    try:
        proc.terminate()
        code, _ = _exit_within(proc, 5.0)
        assert code == 0
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
