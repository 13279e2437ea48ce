"""Push, proven with the TypeScript MCP SDK from npm: ``resources/subscribe
report://BTCUSDT`` over streamable HTTP and stdio, then a report write announced the way
the publisher's fenced publish does (``SPUBLISH keys.report_updates``) must reach the
client as ``notifications/resources/updated``."""

from __future__ import annotations

import select
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from shared import keys
from tests.mcp.helpers import REPO, HttpServerProcess, make_report, now_ms, put_report
from tests.mcp.js_clients import (
    CLIENT_SCRIPT,
    NODE,
    last_json_line,
    node_env,
    stdio_server_command,
    stdio_server_env,
)
from tests.support.asset_reports import btc_asset_report, put_asset_report

URI = "report://BTCUSDT"

pytestmark = pytest.mark.usefixtures("js_clients")


def read_event(proc: subprocess.Popen[bytes], deadline: float) -> dict[str, Any]:
    """The next JSON line the client prints, before ``deadline`` (monotonic s)."""
    assert proc.stdout is not None
    while True:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([proc.stdout], [], [], max(left, 0.0))
        if not ready:
            raise AssertionError("the TS client printed nothing in time")
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"the TS client exited with {proc.wait(5)} before the event")
        if line.strip().startswith(b"{"):
            event: dict[str, Any] = orjson.loads(line)
            return event


def subscribe_and_update(args: list[str], env: dict[str, str], redis_url: str) -> dict[str, Any]:
    """Run the client with --subscribe; once subscribed, write + announce a new report."""
    proc = subprocess.Popen(
        [str(NODE), str(CLIENT_SCRIPT), "--subscribe", URI, "--timeout", "10000", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        event = read_event(proc, time.monotonic() + 30)
        assert event.get("event") == "subscribed", event
        client = redis.Redis.from_url(redis_url)
        written = now_ms()
        put_report(client, make_report("BTCUSDT", mid=65010.0, updated_at_ms=written))
        client.spublish(keys.report_updates("BTCUSDT"), str(written))
        client.close()
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    return last_json_line(out.decode())


@pytest.mark.parametrize("transport", ["http", "stdio"])
def test_ts_sdk_client_receives_resource_updates(
    transport: str, server: HttpServerProcess, redis_url: str, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(redis_url)
    put_report(client, make_report("BTCUSDT"))
    put_asset_report(client, btc_asset_report(), now_ms())  # the client calls every tool
    client.close()
    if transport == "http":
        args, env = ["http", f"{server.base}/mcp"], node_env(tmp_path)
    else:
        args = ["stdio", *stdio_server_command()]
        env = node_env(tmp_path, stdio_server_env(redis_url))
    summary = subscribe_and_update(args, env, redis_url)
    assert summary.get("fatal") is None, summary.get("fatal")
    assert summary["capabilities"]["resources"]["subscribe"] is True
    sub = summary["subscription"]
    assert sub.get("error") is None, sub.get("error")
    assert sub["received"] is True
    assert [u["uri"] for u in sub["updates"]][:1] == [URI]
    assert sub["msToFirstUpdate"] < 5_000
    assert summary["ok"] is True
