"""The Redis client every service uses: explicit timeouts and a bounded retry budget.

One Redis server (``redis://host:port/0``, the default) or a Redis Cluster
(``redis+cluster://host:port[,host:port...]``, any reachable nodes; ``rediss+cluster``
with TLS): redis-py's ``RedisCluster`` then routes each command to the node owning its
key's hash slot, follows MOVED/ASK redirections and refreshes the slot map after a
failover. Every key context8 uses carries a hash tag (``{SYMBOL}``, ``{fleet}``, a
candidate partition's tag), and every Lua script touches keys of one slot only.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.errors import ConfigError
from shared.settings import ServiceSettings

#: What ``make_redis`` returns: one server's client or a cluster's.
RedisClient = Redis | RedisCluster

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


def is_cluster_url(url: str) -> bool:
    return urlsplit(url).scheme in CLUSTER_SCHEMES


def cluster_nodes(url: str) -> list[tuple[str, int]]:
    """The startup nodes of a ``redis+cluster://h1:p1,h2:p2`` URL (``ConfigError`` if none)."""
    netloc = urlsplit(url).netloc.rpartition("@")[2]
    nodes: list[tuple[str, int]] = []
    for part in filter(None, netloc.split(",")):
        host, _, port = part.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"bad Redis Cluster node {part!r} in C8_REDIS_URL: want host:port")
        nodes.append((host.strip("[]"), int(port)))
    if not nodes:
        raise ConfigError("C8_REDIS_URL names a Redis Cluster but no node: want host:port,...")
    return nodes


def auth_and_tls(settings: ServiceSettings) -> dict[str, Any]:
    """Client options for the ACL user (``C8_REDIS_USERNAME`` / ``_PASSWORD`` /
    ``_PASSWORD_FILE``) and TLS (``C8_REDIS_TLS_*``); empty by default.

    ``ConfigError`` on a combination that would silently not do what it says: settings
    credentials beside credentials in the URL, a password file that cannot be read, TLS
    files with a plain ``redis://`` URL.
    """
    url = urlsplit(settings.redis_url)
    options: dict[str, Any] = {}
    password = settings.redis_password.get_secret_value() if settings.redis_password else None
    if settings.redis_password_file is not None:
        if password is not None:
            raise ConfigError("set C8_REDIS_PASSWORD or C8_REDIS_PASSWORD_FILE, not both")
        try:
            password = settings.redis_password_file.read_text().rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"C8_REDIS_PASSWORD_FILE unreadable: {exc}") from exc
        if not password:
            raise ConfigError(f"C8_REDIS_PASSWORD_FILE {settings.redis_password_file} is empty")
    if settings.redis_username or password is not None:
        if url.username or url.password:
            raise ConfigError(
                "Redis credentials both in C8_REDIS_URL and in C8_REDIS_USERNAME/PASSWORD"
            )
        options["username"] = settings.redis_username
        options["password"] = password
    tls = {
        "ssl_ca_certs": settings.redis_tls_ca_file,
        "ssl_certfile": settings.redis_tls_cert_file,
        "ssl_keyfile": settings.redis_tls_key_file,
    }
    if any(tls.values()):
        if not url.scheme.startswith("rediss"):
            raise ConfigError("C8_REDIS_TLS_* set but C8_REDIS_URL is not rediss:// (TLS)")
        options.update({k: str(v) for k, v in tls.items() if v is not None})
    return options


def make_redis(settings: ServiceSettings, *, blocking_ms: int = 0) -> RedisClient:
    """A client whose every call fails within about (retries + 1) x socket timeout.

    ``blocking_ms`` widens the read timeout for a client used with blocking reads
    (XREAD BLOCK, pub/sub), so a quiet stream is not mistaken for a dead server.
    """
    common: dict[str, Any] = {
        "socket_timeout": settings.redis_socket_timeout_s + blocking_ms / 1000,
        "socket_connect_timeout": settings.redis_connect_timeout_s,
        "retry": Retry(ExponentialBackoff(cap=0.25, base=0.02), settings.redis_retries),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
        "health_check_interval": 0,
        "decode_responses": False,
        "max_connections": settings.redis_max_connections,
    }
    common.update(auth_and_tls(settings))
    url = settings.redis_url
    if not is_cluster_url(url):
        return Redis.from_url(url, **common)
    parts = urlsplit(url)
    common.setdefault("username", unquote(parts.username) if parts.username else None)
    common.setdefault("password", unquote(parts.password) if parts.password else None)
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in cluster_nodes(url)],
        ssl=parts.scheme.startswith("rediss"),
        # Keep serving the slots that are up while a failed primary's replica takes over.
        require_full_coverage=False,
        **common,
    )


async def discovered(client: RedisClient) -> RedisClient:
    """The client, with a cluster's slot map freshly read: call it before every
    (re)subscribe.

    A cluster pub/sub connection goes to the node serving the channel's slot, and pub/sub
    traffic never sees a MOVED reply, so nothing else refreshes the map. After that node
    fails, resubscribing from a stale map would dial the dead node forever; reading the map
    again reaches the promoted replica once the cluster has failed over.
    """
    if isinstance(client, RedisCluster):
        await client.initialize()
        await client.nodes_manager.initialize()
    return client
