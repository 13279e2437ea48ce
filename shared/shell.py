"""The one shell every service runs in (``python -m services.<name>``).

Each service's ``__main__`` is one line, ``raise SystemExit(serve(NAME, Settings, body))``,
and its ``body(shell)`` only builds its objects from what the shell hands it and runs them
until ``shell.shutdown`` is set. The shell does the rest, the same way five times:

1. settings from the environment (pydantic-settings); a bad value is a configuration
   error: the message on stderr, exit code 2, no traceback (once logging is up, a
   configuration error is a ``<service>_config_error`` log line instead);
2. structured JSON logs carrying ``service`` and ``node_id``;
3. the Prometheus metrics server on ``C8_METRICS_HOST:C8_METRICS_PORT``;
4. Redis clients made on request (``shell.redis()``) and closed after the body returns;
5. SIGTERM/SIGINT set ``shell.shutdown``; the body drains and returns;
6. exit codes: 0 a clean stop, 1 a crash (logged with its traceback), 2 a configuration
   error (settings, or a ``ConfigError`` raised by the body before it serves).

Log events ``<service>_starting`` (with the metrics port) and ``<service>_stopped`` (with
the exit code) open and close every service's log.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import uvloop
from pydantic import ValidationError
from redis.exceptions import RedisError

from shared.errors import ConfigError
from shared.lifecycle import Shutdown
from shared.logging import configure_logging
from shared.metrics import start_metrics
from shared.redis_client import RedisClient, make_redis
from shared.settings import ServiceSettings

EXIT_OK = 0
EXIT_CRASH = 1
EXIT_CONFIG = 2

S = TypeVar("S", bound=ServiceSettings)


class Shell(Generic[S]):
    """What a service body gets: its settings, logger, stop signal and Redis clients."""

    def __init__(self, service: str, settings: S, log: Any, metrics_port: int) -> None:
        self.service = service
        self.settings = settings
        self.log = log
        self.metrics_port = metrics_port
        self.shutdown = Shutdown()
        #: Set by a body that must end the process without joining threads (mcp over
        #: stdio: the SDK's stdin reader thread cannot be interrupted).
        self.exit_hard = False
        self._clients: list[RedisClient] = []

    def redis(self, *, blocking_ms: int = 0) -> RedisClient:
        """A Redis client for this service's user; the shell closes it at the end.

        ``blocking_ms``: the longest blocking command (``XREAD BLOCK``, pub/sub) it will
        send, so its socket timeout does not cut such a call short.
        """
        client = make_redis(self.settings, blocking_ms=blocking_ms)
        self._clients.append(client)
        return client

    async def wait_for_redis(self, client: RedisClient) -> bool:
        """Ping until Redis answers (True) or shutdown is requested (False).

        For services that must not start before Redis is there (ingest registers its
        symbols first); the others retry their own loops.
        """
        delay = 0.1
        while not self.shutdown.requested:
            try:
                await client.ping()
                return True
            except (RedisError, OSError) as exc:
                self.log.warning("redis_unreachable_retrying", error=repr(exc))
                await self.shutdown.wait(delay)
                delay = min(delay * 2, 2.0)
        return False

    async def close(self) -> None:
        for client in reversed(self._clients):
            try:
                await client.aclose()
            except (RedisError, OSError) as exc:
                self.log.warning("redis_close_failed", error=repr(exc))
        self._clients.clear()


Body = Callable[[Shell[S]], Awaitable[None]]




def serve(service: str, load_settings: Callable[[], S], body: Body[S]) -> int:
    """Run ``body`` in the shell until it returns; the process exit code.

    ``load_settings`` is usually the service's ``Settings`` class (a callable, so a
    command-line flag can override a field).
    """
    try:
        settings = load_settings()
    except (ValidationError, ConfigError) as exc:
        # Before logging is set up (its level and format are settings): plain stderr.
        print(f"services.{service}: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    log = configure_logging(service, settings.node_id, settings.log_level, settings.log_format)
    try:
        port = start_metrics(service, settings.metrics_host, settings.metrics_port)
    except OSError as exc:  # port taken, address not local: the operator's to fix
        log.error(f"{service}_config_error", error=f"metrics server: {exc}")
        return EXIT_CONFIG
    shell = Shell(service, settings, log, port)
    code = uvloop.run(_run(shell, body))
    log.info(f"{service}_stopped", exit_code=code)
    if shell.exit_hard:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


async def _run(shell: Shell[S], body: Body[S]) -> int:
    shell.shutdown.install()
    shell.log.info(
        f"{shell.service}_starting",
        metrics_port=shell.metrics_port,
        settings=shell.settings.model_dump(mode="json", exclude={"redis_url", "redis_password"}),
    )
    try:
        await body(shell)
    except ConfigError as exc:
        shell.log.error(f"{shell.service}_config_error", error=str(exc))
        return EXIT_CONFIG
    except Exception:
        shell.log.exception(f"{shell.service}_crashed")
        return EXIT_CRASH
    finally:
        await shell.close()
    return EXIT_OK
