"""Primary failovers on a real Redis Cluster: grants lost with the old primary never repeat.

A 3-primary/3-replica cluster on loopback (node timeout 1 s, replicas promoted however
stale). Four simulated writer nodes, each with its own cluster client, compete for three
symbols' leases (one symbol per shard) with the project's scripts (shared/lease.py's
LeaseClient, fenced_publish.lua): each holds a lease for a random 0.1-0.4 s, publishes
with its token every 20 ms meanwhile, then lets go, so grants happen several times a
second.

Five times, the primary of one symbol's slot is killed (-9) and its replica promoted.
Replication is asynchronous, so the last grants may never reach the replica; to make sure
they do not, the replica is held back (CLIENT PAUSE) for a moment before the kill, while
the primary goes on granting and accepting writes: exactly what a lagging replica loses.
Then a fresh replica is added for the new primary.

Checked from the writers' own records (what each node was told): no token granted twice,
grants strictly increase per symbol, no write accepted after a newer grant had been
handed out (lost ones included), no write with a lost token accepted after the failover,
writes resume after the promotion; and in what the cluster kept, the audit streams are in
order.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.publisher.core import write_args, write_keys
from shared import keys
from shared.lease import LeaseClient
from shared.scripts import Scripts
from tests.chaos.chaos_kit import SUMMARY, Accepted, audit_violations
from tests.support.polling import apoll
from tests.support.redis_cluster import LocalCluster

pytestmark = pytest.mark.timeout(180)

FAILOVERS = 5
WRITERS = 4
TTL_MS = 900
MARGIN_MS = 250
#: How long the replica is held back before its primary is killed (ms).
REPLICA_PAUSE_MS = 1500
CANDIDATE_SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "BNBUSDT", "DOGEUSDT", "ADAUSDT")


@dataclass(frozen=True)
class Grant:
    symbol: str
    token: int
    node: str
    #: time.monotonic() when the node received it.
    at: float


@dataclass(frozen=True)
class Write:
    """An accepted fenced write, as the writer saw it."""

    symbol: str
    token: int
    node: str
    event_ms: int
    sent: float
    done: float


@dataclass
class Record:
    grants: list[Grant] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)
    rejected: int = 0
    errors: int = 0
    events: dict[str, Iterator[int]] = field(default_factory=dict)

    def next_event_ms(self, symbol: str) -> int:
        return next(self.events.setdefault(symbol, itertools.count(1_000)))


def cluster_client(cluster: LocalCluster) -> RedisCluster:
    """A client like the services' (shared/redis_client.py): short timeouts, few retries."""
    return RedisCluster(
        startup_nodes=[ClusterNode("127.0.0.1", p) for p in cluster.primary_ports()],
        socket_timeout=0.5,
        socket_connect_timeout=0.3,
        retry=Retry(ExponentialBackoff(cap=0.25, base=0.02), 2),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        require_full_coverage=False,
    )


class Writer:
    """One simulated writer node: a lease client and fenced writes for some symbols."""

    def __init__(self, name: str, client: RedisCluster, record: Record) -> None:
        self.name = name
        self.client = client
        self.scripts = Scripts(client)
        self.leases = LeaseClient(self.scripts, name, TTL_MS, MARGIN_MS)
        self.record = record

    async def publish(self, symbol: str, token: int) -> None:
        event_ms = self.record.next_event_ms(symbol)
        sent = time.monotonic()
        reply = await self.scripts(
            "fenced_publish",
            keys=write_keys(symbol),
            args=write_args(token, event_ms, self.name, "{}", int(time.time() * 1000), 1_000_000),
        )
        if reply[0] == 1:
            self.record.writes.append(
                Write(symbol, token, self.name, event_ms, sent, time.monotonic())
            )
        else:
            self.record.rejected += 1

    async def run(self, symbol: str, stop: asyncio.Event) -> None:
        rng = random.Random(f"{self.name}/{symbol}")
        while not stop.is_set():
            try:
                lease = await self.leases.acquire(symbol)
            except RedisError:
                self.record.errors += 1
                await asyncio.sleep(0.05)
                continue
            if lease is None:
                await asyncio.sleep(rng.uniform(0.02, 0.06))
                continue
            self.record.grants.append(Grant(symbol, lease.token, self.name, time.monotonic()))
            hold_until = time.monotonic() + rng.uniform(0.1, 0.4)
            renew_at = time.monotonic() + TTL_MS / 3000
            while not stop.is_set() and lease.is_valid() and time.monotonic() < hold_until:
                try:
                    if time.monotonic() >= renew_at:
                        if not await self.leases.renew(lease):
                            break
                        renew_at = time.monotonic() + TTL_MS / 3000
                    if lease.is_valid():
                        await self.publish(symbol, lease.token)
                except RedisError:
                    self.record.errors += 1
                await asyncio.sleep(0.02)
            if lease.is_valid():
                try:
                    await self.leases.release(lease)
                except RedisError:
                    self.record.errors += 1
            await asyncio.sleep(rng.uniform(0.02, 0.08))


