"""Entry point of the read API process: settings, logs, metrics, Redis, then one transport."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any, Literal

import uvicorn

from services.mcp.freshness import FreshnessPolicy
from services.mcp.http_api import MCP_PATH, build_http_app
from services.mcp.service import ReportService
from services.mcp.settings import Settings
from services.mcp.store import ReportStore
from services.mcp.tools import build_mcp_server
from shared.lifecycle import Shutdown
from shared.logging import configure_logging
from shared.metrics import start_metrics
from shared.redis_client import make_redis

Transport = Literal["http", "stdio"]


class _UvicornServer(uvicorn.Server):
    """uvicorn without its own signal handling: run_service's Shutdown drives the stop.

    (uvicorn would otherwise re-raise the captured SIGTERM after its graceful shutdown,
    killing the process instead of letting it exit 0.)
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _until_done_or_shutdown(task: asyncio.Task[Any], shutdown: Shutdown) -> bool:
    """Wait for ``task`` to end or for shutdown; True if shutdown came first."""
    stop = asyncio.create_task(shutdown.event.wait())
    try:
        done, _ = await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
    return task not in done


async def run_http(
    service: ReportService, settings: Settings, shutdown: Shutdown, log: Any
) -> None:
    mcp_server = build_mcp_server(service, "mcp_http")
    app = build_http_app(service, mcp_server, settings.mcp_host)
    config = uvicorn.Config(
        app,
        host=settings.mcp_host,
        port=settings.mcp_port,
        lifespan="on",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=settings.mcp_shutdown_grace_s,
    )
    server = _UvicornServer(config)
    serving = asyncio.create_task(server.serve())
    log.info("mcp_http_starting", host=settings.mcp_host, port=settings.mcp_port, mcp_path=MCP_PATH)
    if await _until_done_or_shutdown(serving, shutdown):
        log.info("mcp_http_stopping")
        server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(serving), settings.mcp_shutdown_grace_s + 2)
        except TimeoutError:
            server.force_exit = True
            await serving
    else:
        serving.result()  # surfaces a start-up failure


async def run_stdio(service: ReportService, shutdown: Shutdown, log: Any) -> bool:
    """Serve MCP on stdin/stdout until the client closes stdin or shutdown.

    Returns True when the process must exit hard: on SIGTERM while the client still holds
    stdin open, the SDK's stdin reader sits in a blocking read in a worker thread that
    neither task cancellation nor interpreter exit can interrupt.
    """
    mcp_server = build_mcp_server(service, "mcp_stdio")
    serving = asyncio.create_task(mcp_server.run_stdio_async())
    log.info("mcp_stdio_serving")
    if not await _until_done_or_shutdown(serving, shutdown):
        serving.result()  # stdin closed: the normal end of a stdio session
        return False
    serving.cancel()
    done, _ = await asyncio.wait({serving}, timeout=1.0)
    return not done


async def main(shutdown: Shutdown, transport: Transport | None = None) -> None:
    settings = Settings() if transport is None else Settings(mcp_transport=transport)
    log = configure_logging("mcp", settings.node_id, settings.log_level, settings.log_format)
    metrics_port = start_metrics("mcp", settings.metrics_host, settings.metrics_port)
    policy = FreshnessPolicy(settings.mcp_stale_after_ms, settings.mcp_down_after_ms)
    log.info(
        "mcp_starting",
        transport=settings.mcp_transport,
        metrics_port=metrics_port,
        stale_after_ms=policy.stale_after_ms,
        down_after_ms=policy.down_after_ms,
    )
    redis = make_redis(settings)
    service = ReportService(ReportStore(redis), policy, max_batch=settings.mcp_max_batch)
    hard_exit = False
    try:
        if settings.mcp_transport == "stdio":
            hard_exit = await run_stdio(service, shutdown, log)
        else:
            await run_http(service, settings, shutdown, log)
    finally:
        await redis.aclose()
    log.info("mcp_stopped", hard_exit=hard_exit)
    if hard_exit:
        # Nothing is left to drain (read-only service, Redis closed): skip the join of the
        # stdin reader thread, which would block until the client writes or closes stdin.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
