"""What the chaos tests share: a fleet view, the safety checks, failover measurement.

Safety is judged from what Redis recorded, never from what the services say:

* ``keys.audit(S)`` gets one entry per accepted report write (token, node, event time),
  its entry id stamped by the Redis server clock. Tokens must never decrease and event
  times must strictly increase.
* ``TokenTimeline`` (tests/support/token_monitor.py) follows Redis ``MONITOR``: every
  grant (the lease script's ``SET token:{S} <token>``) and every accepted write
  (fenced_publish's ``XADD audit:{S} ... token <t>``) with its arguments, in execution
  order. Grants must only grow (never repeat, across Redis restarts too), and every
  accepted write's token must equal the token stored at that moment: an independent
  proof that no write with a stale token was ever accepted, which does not trust
  fenced_publish.lua.
* A candidate on a candidate stream carrying token t that was appended after a write with
  a token > t had been accepted is *late*: the publisher must reject it as
  ``stale_token``, so its ``rejected_total{reason="stale_token"}`` counter is at least the
  number of late candidates.
"""

from __future__ import annotations

import bisect
import itertools
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis
from prometheus_client.parser import text_string_to_metric_families

from context8.fleet import DEMO_SYMBOLS, Fleet, ServiceProcess
from shared import keys
from shared.candidate import decode_candidate
from shared.errors import WireFormatError
from shared.hrw import DEFAULT_STICKY_BONUS, neg_log_u, weight
from tests.support.candidates import stream_of
from tests.support.polling import poll
from tests.support.token_monitor import TokenTimeline

SYMBOLS: tuple[str, ...] = DEMO_SYMBOLS

#: A sync redis-py client (bytes replies). Typed loosely: redis-py annotates replies as
#: unions of every RESP2/RESP3 shape, which these helpers know they never get.
Client = Any

#: Lines for the terminal summary (tests/chaos/conftest.py prints them after the run).
SUMMARY: list[str] = []

#: Shortened timings so a fault heals in about two seconds (every service reads these).
CHAOS_ENV: dict[str, str] = {
    "C8_CALC_LEASE_TTL_MS": "1500",
    "C8_CALC_LEASE_MARGIN_MS": "300",
    "C8_CALC_LEASE_RETRY_MS": "100",
    "C8_CALC_HEARTBEAT_MS": "200",
    "C8_CALC_HEARTBEAT_JITTER_MS": "50",
    "C8_CALC_ASSIGNMENT_POLL_MS": "1000",
    "C8_COORDINATOR_NODE_TTL_MS": "1000",
    "C8_COORDINATOR_TICK_MS": "100",
    "C8_COORDINATOR_LEADER_TTL_MS": "1000",
    "C8_COORDINATOR_LEADER_MARGIN_MS": "200",
    "C8_COORDINATOR_MIN_HOLD_MS": "500",
    # Keep every accepted write and every candidate, so the checks see the whole run.
    "C8_PUBLISHER_AUDIT_MAXLEN": "1000000",
    "C8_CALC_CANDIDATES_MAXLEN": "1000000",
}


wait_for = poll


def server_ms(client: Client) -> int:
    """Redis server time in ms: the clock stream entry ids are stamped with."""
    sec, usec = client.time()
    return int(sec) * 1000 + int(usec) // 1000


def id_ms(entry_id: bytes | str) -> int:
    raw = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(raw.split("-")[0])


def _id_key(entry_id: bytes | str) -> tuple[int, int]:
    raw = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, seq = raw.split("-")
    return int(ms), int(seq)


# --- metrics ----------------------------------------------------------------------------


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a service's /metrics, keyed by (name, labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
        text = resp.read().decode()
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def metric(port: int, name: str, **labels: str) -> float:
    return scrape(port).get((name, frozenset(labels.items())), 0.0)


def metric_sum(port: int, name: str) -> float:
    """Sum of a metric over all its label values."""
    return sum(v for (n, _labels), v in scrape(port).items() if n == name)


# --- the audit stream -------------------------------------------------------------------


@dataclass(frozen=True)
class Accepted:
    """One accepted report write, from ``keys.audit(symbol)``."""

    entry_id: tuple[int, int]
    token: int
    node: str
    event_ms: int

    @property
    def ms(self) -> int:
        return self.entry_id[0]


def read_audit(client: Client, symbol: str, after: str = "-") -> list[Accepted]:
    out: list[Accepted] = []
    lo = after
    while True:
        batch = client.xrange(keys.audit(symbol), min=lo, max="+", count=5000)
        for eid, f in batch:
            out.append(
                Accepted(_id_key(eid), int(f[b"token"]), f[b"node"].decode(), int(f[b"event_ms"]))
            )
        if len(batch) < 5000:
            return out
        lo = "(" + batch[-1][0].decode()


