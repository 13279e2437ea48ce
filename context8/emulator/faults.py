"""Fault switches: what the control API can make the venue do wrong (state only, no I/O).

* ``disconnect``: drop the market's (or the symbol's) connections without a close
  frame -- an action the server performs, not state kept here;
* ``stall``: a symbol (or a whole market) sends nothing while its sockets stay open and
  pings are answered; its clock and true book keep going; ``resume`` ends it;
* ``drop``: the next N depth frames of a symbol are not sent (a sequence gap);
* ``http_error``: the next N REST requests (or those for S seconds) get 429 or 418 with
  ``Retry-After`` and Binance's error JSON;
* ``slow_snapshot``: REST depth answers are delayed by D seconds (taken at request time);
* ``refuse``: new WebSocket upgrades of a market are refused (HTTP 503), for N attempts,
  S seconds, or until cleared.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from context8.emulator.markets import MARKETS

KINDS = ("disconnect", "stall", "resume", "drop", "http_error", "slow_snapshot", "refuse")


class FaultError(ValueError):
    """A fault request the control API rejects (HTTP 400)."""


@dataclass(frozen=True)
class Fault:
    """One validated fault request."""

    kind: str
    market: str
    symbol: str | None = None
    count: int | None = None
    seconds: float | None = None
    status: int = 429
    retry_after: int = 1
    delay: float = 0.0


def _number(body: dict[str, Any], key: str, kind: type, minimum: float) -> Any:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FaultError(f"{key!r} must be a number")
    if kind is int and value != int(value):
        raise FaultError(f"{key!r} must be a whole number")
    if value < minimum:
        raise FaultError(f"{key!r} must be >= {minimum:g}")
    return kind(value)


def parse_fault(body: Any) -> Fault:
    """Validate the JSON body of ``POST /_emulator/fault``."""
    if not isinstance(body, dict):
        raise FaultError("the body must be a JSON object")
    kind = body.get("fault")
    if kind not in KINDS:
        raise FaultError(f"'fault' must be one of {', '.join(KINDS)}")
    market = body.get("market")
    if market not in MARKETS:
        raise FaultError(f"'market' must be one of {', '.join(MARKETS)}")
    symbol = body.get("symbol")
    if symbol is not None and (not isinstance(symbol, str) or not symbol):
        raise FaultError("'symbol' must be a non-empty string")
    symbol = symbol.upper() if symbol else None
    unknown = set(body) - {
        "fault", "market", "symbol", "count", "seconds", "status", "retry_after", "delay"
    }
    if unknown:
        raise FaultError(f"unknown fields: {', '.join(sorted(unknown))}")
    count = _number(body, "count", int, 1)
    seconds = _number(body, "seconds", float, 0)
    fault = Fault(kind, market, symbol, count, seconds)
    if kind == "drop":
        if symbol is None or count is None:
            raise FaultError("'drop' needs 'symbol' and 'count'")
    elif kind == "http_error":
        status = _number(body, "status", int, 100)
        if status not in (None, 429, 418):
            raise FaultError("'status' must be 429 or 418")
        if count is None and seconds is None:
            raise FaultError("'http_error' needs 'count' or 'seconds'")
        retry_after = _number(body, "retry_after", int, 0)
        fault = Fault(
            kind, market, symbol, count, seconds, status or 429,
            1 if retry_after is None else retry_after,
        )
    elif kind == "slow_snapshot":
        delay = _number(body, "delay", float, 0)
        if delay is None:
            raise FaultError("'slow_snapshot' needs 'delay' (seconds)")
        fault = Fault(kind, market, symbol, count, seconds, delay=delay)
    return fault


@dataclass
class _Budget:
    """A fault that lasts ``remaining`` uses, until ``until`` (monotonic s), or both."""

    remaining: int | None
    until: float | None

    def take(self, now: float) -> bool:
        if self.until is not None and now >= self.until:
            return False
        if self.remaining is not None:
            if self.remaining <= 0:
                return False
            self.remaining -= 1
        return True

    def live(self, now: float) -> bool:
        if self.until is not None and now >= self.until:
            return False
        return self.remaining is None or self.remaining > 0


def _budget(fault: Fault, now: float) -> _Budget:
    until = None if fault.seconds is None else now + fault.seconds
    return _Budget(fault.count, until)


class FaultState:
    """The switches in force. Symbol ``None`` means the whole market."""

    def __init__(self) -> None:
        self.stalled: set[tuple[str, str | None]] = set()
        self.drops: dict[tuple[str, str], int] = {}
        self.http_errors: dict[str, tuple[Fault, _Budget]] = {}
        self.slow: dict[tuple[str, str | None], tuple[Fault, _Budget]] = {}
        self.refusing: dict[str, _Budget] = {}

    def apply(self, fault: Fault, now: float) -> None:
        """Switch ``fault`` on (``resume`` switches a stall off)."""
        key = (fault.market, fault.symbol)
        if fault.kind == "stall":
            self.stalled.add(key)
        elif fault.kind == "resume":
            if fault.symbol is None:
                self.stalled = {k for k in self.stalled if k[0] != fault.market}
            else:
                self.stalled.discard(key)
        elif fault.kind == "drop":
            assert fault.symbol is not None and fault.count is not None
            sym_key = (fault.market, fault.symbol)
            self.drops[sym_key] = self.drops.get(sym_key, 0) + fault.count
        elif fault.kind == "http_error":
            self.http_errors[fault.market] = (fault, _budget(fault, now))
        elif fault.kind == "slow_snapshot":
            self.slow[key] = (fault, _budget(fault, now))
        elif fault.kind == "refuse":
            self.refusing[fault.market] = _budget(fault, now)

    def clear(self, market: str | None = None, symbol: str | None = None) -> None:
        """Switch every fault off (of a market, or of one symbol)."""

        def hit(m: str, s: str | None) -> bool:
            return (market is None or m == market) and (symbol is None or s == symbol)

        self.stalled = {k for k in self.stalled if not hit(*k)}
        self.drops = {k: v for k, v in self.drops.items() if not hit(*k)}
        self.slow = {k: v for k, v in self.slow.items() if not hit(*k)}
        if symbol is None:
            self.http_errors = {m: v for m, v in self.http_errors.items() if not hit(m, None)}
            self.refusing = {m: v for m, v in self.refusing.items() if not hit(m, None)}

    def is_stalled(self, market: str, symbol: str) -> bool:
        return (market, symbol) in self.stalled or (market, None) in self.stalled

    def take_drop(self, market: str, symbol: str) -> bool:
        """Should this depth frame be dropped? (uses up one of the N)"""
        key = (market, symbol)
        left = self.drops.get(key, 0)
        if left <= 0:
            return False
        if left == 1:
            del self.drops[key]
        else:
            self.drops[key] = left - 1
        return True

    def take_http_error(self, market: str, now: float) -> Fault | None:
        entry = self.http_errors.get(market)
        if entry is None:
            return None
        fault, budget = entry
        if budget.take(now):
            return fault
        if not budget.live(now):
            del self.http_errors[market]
        return None

    def snapshot_delay(self, market: str, symbol: str, now: float) -> float:
        for key in ((market, symbol), (market, None)):
            entry = self.slow.get(key)
            if entry is not None:
                fault, budget = entry
                if budget.take(now):
                    return fault.delay
                if not budget.live(now):
                    del self.slow[key]
        return 0.0

    def take_refuse(self, market: str, now: float) -> bool:
        budget = self.refusing.get(market)
        if budget is None:
            return False
        if budget.take(now):
            return True
        if not budget.live(now):
            del self.refusing[market]
        return False

    def describe(self, now: float) -> dict[str, Any]:
        """The switches in force, for ``GET /_emulator/stats``."""

        def left(budget: _Budget) -> dict[str, Any]:
            return {
                "remaining": budget.remaining,
                "seconds_left": None if budget.until is None else max(0.0, budget.until - now),
            }

        return {
            "stalled": sorted(f"{m}:{s or '*'}" for m, s in self.stalled),
            "drops": {f"{m}:{s}": n for (m, s), n in sorted(self.drops.items())},
            "http_errors": {
                m: {**asdict(f), **left(b)}
                for m, (f, b) in self.http_errors.items()
                if b.live(now)
            },
            "slow_snapshot": {
                f"{m}:{s or '*'}": {"delay": f.delay, **left(b)}
                for (m, s), (f, b) in self.slow.items()
                if b.live(now)
            },
            "refusing": {m: left(b) for m, b in self.refusing.items() if b.live(now)},
        }
