"""Coordinator settings (env ``C8_COORDINATOR_*`` plus the common ``C8_*``)."""

from __future__ import annotations

from pydantic import Field, model_validator

from shared.hrw import DEFAULT_MIN_HOLD_MS, DEFAULT_STICKY_BONUS
from shared.keys import check_symbol
from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    #: A calc node whose last heartbeat is older than this is dropped (Redis server time).
    coordinator_node_ttl_ms: int = Field(default=600, gt=0)
    #: Period of the reconcile loop; membership pub/sub messages wake it earlier.
    coordinator_tick_ms: int = Field(default=100, gt=0)
    #: TTL of the leader lease; a crashed leader is replaced within about this long.
    coordinator_leader_ttl_ms: int = Field(default=1000, gt=0)
    #: A leader stops acting this long before its lease could expire on the server.
    coordinator_leader_margin_ms: int = Field(default=200, ge=0)
    #: HRW hysteresis: the current owner's weight is multiplied by (1 + bonus).
    coordinator_sticky_bonus: float = Field(default=DEFAULT_STICKY_BONUS, ge=0, le=1)
    #: HRW hysteresis: a symbol stays on a live owner at least this long.
    coordinator_min_hold_ms: int = Field(default=DEFAULT_MIN_HOLD_MS, ge=0)
    #: Extra symbols to assign besides the fields of keys.SYMBOLS (comma-separated).
    coordinator_symbols: str = ""

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.coordinator_leader_margin_ms >= self.coordinator_leader_ttl_ms:
            raise ValueError("C8_COORDINATOR_LEADER_MARGIN_MS must be below the leader TTL")
        if self.coordinator_tick_ms * 2 > self.coordinator_leader_ttl_ms:
            raise ValueError("C8_COORDINATOR_TICK_MS must be at most half the leader TTL")
        self.static_symbols()
        return self

    def static_symbols(self) -> list[str]:
        """C8_COORDINATOR_SYMBOLS as a list of checked, upper-cased symbols."""
        return [
            check_symbol(part.strip().upper())
            for part in self.coordinator_symbols.split(",")
            if part.strip()
        ]
