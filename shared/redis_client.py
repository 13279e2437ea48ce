"""The Redis client every service uses: explicit timeouts and a bounded retry budget."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.settings import ServiceSettings


def make_redis(settings: ServiceSettings, *, blocking_ms: int = 0) -> Redis:
    """A client whose every call fails within about (retries + 1) x socket timeout.

    ``blocking_ms`` widens the read timeout for a client used with blocking reads
    (XREAD BLOCK, pub/sub), so a quiet stream is not mistaken for a dead server.
    """
    return Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_socket_timeout_s + blocking_ms / 1000,
        socket_connect_timeout=settings.redis_connect_timeout_s,
        retry=Retry(ExponentialBackoff(cap=0.25, base=0.02), settings.redis_retries),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        health_check_interval=0,
        decode_responses=False,
    )
