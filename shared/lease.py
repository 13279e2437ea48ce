"""Writer leases with fencing tokens, from the holder's side.

A lease is ``SET lease:{S} <node> NX PX ttl`` plus ``INCR token:{S}`` in one script.
The holder counts its lease as valid only until ``sent + ttl - margin`` on its own
monotonic clock, where ``sent`` is when it *sent* the acquire/renew: the server-side
TTL started no earlier than that, so the holder stops emitting before the lease can
expire on the server, even if the reply was slow or the process was paused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from shared import keys
from shared.scripts import Scripts


@dataclass
class HeldLease:
    symbol: str
    token: int
    #: time.monotonic() after which the holder must not emit for this symbol.
    valid_until: float

    def is_valid(self, now: float | None = None) -> bool:
        return (time.monotonic() if now is None else now) < self.valid_until


class LeaseClient:
    """Acquire, renew and release per-symbol writer leases for one node."""

    def __init__(self, scripts: Scripts, node_id: str, ttl_ms: int, margin_ms: int) -> None:
        if not 0 <= margin_ms < ttl_ms:
            raise ValueError("lease margin must be >= 0 and smaller than the TTL")
        self._scripts = scripts
        self.node_id = node_id
        self.ttl_ms = ttl_ms
        self.margin_ms = margin_ms

    def _valid_until(self, sent: float) -> float:
        return sent + (self.ttl_ms - self.margin_ms) / 1000

    async def acquire(self, symbol: str) -> HeldLease | None:
        """The lease and a fresh token, or None if another node holds it."""
        sent = time.monotonic()
        ok, token = await self._scripts(
            "lease_acquire",
            keys=[keys.lease(symbol), keys.token(symbol)],
            args=[self.node_id, self.ttl_ms],
        )
        if not ok:
            return None
        return HeldLease(symbol, int(token), self._valid_until(sent))

    async def renew(self, lease: HeldLease) -> bool:
        """Extend ``lease`` if still held; on success its validity moves forward."""
        sent = time.monotonic()
        ok = await self._scripts(
            "lease_renew", keys=[keys.lease(lease.symbol)], args=[self.node_id, self.ttl_ms]
        )
        if ok:
            lease.valid_until = self._valid_until(sent)
            return True
        lease.valid_until = 0.0
        return False

    async def release(self, lease: HeldLease) -> bool:
        """Give the lease up (only if this node still holds it)."""
        lease.valid_until = 0.0
        released = await self._scripts(
            "lease_release", keys=[keys.lease(lease.symbol)], args=[self.node_id]
        )
        return bool(released)
