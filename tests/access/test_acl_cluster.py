"""The ACL users on a Redis Cluster: ``ACL SETUSER`` on every node (ACLs are per node),
the default user off, and the services' clients (``make_redis`` with
``C8_REDIS_USERNAME``/``C8_REDIS_PASSWORD``) route, run their scripts and are refused
outside their keys on every primary."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import pytest
from pydantic import SecretStr
from redis.exceptions import NoPermissionError

from services.publisher.core import write_args, write_keys
from shared import acl, keys
from shared.redis_client import RedisClient, make_redis
from shared.scripts import Scripts
from shared.settings import ServiceSettings
from tests.support.redis_cluster import LocalCluster

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "BNBUSDT", "DOGEUSDT"]
PASSWORDS = {s: secrets.token_urlsafe(16) for s in acl.SERVICES}


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    running = LocalCluster(masters=3).start()
    try:
        for port in running.ports:
            node = running.client(port)
            for service, password in PASSWORDS.items():
                node.execute_command("ACL", "SETUSER", service, *acl.rules(service, password))
            node.execute_command("ACL", "SETUSER", "default", "off")
            node.close()
        yield running
    finally:
        running.stop()


def _client(cluster: LocalCluster, service: str) -> RedisClient:
    nodes = ",".join(f"127.0.0.1:{p}" for p in cluster.ports)
    settings = ServiceSettings(
        redis_url=f"redis+cluster://{nodes}",
        redis_username=service,
        redis_password=SecretStr(PASSWORDS[service]),
    )
    return make_redis(settings)


async def test_services_work_and_are_fenced_in_on_every_primary(cluster: LocalCluster) -> None:
    calc, publisher, mcp, ingest = (
        _client(cluster, s) for s in ("calc", "publisher", "mcp", "ingest")
    )
    try:
        for c in (calc, publisher, mcp, ingest):
            await c.initialize()  # type: ignore[union-attr]  # slot map, command table
        calc_scripts, publisher_scripts = Scripts(calc), Scripts(publisher)
        masters = {calc.get_node_from_key(keys.report(s)).name for s in SYMBOLS}  # type: ignore[union-attr]
        assert len(masters) >= 2  # the symbols span several primaries
        for s in SYMBOLS:
            ok, token = await calc_scripts(
                "lease_acquire", [keys.lease(s), keys.token(s)], ["calc-1", 5000, "1"]
            )
            assert ok == 1
            now = int(time.time() * 1000)
            status = await publisher_scripts(
                "fenced_publish", write_keys(s), write_args(token, now, "calc-1", "{}", now, 100)
            )
            assert status[0] == 1
            assert await mcp.hget(keys.report(s), "token") == str(token).encode()
            with pytest.raises(NoPermissionError):
                await ingest.hset(keys.report(s), "json", "{}")
            with pytest.raises(NoPermissionError):
                await calc.hset(keys.report(s), "json", "{}")
            with pytest.raises(NoPermissionError):
                await mcp.get(keys.token(s))
        found = {k async for k in mcp.scan_iter(match="c8:report:*")}
        assert found == {keys.report(s).encode() for s in SYMBOLS}
    finally:
        for c in (calc, publisher, mcp, ingest):
            await c.aclose()
