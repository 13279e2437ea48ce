"""Writer leases with fencing tokens, from the holder's side.

A lease is ``SET lease:{S} <node> PX ttl`` (only while no other node holds it) plus a
fresh fencing token in ``token:{S}``, in one script (``lease_acquire.lua``). A token is
the Redis server clock in microseconds at its grant, and a grant is refused while that
clock is not past the stored token: tokens strictly increase per symbol and are never
issued twice, even when Redis loses its last writes (AOF ``everysec`` after a host crash,
a replica promoted before it received the last grant), provided the server clock did not
step back by more than the outage lasted (services/coordinator/README.md, "Fencing
tokens"). Tokens are integers below 2**53, exact in Lua, JSON and float64 metrics.

A renewal succeeds only while the lease names this node *and* its token is still the
stored one, so a lease key restored without the holder's (lost) grant does not revive
that token; the holder then acquires again and gets a fresh one.

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

#: ``lease_acquire.lua``'s ARGV[3]: grant a fresh token even if the lease key names us.
FRESH_GRANT = "1"


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
        """The lease and a fresh token, or None if another node holds it (or the server
        clock is not past the stored token: retry later).

        Always a fresh grant: the caller holds no lease for ``symbol``, so a lease key
        that still names this node is a leftover (e.g. restored by a Redis restart).
        """
        sent = time.monotonic()
        ok, token = await self._scripts(
            "lease_acquire",
            keys=[keys.unit_key("lease", symbol), keys.unit_key("token", symbol)],
            args=[self.node_id, self.ttl_ms, FRESH_GRANT],
        )
        if not ok:
            return None
        return HeldLease(symbol, int(token), self._valid_until(sent))

    async def renew(self, lease: HeldLease) -> bool:
        """Extend ``lease`` if still held with its token; on success its validity moves
        forward."""
        sent = time.monotonic()
        ok = await self._scripts(
            "lease_renew",
            keys=[keys.unit_key("lease", lease.symbol), keys.unit_key("token", lease.symbol)],
            args=[self.node_id, self.ttl_ms, lease.token],
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
            "lease_release", keys=[keys.unit_key("lease", lease.symbol)], args=[self.node_id]
        )
        return bool(released)
