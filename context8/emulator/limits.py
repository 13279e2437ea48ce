"""Limit accounting: windows, request weights, maxima and violations (no I/O).

Times are passed in (seconds), so every rule is testable without sockets or sleeps.
The venue's numbers are in ``markets.py``; the REST depth weights and ``limit`` rules
are Binance's documented ones.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass, field

from context8.emulator.markets import MarketLimits, MarketSpec

#: Binance futures depth: the only valid ``limit`` values and their weights.
FUTURES_DEPTH_WEIGHTS = {5: 2, 10: 2, 20: 2, 50: 2, 100: 5, 500: 10, 1000: 20}
FUTURES_DEPTH_DEFAULT = 500
SPOT_DEPTH_DEFAULT = 100
SPOT_DEPTH_MAX = 5000


class SlidingWindow:
    """Events in the last ``window_s`` seconds."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque()

    def add(self, now: float) -> int:
        """Record one event at ``now``; the count in the window, this one included."""
        self._times.append(now)
        return self.count(now)

    def count(self, now: float) -> int:
        times = self._times
        while times and now - times[0] >= self.window_s:
            times.popleft()
        return len(times)


class MinuteWeight:
    """Binance's request weight: summed per calendar minute (``X-MBX-USED-WEIGHT-1M``)."""

    def __init__(self) -> None:
        self.minute = -1
        self.used = 0

    def add(self, now_epoch_s: float, weight: int) -> int:
        minute = int(now_epoch_s // 60)
        if minute != self.minute:
            self.minute, self.used = minute, 0
        self.used += weight
        return self.used

    def current(self, now_epoch_s: float) -> int:
        return self.used if int(now_epoch_s // 60) == self.minute else 0

    @staticmethod
    def retry_after(now_epoch_s: float) -> int:
        """Whole seconds until the next minute starts (at least 1)."""
        return max(1, math.ceil(60 - now_epoch_s % 60))


class DepthParamError(ValueError):
    """A ``limit`` Binance would reject: (code, msg) of its error JSON."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


def depth_limit(spec: MarketSpec, raw: str | None) -> int:
    """The levels per side a depth request asks for, validated as Binance documents.

    Futures: one of 5, 10, 20, 50, 100, 500, 1000 (default 500). Spot: default 100,
    above 5000 truncated to 5000.
    """
    if raw is None or raw == "":
        return FUTURES_DEPTH_DEFAULT if spec.is_futures else SPOT_DEPTH_DEFAULT
    if not raw.isdigit() or len(raw) > 20:
        raise DepthParamError(
            -1100, "Illegal characters found in parameter 'limit'; legal range is '^[0-9]{1,20}$'."
        )
    limit = int(raw)
    if spec.is_futures:
        if limit not in FUTURES_DEPTH_WEIGHTS:
            raise DepthParamError(-1130, "Data sent for parameter 'limit' is not valid.")
        return limit
    if limit < 1:
        raise DepthParamError(-1130, "Data sent for parameter 'limit' is not valid.")
    return min(limit, SPOT_DEPTH_MAX)


def depth_weight(spec: MarketSpec, limit: int) -> int:
    """Request weight of ``GET depth`` with ``limit`` (Binance's tables)."""
    if spec.is_futures:
        return FUTURES_DEPTH_WEIGHTS[limit]
    if limit <= 100:
        return 5
    if limit <= 500:
        return 25
    if limit <= 1000:
        return 50
    return 250


@dataclass
class MarketAccounting:
    """One market's limit state, the maxima observed and the violations counted."""

    limits: MarketLimits
    connects: dict[str, SlidingWindow] = field(default_factory=dict)
    weights: dict[str, MinuteWeight] = field(default_factory=dict)
    violations: Counter[str] = field(default_factory=Counter)
    max_streams_per_connection: int = 0
    max_messages_per_second: int = 0
    max_weight_per_minute: int = 0
    max_args_per_request: int = 0

    def connection_attempt(self, ip: str, now: float) -> bool:
        """Count an upgrade attempt; False (and a violation) above the per-IP window."""
        window = self.connects.setdefault(ip, SlidingWindow(self.limits.connection_window_s))
        if window.add(now) > self.limits.connections_per_window:
            self.violations["connection_attempts"] += 1
            return False
        return True

    def message(self, rate: SlidingWindow, now: float) -> bool:
        """Count an incoming message; False (and a violation) above messages/second."""
        count = rate.add(now)
        self.max_messages_per_second = max(self.max_messages_per_second, count)
        limit = self.limits.messages_per_second
        if limit is not None and count > limit:
            self.violations["messages_per_second"] += 1
            return False
        return True

    def streams(self, current: int, adding: int) -> bool:
        """May a connection listening to ``current`` streams add ``adding``?"""
        limit = self.limits.streams_per_connection
        if limit is not None and current + adding > limit:
            self.violations["streams_per_connection"] += 1
            return False
        self.max_streams_per_connection = max(self.max_streams_per_connection, current + adding)
        return True

    def subscribe_args(self, count: int, chars_total: int) -> str | None:
        """Bybit: the violated rule of one subscribe request, if any."""
        self.max_args_per_request = max(self.max_args_per_request, count)
        if self.limits.args_per_request is not None and count > self.limits.args_per_request:
            self.violations["args_per_request"] += 1
            return f"args size >{self.limits.args_per_request}"
        chars_limit = self.limits.args_chars_per_connection
        if chars_limit is not None and chars_total > chars_limit:
            self.violations["args_chars_per_connection"] += 1
            return f"args length >{chars_limit}"
        return None

    def weight(self, ip: str, now_epoch_s: float, weight: int) -> tuple[bool, int]:
        """Charge ``weight`` to ``ip``: (allowed, weight used this minute)."""
        meter = self.weights.setdefault(ip, MinuteWeight())
        used = meter.add(now_epoch_s, weight)
        self.max_weight_per_minute = max(self.max_weight_per_minute, used)
        limit = self.limits.weight_per_minute
        if limit is not None and used > limit:
            self.violations["request_weight"] += 1
            return False, used
        return True, used

    def used_weight(self, ip: str, now_epoch_s: float) -> int:
        meter = self.weights.get(ip)
        return meter.current(now_epoch_s) if meter else 0
