"""The read API's body in the service shell: Redis, the report service, one transport."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any, Literal

import uvicorn

from services.mcp.auth import build_auth
from services.mcp.freshness import FreshnessPolicy
from services.mcp.http_api import MCP_PATH, build_http_app
from services.mcp.mcp_push import end_streams
from services.mcp.push import PushHub
from services.mcp.service import ReportService
from services.mcp.settings import Settings
from services.mcp.store import ReportStore
from services.mcp.tools import build_mcp_server
from shared.lifecycle import Shutdown
from shared.shell import Shell

Transport = Literal["http", "stdio"]


class _UvicornServer(uvicorn.Server):
    """uvicorn without its own signal handling: the shell's Shutdown drives the stop.

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
    service: ReportService,
    settings: Settings,
    shutdown: Shutdown,
    log: Any,
    push: PushHub | None = None,
) -> None:
    # An AuthConfigError (a ConfigError) refuses to start: the shell exits 2 rather than
    # serve an unprotected or broken setup.
    auth = build_auth(settings)
    mcp_server = build_mcp_server(
        service,
        "mcp_http",
        auth.mcp_auth,
        auth.mcp_token_verifier,
        report_cycle_ms=settings.mcp_report_cycle_ms,
        push=push,
    )
    app = build_http_app(
        service,
        mcp_server,
        settings.mcp_host,
        auth.middleware,
        push=push,
        sse_heartbeat_s=settings.mcp_sse_heartbeat_s,
    )
    log.info(
        "mcp_auth",
        mode=auth.mode,
        static_tokens=auth.static_tokens,
        rate_limit_rps=settings.mcp_rate_limit_rps,
        rate_limit_burst=settings.mcp_rate_limit_burst,
    )
    config = uvicorn.Config(
        app,
        host=settings.mcp_host,
        port=settings.mcp_port,
        lifespan="on",
        # httptools (C parser), explicitly: uvicorn's "auto" silently falls back to the
        # pure-Python h11, about half the REST reads/s (bench/read_api.py). The event loop
        # is already uvloop (shared.lifecycle runs main on it; serve() keeps that loop).
        http="httptools",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=settings.mcp_shutdown_grace_s,
    )
    server = _UvicornServer(config)
    serving = asyncio.create_task(server.serve())
    log.info("mcp_http_starting", host=settings.mcp_host, port=settings.mcp_port, mcp_path=MCP_PATH)
    if await _until_done_or_shutdown(serving, shutdown):
        log.info("mcp_http_stopping")
        if push is not None:
            end_streams(push, mcp_server)  # push streams end now, not at the grace
        server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(serving), settings.mcp_shutdown_grace_s + 2)
        except TimeoutError:
            server.force_exit = True
            await serving
    else:
        serving.result()  # surfaces a start-up failure


async def run_stdio(
    service: ReportService,
    shutdown: Shutdown,
    log: Any,
    report_cycle_ms: int = 250,
    push: PushHub | None = None,
) -> bool:
    """Serve MCP on stdin/stdout until the client closes stdin or shutdown.

    Returns True when the process must exit hard: on SIGTERM while the client still holds
    stdin open, the SDK's stdin reader sits in a blocking read in a worker thread that
    neither task cancellation nor interpreter exit can interrupt.
    """
    mcp_server = build_mcp_server(service, "mcp_stdio", report_cycle_ms=report_cycle_ms, push=push)
    serving = asyncio.create_task(mcp_server.run_stdio_async())
    log.info("mcp_stdio_serving")
    if not await _until_done_or_shutdown(serving, shutdown):
        serving.result()  # stdin closed: the normal end of a stdio session
        return False
    serving.cancel()
    done, _ = await asyncio.wait({serving}, timeout=1.0)
    return not done


async def main(shell: Shell[Settings]) -> None:
    """The read API's body in the service shell (``shared/shell.py``)."""
    settings, shutdown, log = shell.settings, shell.shutdown, shell.log
    policy = FreshnessPolicy(settings.mcp_stale_after_ms, settings.mcp_down_after_ms)
    redis = shell.redis()
    service = ReportService(ReportStore(redis), policy, max_batch=settings.mcp_max_batch)
    # One Redis listener per process for resource subscriptions and /v1/stream.
    push = PushHub(
        redis,
        min_interval_ms=settings.mcp_push_min_interval_ms,
        max_queue=settings.mcp_push_queue,
        max_subscribers=settings.mcp_push_max_subscribers,
    )
    await push.start()
    try:
        if settings.mcp_transport == "stdio":
            # Nothing is left to drain after a hard stop (read-only service): the shell
            # then skips the join of the stdin reader thread, which would block until the
            # client writes or closes stdin.
            shell.exit_hard = await run_stdio(
                service, shutdown, log, settings.mcp_report_cycle_ms, push=push
            )
        else:
            await run_http(service, settings, shutdown, log, push=push)
    finally:
        await push.stop()
