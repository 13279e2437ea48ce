"""Push: report-update notifications from Redis to subscribers (MCP and SSE).

The publisher's fenced write announces every accepted report on the sharded pub/sub
channel ``keys.report_updates(SYMBOL)`` (message: the write's ``updated_at``, wall ms).
One ``PushHub`` per process holds one listener: it ``SSUBSCRIBE``s only the channels of
symbols that currently have at least one subscriber (``SUNSUBSCRIBE`` when the last one
leaves), reconnects with back-off when Redis fails, and fans each announcement out to the
subscribers of that symbol.

Per subscriber and symbol, at most one notification per ``min_interval_ms`` (default
250 ms): an update inside the interval is held and the newest held one is delivered when
the interval ends (coalescing: never dropped, only merged). Each subscriber's queue is
bounded; a consumer that lets it fill is dropped (counted, logged) instead of buffering
without limit.

Functional core: ``RateGate`` (pure, unit-tested without Redis). Shell: ``Subscription``
(queue + timers) and ``PushHub`` (listener task, fan-out).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import structlog
from prometheus_client import Counter, Gauge, Histogram
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from shared import keys
from shared.errors import Context8Error
from shared.lifecycle import sleep_unless
from shared.redis_client import RedisClient, discovered

log = structlog.get_logger()

#: Who consumes a subscription: an SSE stream, an MCP ``subscriptions/listen`` stream
#: (2026-07-28), or a legacy MCP session that used ``resources/subscribe``.
Kind = Literal["sse", "mcp_listen", "mcp_legacy"]

SUBSCRIBERS = Gauge(
    "context8_mcp_push_subscribers",
    "Open push subscriptions, by kind (sse, mcp_listen, mcp_legacy).",
    ["kind"],
)
CHANNELS = Gauge(
    "context8_mcp_push_channels",
    "Report-update channels this process is subscribed to (symbols with >= 1 subscriber).",
)
ANNOUNCEMENTS = Counter(
    "context8_mcp_push_announcements_total",
    "Report-update announcements received from Redis (after dropping duplicates).",
)
SENT = Counter(
    "context8_mcp_push_notifications_sent_total",
    "Update notifications delivered to subscribers, by kind.",
    ["kind"],
)
COALESCED = Counter(
    "context8_mcp_push_notifications_coalesced_total",
    "Updates merged into a newer one held for the same subscriber and symbol (rate limit).",
    ["kind"],
)
DROPPED = Counter(
    "context8_mcp_push_subscribers_dropped_total",
    "Subscribers dropped by the server, by kind and reason (slow_consumer: its queue filled).",
    ["kind", "reason"],
)
LATENCY = Histogram(
    "context8_mcp_push_latency_seconds",
    "From the report write (its updated_at) to the notification being sent, by kind.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
REDIS_ERRORS = Counter(
    "context8_mcp_push_redis_errors_total",
    "Failures of the push listener's Redis connection (each one is followed by a reconnect).",
)


class PushCapacityError(Context8Error):
    """This process already serves ``max_subscribers`` subscriptions (HTTP 503)."""


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def monotonic_ms() -> float:
    return time.monotonic() * 1000


@dataclass(frozen=True, slots=True)
class Update:
    """A report write: its symbol and ``updated_at`` (wall-clock ms)."""

    symbol: str
    updated_at_ms: int


# --- functional core ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Deliver the update now."""


@dataclass(frozen=True, slots=True)
class Hold:
    """Hold the update; deliver the newest held one at ``due_ms``."""

    due_ms: float


@dataclass(frozen=True, slots=True)
class Merged:
    """Merged into the update already held for the symbol (due as before)."""


Offer = Send | Hold | Merged


