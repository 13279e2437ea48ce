"""Least-privilege ACL users (shared/acl.py) on a real redis-server started with the
generated ACL file: each service's user can run what it needs (its scripts included),
and whatever lies outside its keys is refused with NOPERM. That each service *runs*
under its user is tests/e2e/test_fleet.py (the whole fleet, ACL LOG empty at the end).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError
from redis.retry import Retry

from context8.redis_server import ACL_FILE, RedisServer, write_acl
from services.publisher.core import write_args, write_keys
from shared import acl, keys
from shared.scripts import script_source

SYMBOL = "BTCUSDT"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, dict]]:
    data = tmp_path_factory.mktemp("acl-redis")
    passwords = {s: secrets.token_urlsafe(16) for s in acl.SERVICES}
    write_acl(data, passwords, secrets.token_urlsafe(16))
    srv = RedisServer(data_dir=data).start()
    yield srv, passwords
    srv.stop()


def _user(server: tuple[RedisServer, dict], service: str) -> redis.Redis:
    srv, passwords = server
    return redis.Redis(port=srv.port, username=service, password=passwords[service])


def _no_retry(**kwargs: Any) -> redis.Redis:
    """A client that fails at once (redis-py retries a refused login with back-off)."""
    return redis.Redis(retry=Retry(NoBackoff(), 0), **kwargs)


def _refused(call: Callable[[], Any]) -> str:
    """The NOPERM refusal of ``call`` (inside a script it comes back as a script error)."""
    with pytest.raises(ResponseError) as err:
        call()
    text = str(err.value)
    assert (
        isinstance(err.value, NoPermissionError)
        or "NOPERM" in text
        or "The user executing the script can't" in text
    ), text
    return str(err.value)


def _script(client: redis.Redis, name: str, keys_: list[str], args: list[Any]) -> Any:
    return client.register_script(script_source(name))(keys=keys_, args=args)


def _publish(client: redis.Redis, token: int) -> Any:
    """One real fenced_publish.lua call for SYMBOL with ``token``."""
    now = int(time.time() * 1000)
    return _script(
        client, "fenced_publish", write_keys(SYMBOL), write_args(token, now, "n1", "{}", now, 100)
    )


# --- the rules themselves ----------------------------------------------------------------


def test_every_pattern_matches_the_key_it_stands_for() -> None:
    for pattern, key in acl.PATTERN_EXAMPLES.items():
        assert fnmatchcase(key, pattern), (pattern, key)
    assert not fnmatchcase(keys.history_coarse(SYMBOL), acl.HIST)
    assert not fnmatchcase(keys.token(SYMBOL), acl.REPORT)


def test_acl_file_disables_default_and_holds_no_password_in_clear() -> None:
    text = acl.acl_file({"mcp": "s3cret-pw"}, "adm1n-pw")
    assert text.splitlines()[0].startswith("user default reset off ")
    assert "s3cret-pw" not in text and "adm1n-pw" not in text
    assert acl.password_hash("s3cret-pw") in text
    assert "user ingest" not in text  # only the users asked for


# --- on a real server ----------------------------------------------------------------------


def test_default_user_is_off_and_passwords_are_checked(server: tuple[RedisServer, dict]) -> None:
    srv, _ = server
    with pytest.raises(AuthenticationError):
        _no_retry(port=srv.port).ping()
    with pytest.raises(AuthenticationError):
        _no_retry(port=srv.port, username="mcp", password="wrong").ping()
    assert (srv.data_dir / ACL_FILE).stat().st_mode & 0o077 == 0


def test_ingest_appends_but_cannot_touch_reports_tokens_or_leases(
    server: tuple[RedisServer, dict],
) -> None:
    ingest = _user(server, "ingest")
    assert ingest.set(keys.feed_claim(SYMBOL), "ing-1", nx=True, px=5000)
    ingest.xadd(keys.stream(SYMBOL), {"k": "v"})
    ingest.set(keys.checkpoint(SYMBOL), "0-1")
    ingest.hset(keys.SYMBOLS, SYMBOL, "{}")
    assert ingest.xlen(keys.stream(SYMBOL)) >= 1
    _refused(lambda: ingest.hset(keys.report(SYMBOL), "json", "{}"))
    _refused(lambda: ingest.hget(keys.report(SYMBOL), "json"))
    _refused(lambda: ingest.set(keys.token(SYMBOL), 1))
    _refused(lambda: ingest.get(keys.token(SYMBOL)))
    _refused(lambda: ingest.set(keys.lease(SYMBOL), "x"))
    _refused(lambda: ingest.xadd(keys.candidates(0), {"k": "v"}))
    _refused(lambda: ingest.hset(keys.ASSIGNMENT, SYMBOL, "x"))
    _refused(lambda: _publish(ingest, 1))


def test_calc_leases_and_emits_but_cannot_write_reports(
    server: tuple[RedisServer, dict],
) -> None:
    calc = _user(server, "calc")
    ok, token = _script(
        calc, "lease_acquire", [keys.lease(SYMBOL), keys.token(SYMBOL)], ["calc-1", 5000, "1"]
    )
    assert ok == 1 and token > 0
    calc.xadd(keys.candidates(0), {"k": "v"})
    calc.hget(keys.report(SYMBOL), "event_ms")  # reading is fine
    calc.xrange(keys.stream(SYMBOL))
    _refused(lambda: calc.hset(keys.report(SYMBOL), "json", "{}"))
    _refused(lambda: calc.delete(keys.report(SYMBOL)))
    _refused(lambda: _publish(calc, token))  # only the publisher's script writes reports
    _refused(lambda: calc.xadd(keys.audit(SYMBOL), {"k": "v"}))
    _refused(lambda: calc.xadd(keys.stream(SYMBOL), {"k": "v"}))  # market data is ingest's
    _refused(lambda: calc.hset(keys.ASSIGNMENT, SYMBOL, "calc-1"))
    _refused(lambda: calc.set(keys.COORDINATOR_LEADER, "calc-1"))


def test_only_the_publishers_script_writes_reports(server: tuple[RedisServer, dict]) -> None:
    srv, _ = server
    admin = redis.Redis.from_url(srv.url)
    admin.set(keys.token(SYMBOL), 7)
    publisher = _user(server, "publisher")
    assert _publish(publisher, 7)[0] == 1
    assert admin.hget(keys.report(SYMBOL), "token") == b"7"
    # Tokens are read only for it, directly and from a script of its own.
    _refused(lambda: publisher.set(keys.token(SYMBOL), 8))
    rogue = "return redis.call('SET', KEYS[1], ARGV[1])"
    _refused(lambda: publisher.register_script(rogue)(keys=[keys.token(SYMBOL)], args=[8]))
    assert admin.get(keys.token(SYMBOL)) == b"7"
    _refused(lambda: publisher.set(keys.lease(SYMBOL), "x"))
    _refused(lambda: publisher.xadd(keys.stream(SYMBOL), {"k": "v"}))
    _refused(lambda: publisher.hset(keys.ASSIGNMENT, SYMBOL, "x"))
    admin.close()


def test_coordinator_assigns_but_cannot_write_reports_or_tokens(
    server: tuple[RedisServer, dict],
) -> None:
    coordinator = _user(server, "coordinator")
    ok, epoch = _script(
        coordinator,
        "lease_acquire",
        [keys.COORDINATOR_LEADER, keys.COORDINATOR_EPOCH],
        ["coord-1", 5000],
    )
    assert ok == 1
    ok, _ = _script(
        coordinator,
        "assignment_write",
        [keys.COORDINATOR_LEADER, keys.COORDINATOR_EPOCH, keys.ASSIGNMENT, keys.ASSIGNMENT_VERSION],
        ["coord-1", epoch, keys.ASSIGNMENT_CHANNEL, SYMBOL, "calc-1"],
    )
    assert ok == 1
    _refused(lambda: coordinator.hset(keys.report(SYMBOL), "json", "{}"))
    _refused(lambda: coordinator.set(keys.token(SYMBOL), 1))
    _refused(lambda: coordinator.get(keys.lease(SYMBOL)))
    _refused(lambda: coordinator.xadd(keys.stream(SYMBOL), {"k": "v"}))
    _refused(lambda: _publish(coordinator, 1))


def test_mcp_reads_reports_and_nothing_else(server: tuple[RedisServer, dict]) -> None:
    mcp = _user(server, "mcp")
    assert mcp.hmget(keys.report(SYMBOL), ["json", "updated_at"]) is not None
    assert mcp.hgetall(keys.SYMBOLS) is not None
    mcp.xrevrange(keys.history(SYMBOL), count=1)
    list(mcp.scan_iter(match="c8:report:*"))
    _refused(lambda: mcp.hset(keys.report(SYMBOL), "json", "{}"))
    _refused(lambda: mcp.delete(keys.report(SYMBOL)))
    _refused(lambda: mcp.get(keys.token(SYMBOL)))
    _refused(lambda: mcp.get(keys.lease(SYMBOL)))
    _refused(lambda: mcp.get(keys.feed_claim(SYMBOL)))
    _refused(lambda: mcp.xrange(keys.stream(SYMBOL)))
    _refused(lambda: mcp.hgetall(keys.ASSIGNMENT))
    _refused(lambda: mcp.execute_command("SPUBLISH", keys.report_updates(SYMBOL), "1"))
    _refused(lambda: _publish(mcp, 1))


@pytest.mark.parametrize("service", acl.SERVICES)
def test_no_service_may_administer_redis(server: tuple[RedisServer, dict], service: str) -> None:
    client = _user(server, service)
    _refused(lambda: client.flushall())
    _refused(lambda: client.config_set("appendonly", "no"))
    _refused(lambda: client.keys("*"))
    _refused(lambda: client.execute_command("ACL", "SETUSER", service, "+@all"))
    _refused(lambda: client.execute_command("SCRIPT", "FLUSH"))
    _refused(lambda: client.eval("return 1", 0))  # only the project's scripts, by sha


def test_a_server_restarted_on_its_dir_keeps_its_users_and_data(tmp_path: Path) -> None:
    # Scripts' effects go to the AOF as MULTI/EXEC, which Redis 7.0 replays under the
    # default user's rules: the default user is off, not stripped of its rights.
    passwords = {"calc": "pw-calc", "mcp": "pw-mcp"}
    write_acl(tmp_path, passwords, "pw-admin")
    srv = RedisServer(data_dir=tmp_path, appendonly=True).start()
    try:
        calc = redis.Redis(port=srv.port, username="calc", password="pw-calc")
        ok, token = _script(
            calc, "lease_acquire", [keys.lease(SYMBOL), keys.token(SYMBOL)], ["c1", 60_000, "1"]
        )
        assert ok == 1
        srv.kill()
        srv = RedisServer(port=srv.port, data_dir=tmp_path, appendonly=True).start()
        assert redis.Redis(port=srv.port, username="mcp", password="pw-mcp").ping()
        admin = redis.Redis.from_url(srv.url)
        assert admin.acl_whoami() == acl.ADMIN_USER
        assert admin.get(keys.token(SYMBOL)) == str(token).encode()
        with pytest.raises(AuthenticationError):
            _no_retry(port=srv.port).ping()
    finally:
        srv.stop(remove_dir=False)


def test_the_acl_table_in_the_docs_is_current() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "redis-acl.md").read_text()
    assert doc.endswith(acl.table()), "regenerate docs/redis-acl.md from shared.acl.table()"
    for service in acl.SERVICES:
        assert f"\n| {service} |" in doc
