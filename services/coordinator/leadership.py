"""Coordinator leader election: one lease key plus a monotonically growing epoch.

The leader lease reuses the writer-lease scripts on the coordinator's fleet keys:
``lease_acquire.lua`` on (COORDINATOR_LEADER, COORDINATOR_EPOCH) is SET PX plus a new
epoch (a fencing token: the Redis clock in µs, never issued twice) for a new leader and a
PEXPIRE (same epoch) for the sitting one;
``lease_release.lua`` deletes the lease only if this node holds it. Every assignment
write is fenced on (leader == me, epoch == mine) inside Lua, so the local view below
only decides whether to *try* to act; Redis decides whether the write lands.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from shared import keys
from shared.scripts import Scripts


@dataclass(frozen=True)
class Term:
    """Outcome of one election round."""

    is_leader: bool
    #: The epoch in force (ours when leading, the sitting leader's otherwise).
    epoch: int
    #: True on the round in which this node started a new term.
    new_term: bool = False
    #: Seconds from the last time we saw another leader to our takeover (new terms only).
    takeover_s: float | None = None


class Leadership:
    """Campaign for, keep, and give up the coordinator leader lease."""

    def __init__(self, scripts: Scripts, node_id: str, ttl_ms: int, margin_ms: int) -> None:
        if not 0 <= margin_ms < ttl_ms:
            raise ValueError("leader margin must be >= 0 and below the TTL")
        self._scripts = scripts
        self.node_id = node_id
        self.ttl_ms = ttl_ms
        self.margin_ms = margin_ms
        #: Our epoch while we lead, else None.
        self.epoch: int | None = None
        self._valid_until = 0.0
        self._other_seen_at: float | None = None

    @property
    def is_leader(self) -> bool:
        """Leading and the lease cannot have expired yet on the server."""
        return self.epoch is not None and time.monotonic() < self._valid_until

    async def campaign(self) -> Term:
        """Acquire the lease, or extend it if we hold it; one call per tick."""
        sent = time.monotonic()
        ok, epoch = await self._scripts(
            "lease_acquire",
            keys=[keys.COORDINATOR_LEADER, keys.COORDINATOR_EPOCH],
            args=[self.node_id, self.ttl_ms],
        )
        epoch = int(epoch)
        if not ok:
            self.step_down()
            self._other_seen_at = sent
            return Term(False, epoch)
        new_term = epoch != self.epoch
        takeover_s = None
        if new_term and self._other_seen_at is not None:
            takeover_s = time.monotonic() - self._other_seen_at
        self.epoch = epoch
        self._valid_until = sent + (self.ttl_ms - self.margin_ms) / 1000
        if new_term:
            self._other_seen_at = None
        return Term(True, epoch, new_term, takeover_s)

    def step_down(self) -> None:
        """Forget leadership locally (deposed, or a fenced write was rejected)."""
        self.epoch = None
        self._valid_until = 0.0

    async def resign(self) -> bool:
        """Delete the lease if we hold it, so a standby takes over at once."""
        self.step_down()
        released = await self._scripts(
            "lease_release", keys=[keys.COORDINATOR_LEADER], args=[self.node_id]
        )
        return bool(released)
