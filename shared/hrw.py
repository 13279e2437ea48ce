"""Rendezvous (highest-random-weight) assignment of symbols to nodes, with hysteresis.

Pure: no I/O, no clock. The coordinator calls ``compute_assignment`` with what it read
from Redis and writes the result.

Weight
    ``weight(node, symbol)`` is the unsigned 64-bit big-endian value of
    ``blake2b(node + "\\x00" + symbol, digest_size=8)``. The NUL separator keeps
    ("AB", "C") and ("A", "BC") apart. The plain HRW owner of a symbol is the live node
    with the largest weight (ties, astronomically unlikely, go to the smaller node id).

Hysteresis (exact rule), for a symbol whose current owner ``o`` is still live:
    1. Minimum hold: if ``now_ms - assigned_at[symbol] < min_hold_ms`` it stays on ``o``.
    2. Sticky bonus: otherwise let ``b`` be the plain HRW winner. The bonus multiplies the
       owner's *score* in weighted rendezvous form, ``score(w) = 1 / -ln(u)`` with
       ``u = (w + 0.5) / 2**64`` (a monotonic map of the weight, so the plain winner is the
       same). The symbol stays on ``o`` unless
       ``score(weight(b)) > score(weight(o)) * (1 + sticky_bonus)``, i.e. unless
       ``-ln(u_o) > (1 + sticky_bonus) * -ln(u_b)``, evaluated in float64 with log1p.
       This is the owner counting as a node of 1.02x capacity. It is scale-free: a
       joining node takes about 1/(1.02 (N+1)) of the symbols at any N, whereas a bonus on
       the raw 64-bit weight would make owners (the maximum of N uniform draws, close to
       2**64) practically unbeatable once N is large (~50), so joins would not rebalance.
    A symbol whose owner is not live (left, expired) or that has no owner moves to the
    plain HRW winner at once: the hold never keeps a symbol on a dead node.

With no live node every symbol is unassigned. Symbols no longer wanted are dropped.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

#: Defaults used by the coordinator (C8_COORDINATOR_STICKY_BONUS / _MIN_HOLD_MS).
DEFAULT_STICKY_BONUS = 0.02
DEFAULT_MIN_HOLD_MS = 2000


@lru_cache(maxsize=1 << 16)
def weight(node: str, symbol: str) -> int:
    """Rendezvous weight of ``node`` for ``symbol``: blake2b-64, an int in [0, 2**64).

    Cached: the same pairs come back on every rebalance.
    """
    digest = hashlib.blake2b(node.encode() + b"\x00" + symbol.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def hrw_owner(symbol: str, nodes: Iterable[str]) -> str | None:
    """The plain HRW winner among ``nodes`` (None when there are none)."""
    best: str | None = None
    best_w = -1
    for node in nodes:
        w = weight(node, symbol)
        if w > best_w or (w == best_w and best is not None and node < best):
            best, best_w = node, w
    return best


@lru_cache(maxsize=8)
def _winners(nodes: tuple[str, ...]) -> dict[str, str]:
    """Memo of symbol -> plain HRW winner for one (sorted) node set, filled lazily.

    The node set rarely changes between ticks, so a steady-state rebalance costs one
    dict lookup per symbol instead of N hashes.
    """
    return {}


@dataclass(frozen=True)
class HrwPolicy:
    """Hysteresis knobs; see the module docstring for the exact rule."""

    sticky_bonus: float = DEFAULT_STICKY_BONUS
    min_hold_ms: int = DEFAULT_MIN_HOLD_MS

    def __post_init__(self) -> None:
        if self.sticky_bonus < 0:
            raise ValueError("sticky_bonus must be >= 0")
        if self.min_hold_ms < 0:
            raise ValueError("min_hold_ms must be >= 0")


@dataclass(frozen=True)
class AssignmentPlan:
    """The outcome of one rebalance computation."""

    #: symbol -> node for every assigned symbol.
    owners: dict[str, str]
    #: symbol -> ms when the symbol got its current owner (same clock as ``now_ms``).
    assigned_at: dict[str, int]
    #: symbols whose owner changed from one node to another.
    moved: frozenset[str] = field(default_factory=frozenset)
    #: symbols that had no owner before and have one now.
    added: frozenset[str] = field(default_factory=frozenset)
    #: symbols that had an owner before and have none now (dropped or no live node).
    removed: frozenset[str] = field(default_factory=frozenset)

    @property
    def changed(self) -> bool:
        return bool(self.moved or self.added or self.removed)


_TWO_64 = float(2**64)


def neg_log_u(w: int) -> float:
    """``-ln(u)`` for ``u = (w + 0.5) / 2**64``; precise near u = 1 (large weights)."""
    one_minus_u = (float(2**64 - w) - 0.5) / _TWO_64
    return -math.log1p(-one_minus_u)


def _keeps_owner(
    symbol: str, owner: str, best: str, held_ms: int | None, policy: HrwPolicy
) -> bool:
    if best == owner:
        return True
    if held_ms is not None and held_ms < policy.min_hold_ms:
        return True
    bonus = 1.0 + policy.sticky_bonus
    return neg_log_u(weight(owner, symbol)) <= bonus * neg_log_u(weight(best, symbol))


def compute_assignment(
    symbols: Iterable[str],
    nodes: Collection[str],
    current: Mapping[str, str],
    assigned_at: Mapping[str, int],
    now_ms: int,
    policy: HrwPolicy | None = None,
) -> AssignmentPlan:
    """The new assignment of ``symbols`` over the live ``nodes``.

    ``current`` is the assignment now in force, ``assigned_at`` when each symbol got its
    current owner; a symbol missing from ``assigned_at`` counts as held long enough.
    """
    policy = policy or HrwPolicy()
    live = sorted(set(nodes))
    live_set = set(live)
    owners: dict[str, str] = {}
    since: dict[str, int] = {}
    moved: set[str] = set()
    added: set[str] = set()
    wanted = set(symbols)
    winners = _winners(tuple(live))
    for symbol in sorted(wanted):
        best = winners.get(symbol)
        if best is None:
            best = hrw_owner(symbol, live)
            if best is None:
                continue
            winners[symbol] = best
        owner = current.get(symbol)
        if owner is not None and owner in live_set:
            at = assigned_at.get(symbol)
            held = None if at is None else now_ms - at
            if _keeps_owner(symbol, owner, best, held, policy):
                owners[symbol] = owner
                since[symbol] = at if at is not None else now_ms
                continue
        owners[symbol] = best
        since[symbol] = now_ms
        # A live owner equal to ``best`` was kept above, so any previous owner differs.
        (added if owner is None else moved).add(symbol)
    removed = {s for s in current if s not in owners}
    return AssignmentPlan(owners, since, frozenset(moved), frozenset(added), frozenset(removed))


def symbols_per_node(owners: Mapping[str, str], nodes: Iterable[str] = ()) -> dict[str, int]:
    """How many symbols each node owns (nodes listed in ``nodes`` appear even with 0)."""
    counts = dict.fromkeys(nodes, 0)
    for node in owners.values():
        counts[node] = counts.get(node, 0) + 1
    return counts
