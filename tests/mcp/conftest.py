"""Fixtures shared by the read-API tests: a real ``python -m services.mcp`` HTTP server on
the session's redis-server, a plain Redis client, the npm clients installed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from context8.redis_server import RedisServer
from tests.mcp.helpers import HttpServerProcess
from tests.mcp.js_clients import ensure_js_clients


@pytest.fixture(scope="module")
def server(redis_server: RedisServer) -> Iterator[HttpServerProcess]:
    """One server for the module (default settings); each test's ``redis_url`` fixture
    flushes its Redis. Modules that need other settings define their own ``server``."""
    proc = HttpServerProcess(redis_server.url)
    proc.wait_ready()
    yield proc
    proc.stop()


@pytest.fixture
def store(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def js_clients() -> None:
    """The npm clients of tests/js (a no-op once installed)."""
    ensure_js_clients()