class RateGate:
    """One subscriber's rate limit: at most one delivery per symbol per ``interval_ms``.

    Pure state over plain data; the caller passes the (monotonic) time in.
    """

    def __init__(self, interval_ms: float) -> None:
        self.interval_ms = interval_ms
        self._last_sent: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def offer(self, update: Update, now_ms: float) -> Offer:
        symbol = update.symbol
        if symbol in self._held:
            self._held[symbol] = max(self._held[symbol], update.updated_at_ms)
            return Merged()
        last = self._last_sent.get(symbol)
        if last is None or now_ms - last >= self.interval_ms:
            self._last_sent[symbol] = now_ms
            return Send()
        self._held[symbol] = update.updated_at_ms
        return Hold(last + self.interval_ms)

    def release(self, symbol: str, now_ms: float) -> Update | None:
        """The held update of ``symbol`` if its interval is over (then counted as sent)."""
        if symbol not in self._held:
            return None
        last = self._last_sent.get(symbol)
        if last is not None and now_ms - last < self.interval_ms:
            return None
        self._last_sent[symbol] = now_ms
        return Update(symbol, self._held.pop(symbol))

    def forget(self, symbol: str) -> None:
        self._last_sent.pop(symbol, None)
        self._held.pop(symbol, None)

    def held(self) -> dict[str, int]:
        return dict(self._held)


def parse_announcement(data: bytes | str) -> int | None:
    """The ``updated_at`` ms of an announcement message, or None if it is not one."""
    try:
        value = int(data)
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


# --- shell ---------------------------------------------------------------------------


class Subscription:
    """One consumer's view of the hub: iterate it for ``Update``s (ends when closed).

    Call ``delivered(update)`` after sending each one (counts it, measures latency).
    """

    def __init__(
        self,
        hub: PushHub,
        kind: Kind,
        interval_ms: float,
        max_queue: int,
    ) -> None:
        self.hub = hub
        self.kind: Kind = kind
        self.symbols: set[str] = set()
        self.closed_reason: str | None = None
        self._gate = RateGate(interval_ms)
        self._queue: deque[Update] = deque()
        self._max_queue = max_queue
        self._wakeup = asyncio.Event()
        self._timers: dict[str, asyncio.TimerHandle] = {}

    @property
    def closed(self) -> bool:
        return self.closed_reason is not None

    def offer(self, update: Update) -> None:
        """Called by the hub for every new update of one of ``symbols``."""
        if self.closed:
            return
        decision = self._gate.offer(update, self.hub.clock())
        if isinstance(decision, Send):
            self._enqueue(update)
        elif isinstance(decision, Hold):
            loop = asyncio.get_running_loop()
            delay_s = max(0.0, (decision.due_ms - self.hub.clock()) / 1000)
            self._timers[update.symbol] = loop.call_later(delay_s, self._release, update.symbol)
        else:
            COALESCED.labels(self.kind).inc()

    def _release(self, symbol: str) -> None:
        self._timers.pop(symbol, None)
        if self.closed:
            return
        update = self._gate.release(symbol, self.hub.clock())
        if update is None:  # timer fired a hair early: try again at the due time
            loop = asyncio.get_running_loop()
            self._timers[symbol] = loop.call_later(0.005, self._release, symbol)
            return
        self._enqueue(update)

    def _enqueue(self, update: Update) -> None:
        if len(self._queue) >= self._max_queue:
            DROPPED.labels(self.kind, "slow_consumer").inc()
            log.warning(
                "push_subscriber_dropped",
                kind=self.kind,
                reason="slow_consumer",
                queued=len(self._queue),
                symbols=sorted(self.symbols)[:10],
            )
            self.hub.unsubscribe(self, reason="slow_consumer")
            return
        self._queue.append(update)
        self._wakeup.set()

    def forget(self, symbol: str) -> None:
        timer = self._timers.pop(symbol, None)
        if timer is not None:
            timer.cancel()
        self._gate.forget(symbol)
        self._queue = deque(u for u in self._queue if u.symbol != symbol)

    def _close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed_reason = reason
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._queue.clear()
        self._wakeup.set()

    async def next(self, timeout: float | None = None) -> Update | None:
        """The next update; None when closed or (with ``timeout``) when none came in time."""
        while not self._queue and not self.closed:
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout)
            except TimeoutError:
                return None
        if self.closed:
            return None
        return self._queue.popleft()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Update:
        update = await self.next()
        if update is None:
            raise StopAsyncIteration
        return update

    def delivered(self, update: Update) -> None:
        SENT.labels(self.kind).inc()
        LATENCY.labels(self.kind).observe(max(0, self.hub.wall() - update.updated_at_ms) / 1000)

    def close(self) -> None:
        """Stop receiving (idempotent); the consumer's iteration ends."""
        self.hub.unsubscribe(self, reason="closed")

    async def add(self, symbols: Iterable[str], timeout: float | None = None) -> bool:
        """Also receive ``symbols``; waits (up to ``timeout``, default the hub's) until the
        listener is subscribed to them. False if it is not yet (Redis down): updates then
        start once it reconnects."""
        new = set(symbols) - self.symbols
        self.hub._add(self, new)
        return await self.hub.wait_listening(self.symbols, timeout)

    def remove(self, symbols: Iterable[str]) -> None:
        self.hub._remove(self, set(symbols) & self.symbols)


