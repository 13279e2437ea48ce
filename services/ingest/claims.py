"""One ingest process per symbol: a claim on ``keys.feed_claim(symbol)`` while it runs.

Ingest scales out by giving each process its own symbols. Two processes on the same
symbol would interleave two valid-looking streams into one (trades counted twice), so
each process claims its symbols at start-up (``SET NX PX``), renews the claims every
third of their TTL (``lease_renew.lua``: only while still its own) and releases them
on a clean stop (``lease_release.lua``). A claim still held by another process at
start-up is waited for up to ``wait_s`` (the previous process may have died without
releasing it; its claim then expires) and is then a clear start-up error naming the
holder. A claim lost while running (another process took it after this one stalled
past the TTL) stops the service: it must not keep writing next to the new owner.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared import keys
from shared.errors import ConfigError
from shared.scripts import Scripts


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


class ClaimLost(Exception):
    """A symbol's claim is no longer this process's."""


class FeedClaims:
    """The claims of one ingest process (``node_id``) on its symbols."""

    def __init__(
        self, redis: Redis, node_id: str, symbols: list[str], ttl_s: float, log: Any
    ) -> None:
        self._redis = redis
        self._scripts = Scripts(redis)
        self.node_id = node_id
        self.symbols = list(symbols)
        self._ttl_ms = max(int(ttl_s * 1000), 100)
        self._log = log

    async def acquire(self, wait_s: float, stop: asyncio.Event | None = None) -> bool:
        """Claim every symbol, waiting up to ``wait_s`` for claims held by others.

        False if ``stop`` was set while waiting. Raises ``ConfigError`` naming the
        holders of the claims still held after ``wait_s``.
        """
        deadline = time.monotonic() + wait_s
        pending = list(self.symbols)
        warned = False
        while True:
            holders: dict[str, str] = {}
            for symbol in pending:
                key = keys.feed_claim(symbol)
                if await self._redis.set(key, self.node_id, nx=True, px=self._ttl_ms):
                    continue
                holder = _text(await self._redis.get(key))
                if holder == self.node_id:
                    continue
                holders[symbol] = holder  # "": expired between the two calls, try again
            pending = list(holders)
            if not pending:
                return True
            if stop is not None and stop.is_set():
                return False
            if time.monotonic() >= deadline:
                taken = ", ".join(f"{s} by {n or '?'}" for s, n in holders.items())
                raise ConfigError(
                    f"symbols already ingested by another process: {taken} "
                    f"({keys.feed_claim(pending[0])}); give each ingest process its own "
                    "symbols (C8_INGEST_LIVE_SYMBOLS / C8_INGEST_REPLAY_FILES)"
                )
            if not warned:
                warned = True
                self._log.warning(
                    "symbols claimed by another ingest process; waiting for the claims "
                    "to be released or to expire",
                    holders=holders,
                    wait_s=wait_s,
                )
            await asyncio.sleep(min(0.25, self._ttl_ms / 4000))

    async def keep(self) -> None:
        """Renew every claim each third of the TTL; raise ``ClaimLost`` if one is gone.

        A claim that vanished (Redis restarted without it) is taken again if free.
        Redis errors are retried at the next renewal: the claim outlives a short outage.
        """
        while True:
            await asyncio.sleep(self._ttl_ms / 3000)
            for symbol in self.symbols:
                key = keys.feed_claim(symbol)
                try:
                    renewed = await self._scripts(
                        "lease_renew", keys=[key], args=[self.node_id, self._ttl_ms]
                    )
                    if renewed:
                        continue
                    if await self._redis.set(key, self.node_id, nx=True, px=self._ttl_ms):
                        continue
                    holder = _text(await self._redis.get(key))
                except (RedisError, OSError) as exc:
                    self._log.warning("feed claim renewal failed", symbol=symbol, error=repr(exc))
                    continue
                raise ClaimLost(f"{symbol} is now claimed by {holder or '?'}")

    async def release(self) -> None:
        """Give up every claim still held (never another process's)."""
        for symbol in self.symbols:
            try:
                await self._scripts(
                    "lease_release", keys=[keys.feed_claim(symbol)], args=[self.node_id]
                )
            except (RedisError, OSError) as exc:
                self._log.warning("feed claim release failed", symbol=symbol, error=repr(exc))
