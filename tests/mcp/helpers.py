"""Helpers for the read-API tests: schema-valid reports in Redis, polling, a server process."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis

from context8.redis_server import free_port
from shared import keys
from shared.redis_client import RedisClient, make_redis
from shared.report import SCHEMA_VERSION, iso_utc_from_ns, schema_errors
from shared.settings import ServiceSettings

REPO = Path(__file__).resolve().parents[2]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def make_report(
    symbol: str = "BTCUSDT",
    *,
    venue: str = "BINANCE",
    data_age_ms: int = 120,
    status: str = "ok",
    updated_at_ms: int | None = None,
    mid: float = 65000.05,
) -> dict[str, Any]:
    """A schema-valid report 1.2 (checked against the contract schema)."""
    written = now_ms() if updated_at_ms is None else updated_at_ms
    event_ns = (written - data_age_ms) * 1_000_000
    bid, ask = mid - 0.05, mid + 0.05
    data: dict[str, Any] = {
        "schemaVersion": SCHEMA_VERSION,
        "writer": {"nodeId": "calc-test-1", "writerToken": 7},
        "updatedAt": written,
        "symbol": symbol,
        "venue": venue,
        "generated_at": iso_utc_from_ns(event_ns),
        "data_age_ms": data_age_ms,
        "ingestion": {"status": status, "last_update": iso_utc_from_ns(event_ns)},
        "last_price": mid,
        "change_24h_pct": None,
        "high_24h": None,
        "low_24h": None,
        "volume_24h": None,
        "best_bid": {"price": bid, "qty": 1.5},
        "best_ask": {"price": ask, "qty": 0.5},
        "spread_bps": (ask - bid) / mid * 1e4,
        "mid_price": mid,
        "micro_price": (bid * 0.5 + ask * 1.5) / 2.0,
        "depth": {
            "bids": [{"price": bid, "qty": 1.5}, {"price": bid - 0.1, "qty": 2.0}],
            "asks": [{"price": ask, "qty": 0.5}, {"price": ask + 0.1, "qty": 1.0}],
            "total_bid_qty": 3.5,
            "total_ask_qty": 1.5,
            "imbalance": (3.5 - 1.5) / 5.0,
        },
        "flow": {"orders_per_sec": 12.5, "net_flow": -0.3},
        "liquidity": {
            "walls": [{"side": "bid", "price": bid - 0.1, "qty": 2.0, "severity": "low"}],
            "vacuums": [{"from": ask + 0.1, "to": ask + 5.0, "severity": "medium"}],
            "volume_profile": {
                "POC": mid,
                "VAH": mid + 2.0,
                "VAL": mid - 2.0,
                "window_sec": 120.0,
                "trade_count": 250,
            },
        },
        "anomalies": [],
        "health": {"score": 90, "components": [{"metric": "spread", "score": 95}]},
    }
    assert schema_errors(data) == [], schema_errors(data)
    return data


def put_report(
    client: redis.Redis, report: dict[str, Any], *, updated_at_ms: int | None = None
) -> None:
    """Write a report hash the way the publisher's fenced_publish.lua does."""
    written = report["updatedAt"] if updated_at_ms is None else updated_at_ms
    client.hset(
        keys.report(report["symbol"]),
        mapping={
            "json": orjson.dumps(report),
            "token": report["writer"]["writerToken"],
            "event_ms": written - report["data_age_ms"],
            "node": report["writer"]["nodeId"],
            "updated_at": written,
        },
    )


def register_symbol(client: redis.Redis, symbol: str, venue: str = "BINANCE") -> None:
    """What ingest does for every symbol it publishes."""
    client.hset(keys.SYMBOLS, symbol, orjson.dumps({"venue": venue, "market": "usdm"}))


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except ServerExited:
            raise
        except Exception as exc:  # not ready yet (connection refused, ...)
            last_error = exc
        else:
            if value:
                return value
        time.sleep(0.02)  # polling interval, not synchronisation: the deadline decides
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last_error})")


def service_env(redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("C8_")}
    env.update({"C8_REDIS_URL": redis_url, "C8_LOG_LEVEL": "WARNING", **extra})
    return env


class ServerExited(AssertionError):
    """The server process ended while we waited for it."""


class HttpServerProcess:
    """``python -m services.mcp`` on free ports, ready when /healthz answers 200."""

    def __init__(self, redis_url: str, **extra_env: str) -> None:
        self.port = free_port()
        self.metrics_port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.redis_url = redis_url
        env = service_env(
            redis_url,
            C8_MCP_PORT=str(self.port),
            C8_METRICS_PORT=str(self.metrics_port),
            **extra_env,
        )
        # stderr to a file, not a pipe: nobody drains a pipe while the test runs.
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.mcp"],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )

    def logs(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def wait_ready(self, timeout: float = 20.0, statuses: tuple[int, ...] = (200,)) -> None:
        """Poll /healthz until it answers with one of ``statuses``."""

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise ServerExited(f"server exited with {self.proc.returncode}: {self.logs()}")
            return httpx.get(f"{self.base}/healthz", timeout=1.0).status_code in statuses

        try:
            wait_for(ready, timeout, "the mcp HTTP server to answer /healthz")
        except (AssertionError, ServerExited):
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def unreachable_redis() -> RedisClient:
    """A service Redis client pointed at a port nobody listens on, failing fast."""
    return make_redis(
        ServiceSettings(
            redis_url=f"redis://127.0.0.1:{free_port()}/0",
            redis_retries=0,
            redis_connect_timeout_s=0.2,
            redis_socket_timeout_s=0.2,
        )
    )
