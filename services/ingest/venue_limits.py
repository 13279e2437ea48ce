"""Venue connection/request limits and back-off for live mode (no I/O of its own).

What Nautilus 1.221's clients already do, and what is added here:

* **Reconnects.** Nautilus's Rust ``WebSocketClient`` reconnects by itself with
  exponential back-off (2 s initial, x1.5, capped at 30 s, 100 ms jitter) and calls the
  adapter back; the Binance adapter then re-sends one subscribe message per connection
  for all its streams and the Bybit adapter re-subscribes in requests of at most 10
  topics. Ingest counts each reconnect (``context8_ingest_reconnects_total{venue}``)
  and schedules the book re-sync itself (below).
* **Subscribe rate.** Binance accepts at most 5 incoming messages per second per
  connection (more gets the connection dropped); Nautilus's Binance client sends one
  subscribe message per stream with no pacing. Ingest paces every message sent on a
  venue connection with ``SlidingWindowLimiter`` (default 4 per second per connection,
  Bybit included, whose public limits are looser).
* **New connections.** Binance allows 300 connection attempts per 5 minutes per IP;
  new connections opened from Python are paced to 250 per 5 minutes process-wide.
* **Book re-syncs** (REST depth snapshot on Binance, unsubscribe + subscribe on Bybit)
  after a gap or a reconnect go through ``ResyncBackoff``: at most one in flight per
  instrument, the first after a healthy spell immediately, repeated ones with
  exponential back-off and full jitter, capped. REST depth weight is then bounded too
  (Binance futures ``depth?limit=1000`` costs 20 of the 2,400/min IP weight).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable

#: Binance: 5 incoming messages/s per connection; stay one below.
MESSAGES_PER_SECOND = 4
#: Binance: 300 connection attempts per 5 min per IP; keep a margin.
CONNECTIONS_PER_WINDOW = 250
CONNECTION_WINDOW_S = 300.0


class SlidingWindowLimiter:
    """At most ``limit`` events in any ``window_s`` seconds; ``acquire`` waits for a slot."""

    def __init__(
        self,
        limit: int,
        window_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("limit must be >= 1 and window_s > 0")
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._times: deque[float] = deque()
        self._lock = asyncio.Lock()

    def delay(self) -> float:
        """Seconds until one more event fits in the window (0 = now)."""
        now = self._clock()
        while self._times and now - self._times[0] >= self.window_s:
            self._times.popleft()
        if len(self._times) < self.limit:
            return 0.0
        return self._times[0] + self.window_s - now

    def record(self) -> None:
        self._times.append(self._clock())

    async def acquire(self) -> float:
        """Wait for a slot and take it; returns how long it waited."""
        waited = 0.0
        async with self._lock:  # FIFO: callers are served in order
            while (wait := self.delay()) > 0:
                waited += wait
                await asyncio.sleep(wait)
            self.record()
        return waited


class ResyncBackoff:
    """When the next book re-sync of one instrument may start.

    ``next_delay()`` is 0 for the first request after ``reset_after_s`` without one,
    then ``base_s * 2**(n-1)`` capped at ``cap_s`` for the n-th request in a row, with
    full jitter (uniform in [delay/2, delay]) so many symbols do not retry in lockstep.
    """

    def __init__(
        self,
        base_s: float = 1.0,
        cap_s: float = 60.0,
        reset_after_s: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self.reset_after_s = reset_after_s
        self._clock = clock
        self._rng = rng
        self.attempts = 0
        self._last: float | None = None
        self.in_flight = False

    def next_delay(self) -> float:
        now = self._clock()
        if self._last is not None and now - self._last >= self.reset_after_s:
            self.attempts = 0
        self._last = now
        self.attempts += 1
        if self.attempts == 1:
            return 0.0
        ceiling = min(self.cap_s, self.base_s * 2 ** (self.attempts - 2))
        return ceiling * (0.5 + 0.5 * self._rng())


class RestBudget:
    """Request weight per rolling minute to one venue host, and the venue's stop orders.

    ``acquire(weight)`` waits until ``weight`` more fits in the last ``window_s`` and no
    ``Retry-After`` (HTTP 429/418) is pending; ``back_off(s)`` records such an order.
    Shared by every request of a venue client, so a burst of re-syncs (many symbols
    after a reconnect) is spread out instead of tripping the venue's limit.
    """

    def __init__(
        self,
        weight_per_window: int,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if weight_per_window < 1 or window_s <= 0:
            raise ValueError("weight_per_window must be >= 1 and window_s > 0")
        self.limit = weight_per_window
        self.window_s = window_s
        self._clock = clock
        self._spent: deque[tuple[float, int]] = deque()
        self._total = 0
        self.blocked_until = 0.0
        self._lock = asyncio.Lock()

    def used(self) -> int:
        """Weight spent in the current window."""
        now = self._clock()
        while self._spent and now - self._spent[0][0] >= self.window_s:
            self._total -= self._spent.popleft()[1]
        return self._total

    def delay(self, weight: int) -> float:
        """Seconds until ``weight`` may be spent (0 = now)."""
        now = self._clock()
        wait = max(0.0, self.blocked_until - now)
        used = self.used()
        if used + weight > self.limit and self._spent:
            # Wait for enough of the oldest spending to leave the window.
            need = used + weight - self.limit
            freed = 0
            for at, spent in self._spent:
                freed += spent
                if freed >= need:
                    wait = max(wait, at + self.window_s - now)
                    break
        return wait

    def record(self, weight: int) -> None:
        self._spent.append((self._clock(), weight))
        self._total += weight

    async def acquire(self, weight: int) -> float:
        """Wait for room and spend ``weight``; returns how long it waited."""
        waited = 0.0
        async with self._lock:  # FIFO: requests are served in order
            while (wait := self.delay(weight)) > 0:
                waited += wait
                await asyncio.sleep(wait)
            self.record(weight)
        return waited

    def back_off(self, seconds: float) -> None:
        """The venue said to stop for ``seconds`` (``Retry-After``)."""
        self.blocked_until = max(self.blocked_until, self._clock() + max(seconds, 0.0))