# --- the checks (pure) -----------------------------------------------------------------


def grant_problems(grants: list[Grant]) -> list[str]:
    """Per symbol, in the order the nodes received them: every grant is new and larger."""
    bad: list[str] = []
    best: dict[str, Grant] = {}
    for g in grants:
        prev = best.get(g.symbol)
        if prev is not None and g.token <= prev.token:
            bad.append(f"{g.symbol}: {g.node} got {g.token} after {prev.node} got {prev.token}")
        if prev is None or g.token > prev.token:
            best[g.symbol] = g
    return bad


def stale_writes(grants: list[Grant], writes: list[Write]) -> list[str]:
    """Accepted writes sent after a newer token had been handed out (lost ones too)."""
    bad: list[str] = []
    by_symbol: dict[str, list[Grant]] = {}
    for g in grants:
        by_symbol.setdefault(g.symbol, []).append(g)
    for w in writes:
        newer = [g for g in by_symbol.get(w.symbol, []) if g.at < w.sent and g.token > w.token]
        if newer:
            bad.append(
                f"{w.symbol}: write by {w.node} with {w.token} accepted although {newer[0].node} "
                f"had received {newer[0].token}"
            )
    return bad


@dataclass
class Failover:
    symbol: str
    killed_at: float
    #: when the killed primary's process had exited: writes sent before it may still
    #: land on it (and die with it), so lateness is judged from here.
    dead_at: float
    promotion_s: float
    #: kill -> the first accepted write with a token granted after the kill (s).
    resume_s: float
    lost: list[int]


def _entry_id(raw: bytes) -> tuple[int, int]:
    ms, seq = raw.split(b"-")
    return int(ms), int(seq)


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    running = LocalCluster(masters=3, replicas=1, node_timeout_ms=1000).start()
    try:
        yield running
    finally:
        running.stop()


def one_symbol_per_shard(cluster: LocalCluster) -> list[str]:
    chosen: dict[int, str] = {}
    for s in CANDIDATE_SYMBOLS:
        chosen.setdefault(cluster.primary_of(keys.token(s)), s)
    assert len(chosen) == 3, chosen
    return list(chosen.values())


def replica_token(cluster: LocalCluster, port: int, key: str) -> int:
    """The token a replica holds (blocks while it is paused)."""
    client = cluster.client(port)
    try:
        client.execute_command("READONLY")
        return int(client.get(key) or 0)
    finally:
        client.close()