class PushHub:
    """One per process: the Redis listener and the fan-out to ``Subscription``s."""

    def __init__(
        self,
        redis: RedisClient,
        *,
        min_interval_ms: float = 250,
        max_queue: int = 256,
        max_subscribers: int = 10_000,
        subscribe_timeout_s: float = 2.0,
        poll_s: float = 0.1,
        clock: Callable[[], float] = monotonic_ms,
        wall: Callable[[], int] = wall_ms,
    ) -> None:
        self._redis = redis
        self.min_interval_ms = min_interval_ms
        self.max_queue = max_queue
        self.max_subscribers = max_subscribers
        self._open = 0
        self.subscribe_timeout_s = subscribe_timeout_s
        self._poll_s = poll_s
        self.clock = clock
        self.wall = wall
        self._by_symbol: dict[str, set[Subscription]] = {}
        self._last_seen: dict[str, int] = {}
        #: Symbols whose channel the listener has confirmed (SSUBSCRIBE reply read).
        self._listening: set[str] = set()
        self._listening_changed = asyncio.Event()
        self._wanted_changed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    # --- lifecycle ---

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="mcp-push-listener")

    def close_subscribers(self) -> None:
        """End every subscription (shutdown: SSE and listen streams finish cleanly) and
        refuse new ones."""
        self._closing = True
        for subs in list(self._by_symbol.values()):
            for sub in list(subs):
                self.unsubscribe(sub, reason="shutdown")

    async def stop(self) -> None:
        self.close_subscribers()
        self._stopping.set()
        self._wanted_changed.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def at_capacity(self) -> bool:
        return self._open >= self.max_subscribers

    # --- subscriptions ---

    def subscription(self, kind: Kind) -> Subscription:
        """A new, empty subscription (add symbols with ``Subscription.add``); raises
        ``PushCapacityError`` when ``max_subscribers`` are open."""
        if self._open >= self.max_subscribers:
            raise PushCapacityError(
                f"too many open subscriptions on this server ({self.max_subscribers}); "
                "try again later or another replica"
            )
        sub = Subscription(self, kind, self.min_interval_ms, self.max_queue)
        if self._closing:
            sub._close("shutdown")
        else:
            self._open += 1
            SUBSCRIBERS.labels(kind).inc()
        return sub

    async def open(
        self, kind: Kind, symbols: Iterable[str], timeout: float | None = None
    ) -> Subscription:
        """A subscription to ``symbols``, listening once this returns (if Redis is up)."""
        sub = self.subscription(kind)
        await sub.add(symbols, timeout)
        return sub

    def _add(self, sub: Subscription, symbols: set[str]) -> None:
        if sub.closed or not symbols:
            return
        sub.symbols |= symbols
        for symbol in symbols:
            if symbol not in self._by_symbol:
                self._by_symbol[symbol] = set()
                self._wanted_changed.set()
            self._by_symbol[symbol].add(sub)

    def _remove(self, sub: Subscription, symbols: set[str]) -> None:
        for symbol in symbols:
            sub.symbols.discard(symbol)
            sub.forget(symbol)
            subs = self._by_symbol.get(symbol)
            if subs is None:
                continue
            subs.discard(sub)
            if not subs:
                del self._by_symbol[symbol]
                # A later first subscriber starts from the report as it is then.
                self._last_seen.pop(symbol, None)
                self._wanted_changed.set()

    def unsubscribe(self, sub: Subscription, *, reason: str) -> None:
        if sub.closed:
            return
        self._remove(sub, set(sub.symbols))
        sub._close(reason)
        self._open -= 1
        SUBSCRIBERS.labels(sub.kind).dec()

    async def wait_listening(self, symbols: Iterable[str], timeout: float | None = None) -> bool:
        wanted = set(symbols)
        deadline = time.monotonic() + (self.subscribe_timeout_s if timeout is None else timeout)
        while not wanted <= self._listening:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._listening_changed.clear()
            try:
                await asyncio.wait_for(self._listening_changed.wait(), remaining)
            except TimeoutError:
                return wanted <= self._listening
        return True

    def subscriber_count(self, symbol: str | None = None) -> int:
        if symbol is not None:
            return len(self._by_symbol.get(symbol, ()))
        return len({sub for subs in self._by_symbol.values() for sub in subs})

    # --- fan-out ---

    def dispatch(self, update: Update) -> None:
        """Hand a new report write to the symbol's subscribers (older/duplicate: ignored)."""
        if update.symbol not in self._by_symbol:
            return  # a late message of a channel being left
        if update.updated_at_ms <= self._last_seen.get(update.symbol, 0):
            return
        self._last_seen[update.symbol] = update.updated_at_ms
        ANNOUNCEMENTS.inc()
        for sub in list(self._by_symbol.get(update.symbol, ())):
            sub.offer(update)

    # --- the Redis listener ---

    def _set_listening(self, symbols: set[str]) -> None:
        self._listening = symbols
        CHANNELS.set(len(symbols))
        self._listening_changed.set()

    async def _run(self) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            try:
                await self._listen()
                return
            except (RedisError, OSError) as exc:
                REDIS_ERRORS.inc()
                self._set_listening(set())
                log.warning("push_listener_redis_error", error=str(exc), retry_in_s=backoff)
            except Exception:  # a bug must not end push for the life of the process
                self._set_listening(set())
                log.exception("push_listener_failed", retry_in_s=backoff)
            await sleep_unless(self._stopping, backoff)
            backoff = min(backoff * 2, 5.0)

    async def _listen(self) -> None:
        client = await discovered(self._redis)
        cluster = isinstance(client, RedisCluster)
        pubsub = client.pubsub()
        channel_symbol: dict[bytes, str] = {}
        subscribed: set[str] = set()  # SSUBSCRIBE sent
        confirmed: set[str] = set()  # its reply read
        try:
            while not self._stopping.is_set():
                self._wanted_changed.clear()
                wanted = set(self._by_symbol)
                add, drop = wanted - subscribed, subscribed - wanted
                if drop:
                    await pubsub.sunsubscribe(*[keys.report_updates(s) for s in drop])
                    subscribed -= drop
                    confirmed -= drop
                    self._set_listening(set(confirmed))
                if add:
                    for symbol in add:
                        channel_symbol[keys.report_updates(symbol).encode()] = symbol
                    await pubsub.ssubscribe(*[keys.report_updates(s) for s in add])
                    subscribed |= add
                if not subscribed:
                    await self._wait_for_wanted()
                    continue
                message = await _next_message(pubsub, cluster, self._poll_s)
                if message is None:
                    continue
                kind = _text(message.get("type"))
                about = channel_symbol.get(_bytes(message.get("channel")))
                if about is None:
                    continue
                if kind == "ssubscribe" and about in subscribed:
                    confirmed.add(about)
                    # Writes between our last message and this subscription were not
                    # announced to us: read where each report is now.
                    await self._catch_up([about])
                    self._set_listening(set(confirmed))
                elif kind == "smessage":
                    updated_at = parse_announcement(message.get("data") or b"")
                    if updated_at is not None:
                        self.dispatch(Update(about, updated_at))
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def _wait_for_wanted(self) -> None:
        stop = asyncio.ensure_future(self._stopping.wait())
        wanted = asyncio.ensure_future(self._wanted_changed.wait())
        try:
            await asyncio.wait({stop, wanted}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            wanted.cancel()

    async def _catch_up(self, symbols: list[str]) -> None:
        """After a (re)subscribe: an update missed while not listening is delivered now;
        for a first subscription it only records where the report is."""
        for symbol in symbols:
            raw = await self._redis.hget(keys.report(symbol), "updated_at")
            updated_at = parse_announcement(raw) if raw is not None else None
            if updated_at is None:
                continue
            if symbol in self._last_seen:
                self.dispatch(Update(symbol, updated_at))
            else:
                self._last_seen[symbol] = updated_at


async def _next_message(pubsub: Any, cluster: bool, timeout: float) -> dict[str, Any] | None:
    if cluster:
        message = await pubsub.get_sharded_message(timeout=timeout)
    else:
        message = await pubsub.get_message(timeout=timeout)
    return message if isinstance(message, dict) else None


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)


def _bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode()