def audit_violations(symbol: str, entries: list[Accepted]) -> list[str]:
    """Tokens never decrease and event times strictly increase along the audit stream."""
    bad: list[str] = []
    for prev, cur in itertools.pairwise(entries):
        if cur.token < prev.token:
            bad.append(f"{symbol}: token went back {prev.token} -> {cur.token} at {cur.entry_id}")
        if cur.event_ms <= prev.event_ms:
            bad.append(
                f"{symbol}: event time not increasing {prev.event_ms} -> {cur.event_ms} "
                f"at {cur.entry_id}"
            )
    return bad


@dataclass(frozen=True)
class Late:
    """A candidate appended after a write with a newer token had been accepted."""

    symbol: str
    entry_id: tuple[int, int]
    token: int
    node: str
    newer_token: int


def late_candidates(client: Client, audits: dict[str, list[Accepted]]) -> list[Late]:
    """Every candidate (on the symbols' partition streams) that was stale when appended."""
    ids = {s: [a.entry_id for a in audits[s]] for s in audits}
    prefix_max: dict[str, list[int]] = {}
    for s, entries in audits.items():
        best = 0
        pm = []
        for a in entries:
            best = max(best, a.token)
            pm.append(best)
        prefix_max[s] = pm
    out: list[Late] = []
    for stream in sorted({stream_of(s) for s in audits}):
        out.extend(_late_on(client, stream, ids, prefix_max))
    return out


def _late_on(
    client: Client, stream: str, ids: dict[str, list[Any]], prefix_max: dict[str, list[int]]
) -> list[Late]:
    out: list[Late] = []
    lo = "-"
    while True:
        batch = client.xrange(stream, min=lo, max="+", count=2000)
        for eid, fields in batch:
            try:
                c = decode_candidate(fields)
            except WireFormatError:
                continue
            if c.symbol not in ids:
                continue
            key = _id_key(eid)
            i = bisect.bisect_left(ids[c.symbol], key)  # accepted writes strictly before
            if i and prefix_max[c.symbol][i - 1] > c.token:
                out.append(Late(c.symbol, key, c.token, c.node_id, prefix_max[c.symbol][i - 1]))
        if len(batch) < 2000:
            return out
        lo = "(" + batch[-1][0].decode()


# --- the token timeline -----------------------------------------------------------------
# TokenTimeline (tests/support/token_monitor.py) records every grant and accepted write from
# MONITOR; its ``violations`` checks grants only grow and each write's token is the stored one.


# --- HRW: node ids that will win a symbol ----------------------------------------------


def winning_node_id(
    prefix: str,
    symbol: str,
    live: Iterable[str],
    used: set[str],
    bonus: float = DEFAULT_STICKY_BONUS,
) -> str:
    """A fresh node id that beats every ``live`` node for ``symbol`` even with the sticky bonus."""
    live = list(live)
    for i in range(10_000):
        name = f"{prefix}-{i}"
        if name in used:
            continue
        mine = neg_log_u(weight(name, symbol))
        if all(neg_log_u(weight(n, symbol)) > (1 + bonus) * mine * 1.01 for n in live):
            used.add(name)
            return name
    raise AssertionError("no winning node id found")


# --- the fleet as the tests see it -----------------------------------------------------


@dataclass
class Failover:
    scenario: str
    symbol: str
    old: str
    new: str
    ms: int


