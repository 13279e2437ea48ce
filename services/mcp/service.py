"""The read API's one implementation, shared by MCP tools, resources and HTTP routes.

A thin shell: read from the store, decode, apply read-time freshness (pure), count.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from services.mcp.errors import CorruptReportError, ReportNotPublishedError, TooManySymbolsError
from services.mcp.freshness import FreshnessPolicy, serve_report
from services.mcp.metrics import REPORT_WRITE_AGE, REPORTS_SERVED
from services.mcp.schemas import SymbolFreshness, SymbolList, SymbolStatus
from services.mcp.store import RawReport, ReportStore, StoredReport, decode_report
from shared import keys
from shared.errors import InvalidSymbolError, UnknownSymbolError
from shared.report import iso_utc_from_ns

log = structlog.get_logger()


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def normalize_symbol(raw: str) -> str:
    """Case-insensitive symbol input: ' btcusdt ' -> 'BTCUSDT'; InvalidSymbolError if not A-Z0-9."""
    try:
        return keys.check_symbol(raw.strip().upper())
    except InvalidSymbolError:
        raise InvalidSymbolError(
            f"invalid symbol {raw!r}: expected 1-40 letters A-Z and digits 0-9 "
            "(case-insensitive), e.g. 'BTCUSDT'"
        ) from None


class ReportService:
    """get_report / get_reports / list_symbols / health over a ReportStore."""

    def __init__(
        self,
        store: ReportStore,
        policy: FreshnessPolicy,
        *,
        max_batch: int = 50,
        clock: Callable[[], int] = wall_ms,
    ) -> None:
        self.store = store
        self.policy = policy
        self.max_batch = max_batch
        self._clock = clock

    async def known_symbols(self) -> list[str]:
        """Registered by ingest (keys.SYMBOLS) or with a report, sorted."""
        registered = await self.store.registered()
        return sorted(set(registered) | await self.store.published())

    async def _missing(self, symbol: str) -> UnknownSymbolError:
        known = await self.known_symbols()
        if symbol in known:
            return ReportNotPublishedError(symbol, known)
        return UnknownSymbolError(symbol, known)

    def _serve(self, stored: StoredReport, now_ms: int) -> dict[str, Any]:
        served = serve_report(stored.report, stored.write_ms, now_ms, self.policy)
        REPORTS_SERVED.labels(served["ingestion"]["status"]).inc()
        if served["report_write_age_ms"] is not None:
            REPORT_WRITE_AGE.observe(served["report_write_age_ms"] / 1000)
        return served

    def _decode(self, raw: RawReport) -> StoredReport:
        try:
            return decode_report(raw)
        except CorruptReportError as exc:
            log.warning("corrupt_report", symbol=raw.symbol, error=str(exc))
            raise

    async def get_report(self, raw_symbol: str) -> dict[str, Any]:
        """The served report of one symbol (raises Invalid/UnknownSymbolError,
        StoreUnavailableError, CorruptReportError)."""
        symbol = normalize_symbol(raw_symbol)
        raw = await self.store.read(symbol)
        if raw is None:
            raise await self._missing(symbol)
        return self._serve(self._decode(raw), self._clock())

    async def get_reports(self, raw_symbols: Sequence[str] | None = None) -> dict[str, Any]:
        """Several reports at once; per-symbol problems go to ``errors``, not an exception.

        No symbols (None or empty): every known symbol.
        """
        errors: list[dict[str, str]] = []
        symbols: list[str] = []
        if raw_symbols:
            if len(raw_symbols) > self.max_batch:
                raise TooManySymbolsError(
                    f"{len(raw_symbols)} symbols requested; at most {self.max_batch} per call"
                )
            for raw_symbol in raw_symbols:
                try:
                    symbol = normalize_symbol(raw_symbol)
                except InvalidSymbolError as invalid:
                    errors.append(_error(raw_symbol, "invalid_symbol", invalid))
                    continue
                if symbol not in symbols:
                    symbols.append(symbol)
        else:
            symbols = await self.known_symbols()
        raws = await self.store.read_many(symbols)
        now_ms = self._clock()
        reports: list[dict[str, Any]] = []
        known: list[str] | None = None
        for symbol in symbols:
            raw = raws[symbol]
            if raw is None:
                known = known if known is not None else await self.known_symbols()
                missing = (
                    ReportNotPublishedError(symbol, known)
                    if symbol in known
                    else UnknownSymbolError(symbol, known)
                )
                errors.append(_error(symbol, "unknown_symbol", missing))
                continue
            try:
                reports.append(self._serve(self._decode(raw), now_ms))
            except CorruptReportError as corrupt:
                errors.append(_error(symbol, "corrupt", corrupt))
        served_at = iso_utc_from_ns(now_ms * 1_000_000)
        return {"served_at": served_at, "reports": reports, "errors": errors}

    async def list_symbols(self) -> SymbolList:
        """Every known symbol with the status its report would be served with now."""
        registered = await self.store.registered()
        symbols = sorted(set(registered) | await self.store.published())
        raws = await self.store.read_many(symbols)
        now_ms = self._clock()
        rows: list[SymbolStatus] = []
        for symbol in symbols:
            info = registered.get(symbol, {})
            raw = raws[symbol]
            served: dict[str, Any] | None = None
            status: SymbolFreshness = "no_report"
            if raw is not None:
                try:
                    stored = self._decode(raw)
                except CorruptReportError:
                    status = "down"  # it exists but cannot be served
                else:
                    served = serve_report(stored.report, stored.write_ms, now_ms, self.policy)
                    status = served["ingestion"]["status"]
            venue = info.get("venue") or (served or {}).get("venue")
            rows.append(
                SymbolStatus(
                    symbol=symbol,
                    venue=venue if isinstance(venue, str) else None,
                    market=info.get("market") if isinstance(info.get("market"), str) else None,
                    status=status,
                    data_age_ms=served["data_age_ms"] if served else None,
                    report_write_age_ms=served["report_write_age_ms"] if served else None,
                    generated_at=_str_or_none(served.get("generated_at")) if served else None,
                )
            )
        return SymbolList(
            served_at=iso_utc_from_ns(now_ms * 1_000_000),
            stale_after_ms=self.policy.stale_after_ms,
            down_after_ms=self.policy.down_after_ms,
            symbols=rows,
        )

    async def check_health(self) -> None:
        """Raises StoreUnavailableError when Redis does not answer."""
        await self.store.ping()


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _error(symbol: str, status: str, exc: Exception) -> dict[str, str]:
    return {"symbol": symbol, "status": status, "error": str(exc)}
