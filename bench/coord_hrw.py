"""Benchmark shared.hrw: time to compute an assignment, and how much moves on join/leave.

    uv run python bench/coord_hrw.py [--symbols 1000] [--nodes 50] [--repeat 20]

Prints the median/p95 time of one full ``compute_assignment`` (the coordinator runs one
per tick when leading), the fraction of symbols moved when one node joins or leaves
(ideal: 1/(N+1) and 1/N), with and without the default hysteresis, and the balance.
"""

from __future__ import annotations

import argparse
import statistics
import time

from shared import hrw
from shared.hrw import HrwPolicy, compute_assignment, symbols_per_node


def timed(fn: object, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--symbols", type=int, default=1000)
    ap.add_argument("--nodes", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=20)
    a = ap.parse_args()
    symbols = [f"SYM{i}USDT" for i in range(a.symbols)]
    nodes = [f"calc-{i}" for i in range(a.nodes)]
    plain = HrwPolicy(sticky_bonus=0.0, min_hold_ms=0)
    sticky = HrwPolicy(min_hold_ms=0)  # default 2 % bonus; hold off so moves are measured

    base = compute_assignment(symbols, nodes, {}, {}, 0, plain)

    def cold() -> None:
        # A new node set: every (node, symbol) weight is hashed again.
        hrw._winners.cache_clear()
        hrw.weight.cache_clear()
        compute_assignment(symbols, nodes, base.owners, base.assigned_at, 10_000, HrwPolicy())

    def warm() -> None:
        # Same node set as the previous tick (the steady state of the leader's loop).
        compute_assignment(symbols, nodes, base.owners, base.assigned_at, 10_000, HrwPolicy())

    for name, fn in (("cold (new node set)", cold), ("warm (same node set)", warm)):
        times = sorted(timed(fn, a.repeat))
        p95 = times[min(len(times) - 1, int(0.95 * len(times)))]
        print(
            f"compute_assignment {a.symbols} symbols x {a.nodes} nodes, {name}: "
            f"median {statistics.median(times) * 1e3:.2f} ms, p95 {p95 * 1e3:.2f} ms"
        )

    counts = symbols_per_node(base.owners, nodes).values()
    print(
        f"balance: min {min(counts)}, max {max(counts)}, mean {a.symbols / a.nodes:.1f} "
        "symbols per node"
    )

    trials = 20  # average over several joiner / leaver identities
    for name, policy in (("plain HRW", plain), ("sticky 2%", sticky)):
        join = leave = 0
        for t in range(trials):
            joined = compute_assignment(symbols, [*nodes, f"new-{t}"], base.owners, {}, 0, policy)
            rest = [n for n in nodes if n != nodes[t % a.nodes]]
            left = compute_assignment(symbols, rest, base.owners, {}, 0, policy)
            join += len(joined.moved)
            leave += len(left.moved)
        print(
            f"{name}: join moves {join / trials / a.symbols:.3%} "
            f"(ideal {1 / (a.nodes + 1):.3%}), leave moves {leave / trials / a.symbols:.3%} "
            f"(ideal {1 / a.nodes:.3%}), mean of {trials} trials"
        )
    # Churn from the bonus alone: a stable node set never moves anything.
    again = compute_assignment(symbols, nodes, base.owners, base.assigned_at, 10**9, sticky)
    print(f"steady state re-run moves {len(again.moved)} symbols")


if __name__ == "__main__":
    main()