class FleetView:
    """A running Fleet plus a Redis client and the book-keeping of deliberate faults."""

    def __init__(self, fleet: Fleet, symbols: tuple[str, ...] = SYMBOLS) -> None:
        self.fleet = fleet
        self.symbols = symbols
        self.client: Client = redis.Redis.from_url(fleet.redis.url, socket_timeout=5)
        #: Labels of services this test killed or stopped on purpose.
        self.expected_dead: set[str] = set()
        self.used_ids: set[str] = set()
        self.failovers: list[Failover] = []
        self.fault_cycles = 0

    # --- processes ------------------------------------------------------------------

    @staticmethod
    def node_id(svc: ServiceProcess) -> str:
        return svc.env["C8_NODE_ID"]

    def calcs(self) -> list[ServiceProcess]:
        return [s for s in self.fleet.services if s.module == "services.calc" and s.running()]

    def calc_by_node(self, node: str) -> ServiceProcess:
        for s in self.calcs():
            if self.node_id(s) == node:
                return s
        raise AssertionError(f"no running calc worker with node id {node}")

    def coordinators(self) -> list[ServiceProcess]:
        return [
            s for s in self.fleet.services if s.module == "services.coordinator" and s.running()
        ]

    def unexpected_dead(self) -> list[str]:
        return [
            f"{s.name} (exit {s.returncode()}):\n{s.log_tail(15)}"
            for s in self.fleet.dead_services()
            if s.name not in self.expected_dead
        ]

    def start_worker(
        self, node_id: str | None = None, env: dict[str, str] | None = None
    ) -> ServiceProcess:
        if node_id is None:
            svc = self.fleet.start_calc()
            self.used_ids.add(self.node_id(svc))
            return svc
        self.used_ids.add(node_id)
        return self.fleet.start_service(
            "calc", {"C8_NODE_ID": node_id, **(env or {})}, instance=node_id
        )

    def kill(self, svc: ServiceProcess, sig: int) -> int:
        """Send ``sig``; return the Redis server time (ms) just before it."""
        t0 = server_ms(self.client)
        self.expected_dead.add(svc.name)
        svc.signal(sig)
        return t0

    # --- Redis state ----------------------------------------------------------------

    def assignment(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.client.hgetall(keys.ASSIGNMENT).items()}

    def lease_holder(self, symbol: str) -> str | None:
        raw = self.client.get(keys.lease(symbol))
        return raw.decode() if raw else None

    def token(self, symbol: str) -> int:
        return int(self.client.get(keys.token(symbol)) or 0)

    def members(self) -> set[str]:
        return {m.decode() for m in self.client.zrange(keys.NODES, 0, -1)}

    def owned_by(self, node: str) -> list[str]:
        return sorted(s for s, n in self.assignment().items() if n == node and s in self.symbols)

    # --- settling ---------------------------------------------------------------------

    def structure_problems(self) -> list[str]:
        """Why the fleet is not (yet) settled; empty when it is."""
        problems = self.unexpected_dead()
        live = {self.node_id(s): s for s in self.calcs()}
        members = self.members()
        if members != set(live):
            problems.append(f"members {sorted(members)} != live workers {sorted(live)}")
        assignment = self.assignment()
        holders: dict[str, int] = {n: 0 for n in live}
        for sym in self.symbols:
            owner = assignment.get(sym)
            holder = self.lease_holder(sym)
            if owner not in live:
                problems.append(f"{sym}: assigned to {owner}, not a live worker")
            if holder != owner:
                problems.append(f"{sym}: lease held by {holder}, assigned to {owner}")
            if holder in holders:
                holders[holder] += 1
        if problems:
            return problems
        # Every worker's own view agrees with the server: no one believes it holds a
        # lease it has lost, and the owners believe they hold theirs.
        for node, svc in live.items():
            try:
                owned = metric(svc.metrics_port, "context8_calc_symbols_owned")
            except OSError as exc:
                problems.append(f"{node}: metrics unreadable ({exc!r})")
                continue
            if owned != holders[node]:
                problems.append(
                    f"{node}: believes it holds {owned:.0f} leases, holds {holders[node]}"
                )
        return problems

    def wait_settled(
        self, timeout: float = 30.0, fresh: int = 2
    ) -> dict[str, tuple[str | None, int]]:
        """Wait until every symbol has one owner that holds its lease and writes again.

        Returns symbol -> (owner, token). Fails with the last problems seen.
        """
        deadline = time.monotonic() + timeout
        last: list[str] = []
        while time.monotonic() < deadline:
            last = self.structure_problems()
            if last:
                time.sleep(0.05)  # polling interval
                continue
            t0 = server_ms(self.client)
            state = self._ownership()
            # Poll until the owners' fresh writes show up, or ownership changes again.
            while time.monotonic() < deadline and self._ownership() == state:
                if all(
                    sum(
                        1
                        for a in read_audit(self.client, s, after=f"{t0}-0")
                        if a.node == owner and a.token == token
                    )
                    >= fresh
                    for s, (owner, token) in state.items()
                ):
                    break
                time.sleep(0.05)  # polling interval
            else:
                last = [f"no fresh writes from the owners {state} (now {self._ownership()})"]
                continue
            last = self.structure_problems()
            if self._ownership() != state or last:
                continue
            for s, (owner, token) in state.items():
                stored = self.client.hmget(keys.report(s), "token", "node")
                mine = [str(token).encode(), str(owner).encode()]
                assert stored == mine, f"{s}: stored report by {stored}, owner is {state[s]}"
            stale_now = [c for c in self.candidates_since(t0) if c[1] != state[c[0]][1]]
            assert not stale_now, (
                f"candidates with a non-current token after settling: {stale_now[:5]}"
            )
            return state
        raise AssertionError("fleet did not settle:\n" + "\n".join(last + self.diagnostics()))

    def diagnostics(self) -> list[str]:
        """What to look at when the fleet did not settle."""
        out: list[str] = []
        for s in self.symbols:
            tail = self.client.xrevrange(keys.audit(s), count=1)
            stored = self.client.hmget(keys.report(s), "token", "node", "event_ms")
            out.append(f"{s}: last accepted {tail}, stored report (token, node, event) {stored}")
        cands = [c for s in self.symbols for c in self.client.xrevrange(stream_of(s), count=2)]
        out.append(
            "last candidates: "
            + str([(e, {k: v for k, v in f.items() if k != b"r"}) for e, f in cands])
        )
        try:
            pub = self.fleet.service("publisher")
            counts = {
                f"{n}{dict(lbl)}": v
                for (n, lbl), v in scrape(pub.metrics_port).items()
                if n.startswith("context8_publisher_") and n.endswith("_total")
            }
            out.append(f"publisher: {counts}")
        except (OSError, KeyError) as exc:
            out.append(f"publisher metrics unreadable: {exc!r}")
        for svc in self.fleet.services:
            if svc.running() and svc.module in ("services.calc", "services.publisher"):
                out.append(f"--- {svc.name} log tail:\n{svc.log_tail(6)}")
        return out

    def _ownership(self) -> dict[str, tuple[str | None, int]]:
        assignment = self.assignment()
        return {s: (assignment.get(s), self.token(s)) for s in self.symbols}

    def candidates_since(self, t0_ms: int) -> list[tuple[str, int, str]]:
        """(symbol, token, node) of every candidate appended after ``t0_ms``."""
        out: list[tuple[str, int, str]] = []
        for stream in sorted({stream_of(s) for s in self.symbols}):
            for _eid, fields in self.client.xrange(stream, min=f"{t0_ms}-0", max="+"):
                try:
                    c = decode_candidate(fields)
                except WireFormatError:
                    continue
                if c.symbol in self.symbols:
                    out.append((c.symbol, c.token, c.node_id))
        return out

    # --- failover -----------------------------------------------------------------------

    def wait_failover(
        self,
        scenario: str,
        old: str | None,
        symbols: Iterable[str],
        t0_ms: int,
        timeout: float = 20.0,
    ) -> dict[str, Failover]:
        """Block on the audit streams until another node's write is accepted per symbol.

        ``old=None``: the first accepted write by any node counts.
        """
        pending = set(symbols)
        found: dict[str, Failover] = {}
        cursors = {keys.audit(s): f"{t0_ms}-0" for s in pending}
        deadline = time.monotonic() + timeout
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"{scenario}: no write by a new owner of {sorted(pending)} within {timeout} s; "
                    f"assignment {self.assignment()}, dead {self.unexpected_dead()}"
                )
            reply = self.client.xread(
                {k: v for k, v in cursors.items() if k.split("{")[1].rstrip("}") in pending},
                block=int(min(left, 1.0) * 1000) or 1,
                count=1000,
            )
            for stream, entries in reply or []:
                name = stream.decode()
                sym = name.split("{")[1].rstrip("}")
                cursors[name] = entries[-1][0].decode()
                for eid, f in entries:
                    node = f[b"node"].decode()
                    if sym in pending and node != old:
                        fo = Failover(scenario, sym, old or "-", node, id_ms(eid) - t0_ms)
                        found[sym] = fo
                        self.failovers.append(fo)
                        pending.discard(sym)
                        break
        return found

    # --- the safety checks --------------------------------------------------------------

    def check_safety(self, timeline: TokenTimeline | None) -> dict[str, int]:
        """Assert every safety invariant over the whole run so far; return counts."""
        audits = {s: read_audit(self.client, s) for s in self.symbols}
        bad: list[str] = []
        for s, entries in audits.items():
            bad += audit_violations(s, entries)
        checked = 0
        if timeline is not None:
            checked, tbad = timeline.violations(self.client)
            bad += tbad
        late = late_candidates(self.client, audits)
        pub = self.fleet.service("publisher")
        stale_rejected = metric(
            pub.metrics_port, "context8_publisher_rejected_total", reason="stale_token"
        )
        assert not bad, "safety violated:\n" + "\n".join(bad[:20])
        # Each late candidate must have been refused as stale by the publisher.
        assert stale_rejected >= len(late), (
            f"{len(late)} late candidates but only {stale_rejected:.0f} stale_token rejections"
        )
        return {
            "accepted": sum(len(v) for v in audits.values()),
            "timeline_checked": checked,
            "late_candidates": len(late),
            "stale_rejected": int(stale_rejected),
        }


def record(view: FleetView, scenario: str, found: dict[str, Failover], note: str = "") -> None:
    """Print a scenario's failover times and keep them for the terminal summary."""
    parts = [f"{f.symbol} {f.old}->{f.new} {f.ms} ms" for f in found.values()]
    line = f"{scenario:<34} " + ", ".join(parts) + (f"  [{note}]" if note else "")
    SUMMARY.append(line)
    print(line)
