"""Fencing tokens that are never issued twice (lease_acquire.lua), on a real Redis.

A token is the server clock in µs at its grant, and a grant is refused while the clock
is not past the stored token. A loss of the last writes is simulated by copying a
symbol's lease and token keys (DUMP) and restoring the older copy after more grants:
what a restart from an AOF missing its last second, or a failover to a replica that had
not received the last grants, leaves behind. The real crashes and failovers are in
tests/chaos (test_aof_crashes.py, test_cluster_failover.py).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import redis
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.publisher.core import write_args, write_keys
from shared import keys
from shared.lease import LeaseClient
from shared.scripts import Scripts, script_source
from tests.support.polling import apoll

SYM = "BTCUSDT"
TTL_MS = 60_000

#: The grant before clock-based tokens (INCR), to show the simulated loss really bites.
INCR_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, tonumber(redis.call('GET', KEYS[2]) or '0')}
end
if holder then
  return {0, tonumber(redis.call('GET', KEYS[2]) or '0')}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {1, redis.call('INCR', KEYS[2])}
"""

Snapshot = dict[str, tuple[bytes | None, int]]


async def snapshot(r: aioredis.Redis, symbol: str = SYM) -> Snapshot:
    """A copy of the symbol's lease and token keys (value and remaining TTL)."""
    out: Snapshot = {}
    for key in (keys.lease(symbol), keys.token(symbol)):
        out[key] = (await r.dump(key), await r.pttl(key))
    return out


async def restore(r: aioredis.Redis, snap: Snapshot) -> None:
    """Put the copy back: every write since it was taken is lost."""
    for key, (blob, pttl) in snap.items():
        await r.delete(key)
        if blob is not None:
            await r.restore(key, max(pttl, 0), blob, replace=True)


async def server_us(r: aioredis.Redis) -> int:
    sec, usec = await r.time()
    return int(sec) * 1_000_000 + int(usec)


async def grant_to(scripts: Scripts, node: str, symbol: str = SYM) -> int:
    """A fresh grant for ``node`` (the previous holder's lease is dropped first)."""
    lease = await LeaseClient(scripts, node, TTL_MS, 100).acquire(symbol)
    assert lease is not None, f"{node} got no lease"
    return lease.token


async def hand_over(r: aioredis.Redis, scripts: Scripts, node: str) -> int:
    await r.delete(keys.lease(SYM))  # the holder's lease expired
    return await grant_to(scripts, node)


async def publish(scripts: Scripts, token: int, node: str, event_ms: int) -> int:
    reply = await scripts(
        "fenced_publish",
        keys=write_keys(SYM),
        args=write_args(token, event_ms, node, "{}", int(time.time() * 1000), 1000),
    )
    return int(reply[0])


async def test_grants_strictly_increase_and_carry_the_server_clock(aredis: aioredis.Redis) -> None:
    scripts = Scripts(aredis)
    tokens: list[int] = []
    for i in range(60):
        before = await server_us(aredis)
        token = await hand_over(aredis, scripts, f"calc-{i % 3}")
        after = await server_us(aredis)
        assert before <= token <= after  # the server clock in µs at the grant
        assert await aredis.get(keys.token(SYM)) == str(token).encode()  # exact, no exponent
        tokens.append(token)
    assert tokens == sorted(set(tokens))  # strictly increasing
    assert all(t < 2**53 for t in tokens)  # exact in Lua numbers, JSON and float64


async def test_no_token_is_granted_again_after_the_store_loses_its_last_grants(
    aredis: aioredis.Redis,
) -> None:
    scripts = Scripts(aredis)
    granted = [await hand_over(aredis, scripts, "calc-a")]
    for _round in range(5):
        copy = await snapshot(aredis)  # what survives the crash
        granted += [await hand_over(aredis, scripts, n) for n in ("calc-b", "calc-c")]  # lost
        await restore(aredis, copy)
        assert int(await aredis.get(keys.token(SYM))) < granted[-1]  # really rolled back
        again = await hand_over(aredis, scripts, "calc-d")
        assert again not in granted
        assert again > max(granted)  # larger than every earlier grant, lost or not
        granted.append(again)

    # The same loss with the INCR grant hands a lost token out again, to another node.
    await aredis.delete(keys.lease(SYM), keys.token(SYM))
    first = await aredis.eval(INCR_ACQUIRE, 2, keys.lease(SYM), keys.token(SYM), "calc-a", TTL_MS)
    copy = await snapshot(aredis)
    await aredis.delete(keys.lease(SYM))
    lost = await aredis.eval(INCR_ACQUIRE, 2, keys.lease(SYM), keys.token(SYM), "calc-b", TTL_MS)
    await restore(aredis, copy)
    await aredis.delete(keys.lease(SYM))
    repeat = await aredis.eval(INCR_ACQUIRE, 2, keys.lease(SYM), keys.token(SYM), "calc-c", TTL_MS)
    assert first[1] + 1 == lost[1] == repeat[1]


