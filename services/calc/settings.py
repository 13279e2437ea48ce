"""Settings of the calc worker (env ``C8_*``; table in services/calc/README.md)."""

from __future__ import annotations

from pydantic import Field, model_validator

from shared.settings import ServiceSettings

DAY_MS = 86_400_000


class Settings(ServiceSettings):
    #: Fast cycle on exchange event time (top of book, depth, flow, 24 h stats, health).
    calc_fast_cycle_ms: int = Field(default=250, gt=0)
    #: Slow cycle (liquidity, volume profile, OFI, slippage); a multiple of the fast cycle.
    calc_slow_cycle_ms: int = Field(default=2000, gt=0)
    #: Writer lease TTL; renewed every TTL/3.
    calc_lease_ttl_ms: int = Field(default=1000, ge=300)
    #: The holder stops emitting this long before the lease could expire on the server.
    calc_lease_margin_ms: int = Field(default=250, ge=0)
    #: Pause between attempts to acquire a lease another node still holds.
    calc_lease_retry_ms: int = Field(default=50, gt=0)
    calc_heartbeat_ms: int = Field(default=150, gt=0)
    #: Heartbeat interval is heartbeat_ms +- a uniform jitter of this many ms.
    calc_heartbeat_jitter_ms: int = Field(default=30, ge=0)
    #: Periodic re-read of the assignment hash (backup to the pub/sub push).
    calc_assignment_poll_ms: int = Field(default=2000, gt=0)
    #: Wall time without any entry after which the stall watchdog advances the clock.
    calc_stall_grace_ms: int = Field(default=1500, gt=0)
    calc_xread_block_ms: int = Field(default=200, gt=0)
    calc_xread_count: int = Field(default=500, gt=0)
    calc_candidates_maxlen: int = Field(default=10_000, gt=0)
    #: Most CPU work (decoding, analytics, reports) between two yields of the event loop.
    calc_slice_ms: int = Field(default=5, gt=0)
    #: Venue used when the symbol registry (keys.SYMBOLS) has no entry for a symbol.
    calc_default_venue: str = "BINANCE"
    #: Asset report: a silent member this far (event time) behind the most advanced one
    #: is reported stalled and no longer waited for (docs/analytics.md, "Asset report").
    calc_asset_max_skew_ms: int = Field(default=2000, gt=0)

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.calc_slow_cycle_ms % self.calc_fast_cycle_ms:
            raise ValueError("C8_CALC_SLOW_CYCLE_MS must be a multiple of C8_CALC_FAST_CYCLE_MS")
        if DAY_MS % self.calc_fast_cycle_ms:
            raise ValueError("C8_CALC_FAST_CYCLE_MS must divide 24 h (86400000 ms)")
        if self.calc_lease_margin_ms >= self.calc_lease_ttl_ms // 3:
            raise ValueError("C8_CALC_LEASE_MARGIN_MS must be below a third of the lease TTL")
        if self.calc_default_venue.upper() not in ("BINANCE", "BYBIT"):
            raise ValueError("C8_CALC_DEFAULT_VENUE must be BINANCE or BYBIT")
        return self

    @property
    def lease_renew_s(self) -> float:
        return self.calc_lease_ttl_ms / 3000
