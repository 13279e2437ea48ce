"""Fault injection on a running fleet of real processes (bundled data, replay speed 1).

One fleet for the module (two coordinators, two or three calc workers); every test
starts from and leaves it settled: each symbol has exactly one owner, the assignment and
the lease holder agree, every worker's own view of its leases matches Redis, and fresh
reports from the owner with the current token are being accepted. After each fault the
safety checks of ``chaos_kit`` run over the whole history so far (audit order, token
timeline from keyspace notifications, late candidates refused as stale).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest

from context8.fleet import Fleet, FleetConfig
from shared import keys
from tests.chaos.chaos_kit import (
    CHAOS_ENV,
    SUMMARY,
    SYMBOLS,
    FleetView,
    TokenTimeline,
    metric,
    read_audit,
    record,
    server_ms,
    wait_for,
    winning_node_id,
)
from tests.chaos.tcp_proxy import TcpProxy

pytestmark = pytest.mark.timeout(120)

SYMBOL = "BTCUSDT"


class Chaos:
    def __init__(self, view: FleetView, timeline: TokenTimeline, proxy: TcpProxy) -> None:
        self.view = view
        self.timeline = timeline
        self.proxy = proxy

    def safety(self, scenario: str) -> dict[str, int]:
        stats = self.view.check_safety(self.timeline)
        print(f"{scenario}: safety ok {stats}")
        return stats


@pytest.fixture(scope="module")
def chaos() -> Iterator[Chaos]:
    fleet = Fleet(FleetConfig(calc_workers=2, speed="1", extra_env=CHAOS_ENV))
    fleet.start()
    proxy: TcpProxy | None = None
    timeline: TokenTimeline | None = None
    try:
        fleet.start_service("coordinator", instance="coordinator-2")
        view = FleetView(fleet)
        timeline = TokenTimeline(fleet.redis.url, SYMBOLS).start()
        proxy = TcpProxy("127.0.0.1", fleet.redis.port).start()
        view.wait_settled(timeout=90)
        yield Chaos(view, timeline, proxy)
        stats = view.check_safety(timeline)
        SUMMARY.append(
            f"fleet faults: {view.fault_cycles} fault cycles, {stats['accepted']} writes accepted "
            f"({stats['timeline_checked']} checked against the token timeline), stale writes "
            f"accepted: 0, late candidates {stats['late_candidates']}, publisher stale_token "
            f"rejections {stats['stale_rejected']}"
        )
    finally:
        if timeline is not None:
            timeline.stop()
        if proxy is not None:
            proxy.close()
        fleet.stop(timeout=8)
        fleet.cleanup()


def _owner_of(view: FleetView, symbol: str = SYMBOL) -> tuple[str, list[str]]:
    owner = view.assignment()[symbol]
    return owner, view.owned_by(owner)


def test_kill9_owner_symbols_move_after_lease_expiry(chaos: Chaos) -> None:
    v = chaos.view
    v.wait_settled()
    victim, symbols = _owner_of(v)
    svc = v.calc_by_node(victim)
    t0 = v.kill(svc, signal.SIGKILL)
    assert svc.wait(5) == -signal.SIGKILL
    found = v.wait_failover("kill -9 owner", victim, symbols, t0)
    record(v, "calc kill -9", found)
    v.fault_cycles += 1
    v.start_worker()
    v.wait_settled()
    chaos.safety("kill -9")


def test_sigterm_owner_releases_and_leaves_at_once(chaos: Chaos) -> None:
    v = chaos.view
    v.wait_settled()
    victim, symbols = _owner_of(v)
    tokens = {s: v.token(s) for s in symbols}
    svc = v.calc_by_node(victim)
    t0 = v.kill(svc, signal.SIGTERM)
    assert svc.wait(10) == 0, svc.log_tail()
    # Checked right at its exit, long before its leases could have expired: it left the
    # membership and released its leases itself (no TTL wait for its successor).
    assert victim not in v.members()
    for s in symbols:
        assert v.lease_holder(s) != victim, f"{s}: lease still held by the stopped worker"
    found = v.wait_failover("SIGTERM owner", victim, symbols, t0)
    for s, fo in found.items():
        # A fresh grant: the successor writes with a newer token than the leaver's.
        newer = [a for a in read_audit(v.client, s, f"{t0}-0") if a.node == fo.new]
        assert newer and newer[0].token > tokens[s]
    record(v, "calc SIGTERM", found)
    v.fault_cycles += 1
    v.start_worker()
    v.wait_settled()
    chaos.safety("SIGTERM")


def test_sigstop_past_lease_ttl_then_sigcont(chaos: Chaos) -> None:
    v = chaos.view
    v.wait_settled()
    victim, symbols = _owner_of(v)
    tokens = {s: v.token(s) for s in symbols}
    svc = v.calc_by_node(victim)
    t0 = server_ms(v.client)
    svc.signal(signal.SIGSTOP)
    try:
        # Paused until another node's write was accepted: by then its lease expired on
        # the server and the successor holds a newer token.
        found = v.wait_failover("SIGSTOP owner", victim, symbols, t0)
        for s in symbols:
            assert v.token(s) > tokens[s]
            assert v.lease_holder(s) != victim
    finally:
        t_cont = server_ms(v.client)
        svc.signal(signal.SIGCONT)
    v.wait_settled()
    assert svc.running(), svc.log_tail()
    # Whatever it sent after waking with its old token was refused; it wrote nothing
    # with that token after the resume.
    for s in symbols:
        late = [a for a in read_audit(v.client, s, f"{t_cont}-0") if a.token == tokens[s]]
        assert not late, f"{s}: write with the paused worker's old token accepted: {late}"
    stale_sent = [
        c for c in v.candidates_since(t_cont) if c[2] == victim and c[1] == tokens.get(c[0])
    ]
    record(
        v,
        "calc SIGSTOP past TTL",
        found,
        note=f"{len(stale_sent)} candidates with the old token sent after SIGCONT",
    )
    v.fault_cycles += 1
    chaos.safety("SIGSTOP/SIGCONT")


def _start_proxied_owner(chaos: Chaos) -> tuple[str, object]:
    """A worker that reaches Redis through the proxy and wins SYMBOL by HRW."""
    v = chaos.view
    live = [v.node_id(s) for s in v.calcs()]
    node = winning_node_id("calc-px", SYMBOL, live, v.used_ids)
    svc = v.start_worker(node, {"C8_REDIS_URL": chaos.proxy.url})
    wait_for(lambda: v.lease_holder(SYMBOL) == node, 30, f"{node} to take {SYMBOL}")
    v.wait_settled()
    return node, svc


def test_partition_delays_a_write_past_the_lease_and_it_is_refused(chaos: Chaos) -> None:
    """One-way partition from the moment the owner sends a candidate: that write reaches
    Redis only after the lease expired and a successor wrote with a newer token."""
    v = chaos.view
    proxy = chaos.proxy
    v.wait_settled()
    node, _svc = _start_proxied_owner(chaos)
    symbols = v.owned_by(node)
    tokens = {s: v.token(s) for s in symbols}
    pub_port = v.fleet.service("publisher").metrics_port
    stale_before = metric(pub_port, "context8_publisher_rejected_total", reason="stale_token")
    proxy.arm_hold_up(b":candidates")  # the first XADD to any candidate stream
    try:
        wait_for(proxy.triggered.is_set, 10, "the owner to send a candidate")
        t0 = server_ms(v.client)
        found = v.wait_failover("partition (hold, late delivery)", node, symbols, t0)
    finally:
        t_heal = server_ms(v.client)
        proxy.heal()

    # The held candidates arrive now, carrying the old token.
    def late_arrived() -> list[tuple[str, int, str]]:
        return [c for c in v.candidates_since(t_heal) if c[2] == node and c[1] == tokens.get(c[0])]

    wait_for(late_arrived, 10, "the held candidates to reach Redis")
    late = late_arrived()
    wait_for(
        lambda: (
            metric(pub_port, "context8_publisher_rejected_total", reason="stale_token")
            >= stale_before + len(late)
        ),
        15,
        f"the publisher to refuse {len(late)} late candidates as stale_token",
    )
    for s in symbols:
        after = [a for a in read_audit(v.client, s, f"{t_heal}-0") if a.token == tokens[s]]
        assert not after, f"{s}: a late write with the old token was accepted: {after}"
    record(v, "partition, write delayed", found, note=f"{len(late)} late candidates refused")
    v.fault_cycles += 1
    v.wait_settled()
    chaos.safety("partition hold")


def test_partition_drop_then_heal(chaos: Chaos) -> None:
    """Connections reset and refused: the owner stops emitting, its symbols move, and
    after the heal it reconnects, rejoins and (as the HRW winner) takes its symbol back."""
    v = chaos.view
    proxy = chaos.proxy
    v.wait_settled()
    node = next((n for n in (v.node_id(s) for s in v.calcs()) if n.startswith("calc-px")), None)
    if node is None or v.assignment()[SYMBOL] != node:
        node, _ = _start_proxied_owner(chaos)
    symbols = v.owned_by(node)
    t0 = server_ms(v.client)
    proxy.cut("drop")
    try:
        found = v.wait_failover("partition (drop)", node, symbols, t0)
        assert node not in v.members()
    finally:
        t_heal = server_ms(v.client)
        proxy.heal()
    wait_for(lambda: v.lease_holder(SYMBOL) == node, 30, f"{node} to win {SYMBOL} back")
    back = v.wait_failover("partition healed", None, [SYMBOL], t_heal)
    v.wait_settled()
    record(
        v,
        "partition, connections dropped",
        found,
        note=f"back on {node} {back[SYMBOL].ms} ms after heal",
    )
    v.fault_cycles += 1
    chaos.safety("partition drop")


def test_leading_coordinator_killed_standby_takes_over(chaos: Chaos) -> None:
    v = chaos.view
    v.wait_settled()

    def leader() -> str | None:
        raw = v.client.get(keys.COORDINATOR_LEADER)
        return raw.decode() if raw else None

    wait_for(leader, 10, "a coordinator leader")
    old_leader = leader()
    epoch = int(v.client.get(keys.COORDINATOR_EPOCH) or 0)
    svc = next(c for c in v.coordinators() if v.node_id(c) == old_leader)
    t0 = v.kill(svc, signal.SIGKILL)
    wait_for(lambda: leader() not in (None, old_leader), 15, "the standby to lead")
    takeover = server_ms(v.client) - t0
    assert int(v.client.get(keys.COORDINATOR_EPOCH) or 0) > epoch
    # The new leader does its job: a worker crash is repaired under it.
    victim, symbols = _owner_of(v)
    t1 = v.kill(v.calc_by_node(victim), signal.SIGKILL)
    found = v.wait_failover("kill -9 owner under the new leader", victim, symbols, t1)
    record(v, "coordinator leader kill -9", found, note=f"new leader after ~{takeover} ms")
    v.fault_cycles += 2
    v.fleet.start_service("coordinator", instance=f"coordinator-{len(v.fleet.services)}")
    v.start_worker()
    v.wait_settled()
    chaos.safety("leader kill")


def test_paused_coordinator_leader_is_deposed(chaos: Chaos) -> None:
    """SIGSTOP the leader past its lease: the standby leads with a newer epoch and handles
    a worker crash; the resumed old leader must step down, not write an assignment."""
    v = chaos.view
    v.wait_settled()

    def leader() -> str | None:
        raw = v.client.get(keys.COORDINATOR_LEADER)
        return raw.decode() if raw else None

    wait_for(leader, 10, "a coordinator leader")
    old_leader = leader()
    epoch = int(v.client.get(keys.COORDINATOR_EPOCH) or 0)
    svc = next(c for c in v.coordinators() if v.node_id(c) == old_leader)
    svc.signal(signal.SIGSTOP)
    try:
        wait_for(lambda: leader() not in (None, old_leader), 15, "the standby to lead")
        new_leader = leader()
        victim, symbols = _owner_of(v)
        t1 = v.kill(v.calc_by_node(victim), signal.SIGKILL)
        found = v.wait_failover("kill -9 owner, old leader paused", victim, symbols, t1)
        version = int(v.client.get(keys.ASSIGNMENT_VERSION) or 0)
        assignment = v.assignment()
    finally:
        svc.signal(signal.SIGCONT)
    # The resumed leader campaigns, finds the lease taken and stands by: the leader and
    # the assignment it did not write stay as they were.
    wait_for(
        lambda: metric(svc.metrics_port, "context8_coordinator_is_leader") == 0,
        10,
        "the resumed coordinator to step down",
    )
    assert int(v.client.get(keys.COORDINATOR_EPOCH) or 0) > epoch
    assert leader() == new_leader
    v.start_worker()
    v.wait_settled()
    assert leader() == new_leader
    assert svc.running(), svc.log_tail()
    # Any assignment change after the resume was written by the new leader's epoch.
    assert int(v.client.get(keys.ASSIGNMENT_VERSION) or 0) >= version
    assert set(assignment) == set(SYMBOLS)
    record(v, "coordinator leader SIGSTOP", found, note=f"{old_leader} deposed by {new_leader}")
    v.fault_cycles += 2
    chaos.safety("leader pause")


def test_worker_flapping_ten_times(chaos: Chaos) -> None:
    """A worker that wins SYMBOL by HRW is started, takes it, and is killed, 10 times;
    kill -9 and SIGTERM alternate. Each incarnation gets a fresh node id, as a restarted
    process does by default."""
    v = chaos.view
    v.wait_settled()
    started = time.monotonic()
    times: dict[str, list[int]] = {"kill -9": [], "SIGTERM": []}
    for i in range(10):
        live = [v.node_id(s) for s in v.calcs()]
        node = winning_node_id("flap", SYMBOL, live, v.used_ids)
        svc = v.start_worker(node)
        t_start = server_ms(v.client)
        wait_for(
            lambda n=node, t=t_start: any(  # type: ignore[misc]
                a.node == n for a in read_audit(v.client, SYMBOL, f"{t}-0")
            ),
            20,
            f"{node} to write {SYMBOL}",
        )
        symbols = v.owned_by(node)
        sig, name = (signal.SIGKILL, "kill -9") if i % 2 == 0 else (signal.SIGTERM, "SIGTERM")
        t0 = v.kill(svc, sig)
        assert svc.wait(10) == (0 if sig == signal.SIGTERM else -sig), svc.log_tail()
        found = v.wait_failover(f"flap {i} {name}", node, symbols, t0)
        times[name] += [f.ms for f in found.values()]
        v.fault_cycles += 1
    elapsed = time.monotonic() - started
    v.wait_settled()
    line = (
        f"flapping: 10 kill/restart cycles in {elapsed:.1f} s; failover ms "
        f"kill -9 {times['kill -9']}, SIGTERM {times['SIGTERM']}"
    )
    SUMMARY.append(line)
    print(line)
    chaos.safety("flapping")
