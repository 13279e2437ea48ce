"""Reading what the publisher wrote: report hashes and the registered-symbol hash.

Every Redis failure becomes a StoreUnavailableError (counted in
context8_mcp_redis_errors_total) so callers answer 503 / a tool error, never crash.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from redis.exceptions import RedisError

from services.mcp.errors import CorruptReportError, StoreUnavailableError
from services.mcp.metrics import REDIS_ERRORS
from services.mcp.read_batch import ReadBatch
from shared import keys
from shared.errors import InvalidSymbolError
from shared.redis_client import RedisClient

log = structlog.get_logger()

#: keys.report(S) is "<head>S<tail>"; SCAN with "<head>*<tail>" finds every report key.
_HEAD, _TAIL = keys.report("SYMBOL").split("SYMBOL")
REPORT_KEY_PATTERN = f"{_HEAD}*{_TAIL}"


@dataclass(frozen=True, slots=True)
class RawReport:
    """The hash fields the reader needs, as stored (bytes)."""

    symbol: str
    json: bytes
    updated_at: bytes | None


@dataclass(frozen=True, slots=True)
class StoredReport:
    symbol: str
    report: dict[str, Any]
    #: Wall-clock ms of the publisher's write; None when unknown.
    write_ms: int | None


def decode_report(raw: RawReport) -> StoredReport:
    """Parse a stored report; CorruptReportError if it is not a JSON object."""
    try:
        report = orjson.loads(raw.json)
    except orjson.JSONDecodeError as exc:
        raise CorruptReportError(f"stored report for {raw.symbol!r} is not valid JSON") from exc
    if not isinstance(report, dict):
        raise CorruptReportError(f"stored report for {raw.symbol!r} is not a JSON object")
    write_ms: int | None = None
    if raw.updated_at is not None:
        try:
            write_ms = int(raw.updated_at)
        except ValueError:
            write_ms = None
    if write_ms is None and isinstance(report.get("updatedAt"), int):
        write_ms = report["updatedAt"]
    return StoredReport(raw.symbol, report, write_ms)


def symbol_from_report_key(key: bytes | str) -> str | None:
    """The symbol of a report key, or None if the key is not a well-formed report key."""
    text = _text(key)
    if not (text.startswith(_HEAD) and text.endswith(_TAIL)) or len(text) <= len(_HEAD + _TAIL):
        return None
    symbol = text[len(_HEAD) : len(text) - len(_TAIL)]
    try:
        return keys.check_symbol(symbol)
    except InvalidSymbolError:
        return None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _bytes(value: bytes | str | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


def _raw_report(symbol: str, row: Sequence[bytes | str | None]) -> RawReport | None:
    """RawReport from an HMGET json, updated_at row (None when there is no report)."""
    json_field = _bytes(row[0])
    return None if json_field is None else RawReport(symbol, json_field, _bytes(row[1]))


class ReportStore:
    """Read-only access to reports and registered symbols."""

    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis
        #: Logged on change only: a Redis outage must not log once per request.
        self._available = True
        self._batch = ReadBatch(self._read_batch)

    @contextmanager
    def _redis_guard(self, what: str) -> Iterator[None]:
        try:
            yield
        except (RedisError, OSError) as exc:
            REDIS_ERRORS.inc()
            if self._available:
                self._available = False
                log.warning("redis_unavailable", during=what, error=str(exc))
            # The client gets the kind of failure, not internal addresses (those are logged).
            raise StoreUnavailableError(
                f"report store (Redis) unavailable while {what} ({type(exc).__name__}); "
                "try again shortly"
            ) from exc
        if not self._available:
            self._available = True
            log.info("redis_available_again")

    @property
    def redis(self) -> RedisClient:
        """The client, for other read-only readers of this store's Redis (history.py)."""
        return self._redis

    def guard(self, what: str) -> AbstractContextManager[None]:
        """Redis errors inside -> StoreUnavailableError (counted, logged on change)."""
        return self._redis_guard(what)

    async def ping(self) -> None:
        with self._redis_guard("pinging"):
            await self._redis.ping()

    async def read(self, symbol: str) -> RawReport | None:
        """One symbol's report. Reads asked for in the same event-loop turn share one
        round trip (``read_batch.ReadBatch``): every caller's read is sent after it asked."""
        return await self._batch.read(symbol)

    async def _read_batch(self, symbols: Sequence[str]) -> list[RawReport | None]:
        if len(symbols) == 1:
            with self._redis_guard(f"reading {symbols[0]}"):
                row = await self._redis.hmget(keys.report(symbols[0]), ["json", "updated_at"])
            return [_raw_report(symbols[0], row)]
        found = await self.read_many(symbols)
        return [found[symbol] for symbol in symbols]

    async def read_many(self, symbols: Sequence[str]) -> dict[str, RawReport | None]:
        """One round trip for all ``symbols`` (pipeline, no transaction: keys differ in slot)."""
        if not symbols:
            return {}
        with self._redis_guard(f"reading {len(symbols)} reports"):
            pipe = self._redis.pipeline(transaction=False)
            for symbol in symbols:
                pipe.hmget(keys.report(symbol), ["json", "updated_at"])
            rows = await pipe.execute()
        return {symbol: _raw_report(symbol, row) for symbol, row in zip(symbols, rows, strict=True)}

    async def registered(self) -> dict[str, dict[str, Any]]:
        """Symbols ingest registered (keys.SYMBOLS) with their info ({} when unreadable)."""
        with self._redis_guard("reading registered symbols"):
            fields = await self._redis.hgetall(keys.SYMBOLS)
        registered: dict[str, dict[str, Any]] = {}
        for raw_symbol, raw_info in fields.items():
            try:
                symbol = keys.check_symbol(_text(raw_symbol))
            except (InvalidSymbolError, UnicodeDecodeError):
                continue
            try:
                info = orjson.loads(raw_info)
            except orjson.JSONDecodeError:
                info = {}
            registered[symbol] = info if isinstance(info, dict) else {}
        return registered

    async def published(self) -> set[str]:
        """Symbols that have a report key (SCAN: cost grows with the keyspace, fine for a few
        thousand keys)."""
        found: set[str] = set()
        with self._redis_guard("listing reports"):
            async for key in self._redis.scan_iter(match=REPORT_KEY_PATTERN, count=1000):
                symbol = symbol_from_report_key(key)
                if symbol is not None:
                    found.add(symbol)
        return found
