"""Heartbeats missed while the coordinator could not see Redis are not deaths.

Workers heartbeat into Redis; the leader drops a node whose heartbeat is older than the node
TTL. When Redis itself (or, on a cluster, the primary serving the fleet keys) is out or
stalled for longer than that TTL, every worker misses its heartbeats at once, and the first
tick after it would drop every live worker and unassign every symbol: a fleet-wide reshuffle
for nothing. The coordinator was blind for the same stretch (its ticks failed or hung), so
for one node TTL after it sees Redis again it prunes with the TTL stretched by how long it
was blind: a live worker has heartbeated again by then; a dead one is dropped that much
later than usual.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class OutageGrace:
    """Pure state, fed the monotonic time of every tick that reached Redis."""

    node_ttl_ms: int
    tick_ms: int
    #: When a tick last reached Redis (start with the process's start).
    last_ok_s: float
    #: After a blind stretch: its length, and until when the stretched TTL applies.
    blind_ms: int = 0
    grace_until_s: float = 0.0

    def reached(self, now_s: float) -> None:
        """A tick reached Redis (call before pruning in that tick)."""
        gap_ms = (now_s - self.last_ok_s) * 1000
        # Ticks come every tick_ms; a gap well past that means we could not see Redis.
        if gap_ms > self.tick_ms + self.node_ttl_ms / 4:
            self.blind_ms = int(gap_ms)
            self.grace_until_s = now_s + self.node_ttl_ms / 1000
        self.last_ok_s = now_s

    def prune_ttl_ms(self, now_s: float) -> int:
        """The heartbeat age beyond which a node is dropped now."""
        if now_s < self.grace_until_s:
            return self.node_ttl_ms + self.blind_ms
        return self.node_ttl_ms
