"""Who writes each symbol: a claim on ``keys.feed_claim(symbol)``, and hot standbys.

Two processes writing one symbol would interleave two valid-looking streams into one
(trades counted twice), so exactly one process holds each symbol's claim (``SET NX PX``,
value = its node id) and only the holder's writer appends (the append script checks the
claim in the same atomic step, ``stream_append.lua``). Any number of ingest processes
may be configured with the same symbols: each claims what is free and is a **hot
standby** for the rest (connected, parsing, keeping its books, writing nothing).

``ClaimKeeper.run`` every ``tick_s`` (default a tenth of the TTL):

* renews the claims it holds (``lease_renew.lua``, only while still its own) once a
  third of the TTL has passed since the last renewal (one that vanished, e.g. Redis
  restarted without it, is taken again if free); a claim found to be another's is
  **lost**: the symbol is disowned at once (``on_lost``; its queued entries are
  dropped) and the process goes on as a standby for it;
* tries to take every claim it does not hold (``SET NX PX``); one that was free (its
  holder stopped renewing: killed, paused, cut off from Redis; or released it on a
  clean stop) is **acquired**: ``on_acquired`` makes the feed re-sync and write.

A holder's claim therefore lapses at most ``ttl`` after its last renewal, and a standby
takes over at most ``tick_s`` later. Redis errors are logged and retried at the next
tick; a claim outlives an outage shorter than its TTL. On a clean stop ``release``
gives every held claim back, so a standby takes over within one tick.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from shared import keys
from shared.lifecycle import sleep_unless
from shared.redis_client import RedisClient
from shared.scripts import Scripts


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


class ClaimKeeper:
    """The claims of one ingest process (``node_id``) on its symbols."""

    def __init__(
        self,
        redis: RedisClient,
        node_id: str,
        symbols: list[str],
        ttl_s: float,
        log: Any,
        on_acquired: Callable[[str, str], None],
        on_lost: Callable[[str, str], None],
        tick_s: float | None = None,
    ) -> None:
        self._redis = redis
        self._scripts = Scripts(redis)
        self.node_id = node_id
        self.symbols = list(symbols)
        self._ttl_ms = max(int(ttl_s * 1000), 100)
        self.tick_s = tick_s if tick_s is not None else self._ttl_ms / 10_000
        self._log = log
        self._on_acquired = on_acquired
        self._on_lost = on_lost
        self.held: set[str] = set()
        #: Last holder seen of each claim this process does not hold ("" = free).
        self.holders: dict[str, str] = {}
        self._renewed_at = 0.0

    async def step(self) -> None:
        """One pass: renew what is due, take what is free (raises ``RedisError``)."""
        now = time.monotonic()
        held = [s for s in self.symbols if s in self.held]
        if held and now - self._renewed_at >= self._ttl_ms / 3000:
            replies = await self._scripts.pipelined(
                "lease_renew", [([keys.feed_claim(s)], [self.node_id, self._ttl_ms]) for s in held]
            )
            failed = [r for r in replies if isinstance(r, Exception)]
            if failed:
                raise failed[0]
            self._renewed_at = now
            gone = [s for s, renewed in zip(held, replies, strict=True) if not renewed]
            if gone:  # expired (or Redis restarted without it): still ours if free
                pipe = self._redis.pipeline(transaction=False)
                for symbol in gone:
                    pipe.set(keys.feed_claim(symbol), self.node_id, nx=True, px=self._ttl_ms)
                for symbol, taken in zip(gone, await pipe.execute(), strict=True):
                    if not taken:
                        self.lose(symbol, "another process holds the claim")
        free = [s for s in self.symbols if s not in self.held]
        if not free:
            return
        pipe = self._redis.pipeline(transaction=False)
        for symbol in free:
            pipe.set(keys.feed_claim(symbol), self.node_id, nx=True, px=self._ttl_ms)
            pipe.get(keys.feed_claim(symbol))
        replies = await pipe.execute()
        for i, symbol in enumerate(free):
            taken, holder = replies[2 * i], _text(replies[2 * i + 1])
            if taken or holder == self.node_id:
                previous = self.holders.pop(symbol, "")
                self.held.add(symbol)
                self._on_acquired(symbol, previous)
            elif self.holders.get(symbol) != holder:
                self.holders[symbol] = holder
                self._log.info(
                    "standby: symbol claimed by another process", symbol=symbol, holder=holder
                )

    def lose(self, symbol: str, why: str) -> None:
        """The claim is not this process's any more (renewal failed or an append was
        refused): stop writing the symbol, stay a standby for it."""
        if symbol in self.held:
            self.held.discard(symbol)
            self._log.warning("feed claim lost; standing by", symbol=symbol, why=why)
            self._on_lost(symbol, why)

    async def run(self, stop: asyncio.Event) -> None:
        """``step`` every ``tick_s`` until ``stop``."""
        while not stop.is_set():
            try:
                await self.step()
            except (RedisError, OSError) as exc:
                self._log.warning("feed claim pass failed; retrying", error=repr(exc))
            await sleep_unless(stop, self.tick_s)

    async def release(self) -> None:
        """Give up every claim still held (never another process's)."""
        for symbol in list(self.held):
            try:
                await self._scripts(
                    "lease_release", keys=[keys.feed_claim(symbol)], args=[self.node_id]
                )
            except (RedisError, OSError) as exc:
                self._log.warning("feed claim release failed", symbol=symbol, error=repr(exc))
            self.held.discard(symbol)