async def test_primary_failovers_never_repeat_a_token(cluster: LocalCluster) -> None:
    symbols = one_symbol_per_shard(cluster)
    record = Record()
    clients = [cluster_client(cluster) for _ in range(WRITERS)]
    writers = [Writer(f"node-{i}", c, record) for i, c in enumerate(clients)]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(w.run(s, stop)) for w in writers for s in symbols]
    failovers: list[Failover] = []
    started = time.monotonic()
    try:

        def warmed_up() -> bool:
            return all(
                sum(1 for g in record.grants if g.symbol == s) >= 3
                and sum(1 for w in record.writes if w.symbol == s) >= 5
                for s in symbols
            )

        await apoll(warmed_up, 15, "grants and writes on every symbol")
        for k in range(FAILOVERS):
            symbol = symbols[k % len(symbols)]
            key = keys.token(symbol)
            primary = await asyncio.to_thread(cluster.primary_of, key)
            (replica,) = await asyncio.to_thread(cluster.replicas_of, primary)
            # Hold the replica back: what the primary grants from now on never reaches it.
            held = len(record.grants)
            paused = cluster.client(replica)
            await asyncio.to_thread(paused.execute_command, "CLIENT PAUSE", REPLICA_PAUSE_MS, "ALL")
            paused.close()

            def granted_while_held(sym: str = symbol, n: int = held) -> bool:
                fresh = [g for g in record.grants[n:] if g.symbol == sym]
                return any(w.token == fresh[0].token for w in record.writes) if fresh else False

            await apoll(granted_while_held, 1.0, "a grant and a write while the replica lags")
            killed_at = time.monotonic()
            await asyncio.to_thread(cluster.kill, primary)
            dead_at = time.monotonic()
            survived = await asyncio.to_thread(replica_token, cluster, replica, key)
            promotion = await asyncio.to_thread(cluster.wait_promoted, key, primary, killed_at)
            assert promotion.new == replica

            def resumed(sym: str = symbol, t0: float = killed_at) -> Write | None:
                fresh = {g.token for g in record.grants if g.symbol == sym and g.at > t0}
                return next((w for w in record.writes if w.token in fresh), None)

            first: Write = await apoll(resumed, 20, f"writes on {symbol} after the promotion")
            lost = [
                g.token
                for g in record.grants
                if g.symbol == symbol and g.at < killed_at and g.token > survived
            ]
            assert lost, f"failover {k}: no grant was lost (survived {survived})"
            failovers.append(
                Failover(
                    symbol,
                    killed_at,
                    dead_at,
                    promotion.seconds,
                    first.done - killed_at,
                    sorted(lost),
                )
            )
            await asyncio.to_thread(cluster.add_replica, promotion.new)
        # Some more churn on the promoted primaries before judging.
        n = len(record.grants)
        await apoll(lambda: len(record.grants) >= n + 3 * len(symbols), 10, "more grants")
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    elapsed = time.monotonic() - started

    assert not (bad := grant_problems(record.grants)), "\n".join(bad[:20])
    for s in symbols:
        tokens = [g.token for g in record.grants if g.symbol == s]
        assert len(tokens) == len(set(tokens)), f"{s}: a token was granted twice"
    assert not (stale := stale_writes(record.grants, record.writes)), "\n".join(stale[:20])
    for fo in failovers:
        late = [
            w
            for w in record.writes
            if w.symbol == fo.symbol and w.token in fo.lost and w.sent > fo.dead_at
        ]
        assert not late, f"{fo.symbol}: writes with lost tokens accepted after the failover"

    # What the cluster kept is in order; count the accepted writes the failovers lost.
    reader = clients[0]
    kept = 0
    for s in symbols:
        entries = await reader.xrange(keys.audit(s), "-", "+")
        audit = [
            Accepted(_entry_id(eid), int(f[b"token"]), f[b"node"].decode(), int(f[b"event_ms"]))
            for eid, f in entries
        ]
        assert not (bad := audit_violations(s, audit)), "\n".join(bad[:20])
        kept += len(audit)
    for c in clients:
        await c.aclose()

    lost_total = sum(len(f.lost) for f in failovers)
    promo = [f.promotion_s * 1000 for f in failovers]
    resume = [f.resume_s * 1000 for f in failovers]
    line = (
        f"cluster failovers: {len(failovers)} kill -9 of a primary in {elapsed:.1f} s; "
        f"{len(record.grants)} grants by {WRITERS} nodes, all distinct and growing; "
        f"{lost_total} grants lost with the old primaries, none granted again; "
        f"{len(record.writes)} writes accepted, 0 stale, {len(record.writes) - kept} lost "
        f"with the old primaries; promotion {min(promo):.0f}-{max(promo):.0f} ms "
        f"(median {statistics.median(promo):.0f}), writes resumed "
        f"{min(resume):.0f}-{max(resume):.0f} ms after the kill"
    )
    SUMMARY.append(line)
    print(line)
