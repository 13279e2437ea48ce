"""Failover time of a symbol when its owning calc worker dies, on the real fleet.

    uv run python bench/failover_bench.py [--trials 20] [--profiles default,tuned]

For each settings profile a fresh fleet (redis-server, coordinator, publisher, mcp,
ingest replaying the bundled data at speed 1, two calc workers) is started. Each trial
waits until the fleet is settled, then kill -9s or SIGTERMs the owner of BTCUSDT
(alternating) and measures, for every symbol that worker owned, the time from the
signal to the first report by another node accepted by the publisher: both ends on the
Redis server clock (TIME before the signal, the audit stream entry id of the write).
A replacement worker is started after each trial. Prints p50 / p99 / max per signal.

Failover after kill -9 is bounded below by the lease: the dead owner renewed it at most
TTL/3 before dying, so it expires 2/3 TTL .. TTL later; then the successor's next
acquire attempt (every LEASE_RETRY_MS) and its next event-time cycle (250 ms of exchange
time at speed 1) follow. After SIGTERM the owner releases its leases and leaves at once,
so only the hand-over path and the next cycle remain.
"""

from __future__ import annotations

import argparse
import math
import signal
import statistics
import sys
import time
from collections import defaultdict

from context8.fleet import Fleet, FleetConfig
from shared import keys
from shared.candidate import decode_candidate
from shared.settings import ServiceSettings
from tests.chaos.chaos_kit import FleetView, id_ms

SYMBOL = "BTCUSDT"

#: Settings profiles (environment for every service). "default" = the services' defaults.
PROFILES: dict[str, dict[str, str]] = {
    "default": {},
    "tuned": {
        "C8_CALC_LEASE_TTL_MS": "1000",
        "C8_CALC_LEASE_MARGIN_MS": "250",
        "C8_CALC_LEASE_RETRY_MS": "50",
        "C8_CALC_HEARTBEAT_MS": "150",
        "C8_CALC_HEARTBEAT_JITTER_MS": "30",
        "C8_COORDINATOR_NODE_TTL_MS": "600",
        "C8_COORDINATOR_TICK_MS": "100",
    },
    "tuned-1200": {
        "C8_CALC_LEASE_TTL_MS": "1200",
        "C8_CALC_LEASE_MARGIN_MS": "300",
        "C8_CALC_LEASE_RETRY_MS": "50",
        "C8_CALC_HEARTBEAT_MS": "200",
        "C8_CALC_HEARTBEAT_JITTER_MS": "50",
        "C8_COORDINATOR_NODE_TTL_MS": "800",
        "C8_COORDINATOR_TICK_MS": "100",
    },
}


def percentile(xs: list[int], p: float) -> int:
    """Nearest-rank percentile."""
    s = sorted(xs)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def candidate_breakdown(
    view: FleetView, symbol: str, node: str, t0_ms: int, accepted_ms: int
) -> tuple[int, int]:
    """(ms from the signal to the new owner's first candidate, how many of its candidates
    came before the first accepted one: catch-up cycles refused as not newer)."""
    first = -1
    before = 0
    stream = keys.candidates_of(symbol, ServiceSettings().candidate_partitions)
    for eid, fields in view.client.xrange(stream, min=f"{t0_ms}-0", max=f"{accepted_ms}"):
        c = decode_candidate(fields)
        if c.symbol != symbol or c.node_id != node:
            continue
        if first < 0:
            first = id_ms(eid) - t0_ms
        before += 1
    return first, max(0, before - 1)


def run_profile(name: str, env: dict[str, str], trials: int) -> dict[str, list[int]]:
    fleet = Fleet(FleetConfig(calc_workers=2, speed="1", extra_env=env, log_level="WARNING"))
    fleet.start()
    results: dict[str, list[int]] = defaultdict(list)
    try:
        view = FleetView(fleet)
        view.wait_settled(timeout=120)
        for i in range(2 * trials):
            sig, kind = (signal.SIGKILL, "kill -9") if i % 2 == 0 else (signal.SIGTERM, "SIGTERM")
            view.wait_settled(timeout=60)
            victim = view.assignment()[SYMBOL]
            symbols = view.owned_by(victim)
            svc = view.calc_by_node(victim)
            t0 = view.kill(svc, sig)
            found = view.wait_failover(kind, victim, symbols, t0, timeout=30)
            svc.wait(10)
            ms = [f.ms for f in found.values()]
            results[kind] += ms
            for f in found.values():
                first, before = candidate_breakdown(view, f.symbol, f.new, t0, t0 + f.ms)
                results[f"{kind} first candidate"].append(first)
                results[f"{kind} candidates before"].append(before)
            print(
                f"  {name} trial {i // 2 + 1:>2} {kind:<8} {victim:>8} -> "
                + ", ".join(f"{f.symbol} {f.new} {f.ms} ms" for f in found.values()),
                flush=True,
            )
            view.start_worker()
        dead = view.unexpected_dead()
        if dead:
            print(f"  WARNING: services died on their own: {dead}", file=sys.stderr)
    finally:
        fleet.stop(timeout=8)
        fleet.cleanup()
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=20, help="trials per signal and profile")
    ap.add_argument("--profiles", default="default,tuned", help=f"of {sorted(PROFILES)}")
    args = ap.parse_args()
    summary: list[str] = []
    for name in args.profiles.split(","):
        env = PROFILES[name]
        print(f"profile {name}: {env or '(service defaults)'}", flush=True)
        started = time.monotonic()
        results = run_profile(name, env, args.trials)
        for kind, xs in sorted(results.items()):
            unit = "" if kind.endswith("before") else " ms"
            line = (
                f"{name:<11} {kind:<28} n={len(xs):>3}  p50 {percentile(xs, 50):>5}{unit}  "
                f"p99 {percentile(xs, 99):>5}{unit}  max {max(xs):>5}{unit}  "
                f"mean {statistics.fmean(xs):>6.0f}{unit}"
            )
            summary.append(line)
            print(line, flush=True)
        print(f"  ({time.monotonic() - started:.0f} s)", flush=True)
    print("\nfailover: signal -> first report by the new owner accepted (Redis server clock)")
    print("goals: p99 <= 1500 ms after kill -9, <= 500 ms after SIGTERM")
    print("'first candidate': signal -> the new owner's first candidate appended;")
    print("'candidates before': its candidates refused (not newer) before the first accepted")
    for line in summary:
        print(line)


if __name__ == "__main__":
    main()