async def test_holder_of_a_lost_grant_is_fenced_and_acquires_a_fresh_token(
    aredis: aioredis.Redis,
) -> None:
    scripts = Scripts(aredis)
    a = LeaseClient(scripts, "calc-a", TTL_MS, 100)
    b = LeaseClient(scripts, "calc-b", TTL_MS, 100)
    first = await a.acquire(SYM)
    assert first is not None
    assert await publish(scripts, first.token, "calc-a", 1_000) == 1
    copy = await snapshot(aredis)  # lease calc-a, token first.token
    # After the copy: calc-a's lease lapses, calc-b holds it for a while, then calc-a
    # again, with a new token; the crash loses all of it.
    await aredis.delete(keys.lease(SYM))
    lost_b = await b.acquire(SYM)
    assert lost_b is not None
    await aredis.delete(keys.lease(SYM))
    lost_a = await a.acquire(SYM)
    assert lost_a is not None
    assert await publish(scripts, lost_a.token, "calc-a", 2_000) == 1
    await restore(aredis, copy)

    # The restored lease names calc-a, but not with the token calc-a holds now: its
    # renewal fails, its writes and calc-b's are refused as stale...
    assert await aredis.get(keys.lease(SYM)) == b"calc-a"
    assert not await a.renew(lost_a)
    assert not await b.renew(lost_b)
    assert await publish(scripts, lost_a.token, "calc-a", 3_000) == 0
    assert await publish(scripts, lost_b.token, "calc-b", 3_000) == 0
    # ... and it acquires again: a fresh token, larger than every lost one.
    fresh = await a.acquire(SYM)
    assert fresh is not None
    assert fresh.token > max(first.token, lost_b.token, lost_a.token)
    assert await a.renew(fresh)
    assert await publish(scripts, fresh.token, "calc-a", 3_000) == 1

    # The coordinator's campaign (no fresh-grant flag) extends its own live lease and
    # keeps its epoch; a second leader is refused.
    ok, epoch = await scripts(
        "lease_acquire", keys=[keys.COORDINATOR_LEADER, keys.COORDINATOR_EPOCH], args=["c1", 5000]
    )
    again = await scripts(
        "lease_acquire", keys=[keys.COORDINATOR_LEADER, keys.COORDINATOR_EPOCH], args=["c1", 5000]
    )
    other = await scripts(
        "lease_acquire", keys=[keys.COORDINATOR_LEADER, keys.COORDINATOR_EPOCH], args=["c2", 5000]
    )
    assert ok == 1 and again == [1, epoch] and other == [0, epoch]


async def test_a_clock_behind_the_stored_token_refuses_grants_until_it_passes(
    aredis: aioredis.Redis,
) -> None:
    """The server clock reads earlier than the stored token (it stepped back, or the
    token came from a server whose clock ran ahead): no grant until the clock passes
    it, so a grant can never land on a token issued before."""
    scripts = Scripts(aredis)
    ahead = await server_us(aredis) + 400_000  # the clock is 0.4 s behind this token
    await aredis.set(keys.token(SYM), ahead)
    client = LeaseClient(scripts, "calc-a", TTL_MS, 100)
    assert await client.acquire(SYM) is None
    assert await aredis.get(keys.lease(SYM)) is None  # nothing granted, nothing held
    started = time.monotonic()
    lease = await apoll(lambda: client.acquire(SYM), 5.0, "a grant once the clock passed")
    waited = time.monotonic() - started
    assert lease.token > ahead
    assert waited > 0.2  # refused while behind (0.4 s minus the time to get here)
    assert await server_us(aredis) > ahead


# --- property: any interleaving of grants, copies and restores ----------------------


class SyncGrants:
    """lease_acquire.lua on a sync client (hypothesis drives it example by example)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.acquire = client.register_script(script_source("lease_acquire"))

    def grant(self, node: str) -> int:
        self.client.delete(keys.lease(SYM))
        ok, token = self.acquire(keys=[keys.lease(SYM), keys.token(SYM)], args=[node, TTL_MS, 1])
        assert ok == 1
        return int(token)

    def copy(self) -> bytes | None:
        blob: bytes | None = self.client.dump(keys.token(SYM))
        return blob

    def restore(self, blob: bytes | None) -> None:
        self.client.delete(keys.token(SYM))
        if blob is not None:
            self.client.restore(keys.token(SYM), 0, blob)


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("grant"), st.sampled_from(["calc-a", "calc-b", "calc-c"])),
        st.tuples(st.just("copy"), st.just("")),
        st.tuples(st.just("restore"), st.integers(min_value=0, max_value=5)),
    ),
    min_size=1,
    max_size=30,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS)
def test_property_grants_never_repeat_whatever_is_lost(redis_url: str, ops: list[Any]) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        client.delete(keys.lease(SYM), keys.token(SYM))
        g = SyncGrants(client)
        granted: list[int] = []
        copies: list[bytes | None] = []
        for op, arg in ops:
            if op == "grant":
                token = g.grant(arg)
                assert not granted or token > max(granted), (token, granted)
                granted.append(token)
            elif op == "copy":
                copies.append(g.copy())
            elif copies:  # restore one of the older copies: later grants are lost
                g.restore(copies[arg % len(copies)])
    finally:
        client.close()


def test_tokens_fit_lua_json_and_float64_until_2255() -> None:
    # The µs clock stays below 2**53 (every integer below it is exact in a double)
    # until 2255; a token survives JSON and a float64 metric unchanged.
    assert time.gmtime(2**53 // 1_000_000).tm_year == 2255
    token = int(time.time() * 1_000_000)
    assert json.loads(json.dumps({"writerToken": token}))["writerToken"] == token
    assert int(float(token)) == token


async def test_concurrent_acquires_grant_one_token(aredis: aioredis.Redis) -> None:
    """Many nodes racing for a free lease: one wins, the others see its token."""
    scripts = Scripts(aredis)
    clients = [LeaseClient(scripts, f"calc-{i}", TTL_MS, 100) for i in range(8)]
    results = await asyncio.gather(*(c.acquire(SYM) for c in clients))
    won = [r for r in results if r is not None]
    assert len(won) == 1
    assert int(await aredis.get(keys.token(SYM))) == won[0].token
