"""The read API's one implementation, shared by MCP tools, resources and HTTP routes.

A thin shell: read from the store, decode, apply read-time freshness (pure), count.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import structlog
from prometheus_client import Counter

from services.mcp.errors import (
    CorruptReportError,
    ReportNotPublishedError,
    TooManySymbolsError,
)
from services.mcp.freshness import FreshnessPolicy, serve_report
from services.mcp.metrics import REPORT_WRITE_AGE, REPORTS_SERVED
from services.mcp.schemas import SymbolFreshness, SymbolList, SymbolStatus
from services.mcp.sections import MAX_REPORT_BYTES, capped, check_sections, select
from services.mcp.store import RawReport, ReportStore, StoredReport, decode_report
from shared import keys
from shared.errors import InvalidSymbolError, UnknownSymbolError
from shared.report import iso_utc_from_ns

log = structlog.get_logger()


def server_version() -> str:
    """context8's installed version ("dev" from a plain checkout)."""
    try:
        return version("context8")
    except PackageNotFoundError:
        return "dev"


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


#: Most symbols one list_symbols answer carries (~200 bytes each: <= ~100 KB).
LIST_PAGE = 500

#: Longest symbol input worth looking at (a symbol is at most 40 characters).
MAX_SYMBOL_INPUT = 64

#: Most a served report's JSON grows over its stored bytes (served_at,
#: report_write_age_ms, a downgrade's reason, ...: ~300 bytes), with room to spare. The
#: stored bytes are compact orjson (calc's candidate as the publisher stores it), the same
#: encoding the answer gets, so re-encoding adds nothing else.
SERVE_GROWTH_BYTES = 1024

#: Most symbols whose last decoded report is kept (then the cache starts over).
MAX_DECODED = 10_000

#: REPORTS_SERVED's child per status, looked up once (it is on every read's path).
_SERVED_BY_STATUS: dict[str, Counter] = {}


def normalize_symbol(raw: object) -> str:
    """Case-insensitive symbol input: ' btcusdt ' -> 'BTCUSDT'; InvalidSymbolError if not A-Z0-9.

    ASCII is checked before upper-casing: Unicode case mapping would turn 'btcuſdt' (long
    s) into 'BTCUSDT' and answer for a symbol the client never named.
    """
    text = raw.strip() if isinstance(raw, str) else None
    if text is not None and text.isascii():
        try:
            return keys.check_symbol(text.upper())
        except InvalidSymbolError:
            pass
    shown = (
        repr(raw[:MAX_SYMBOL_INPUT]) + ("…" if len(raw) > MAX_SYMBOL_INPUT else "")
        if isinstance(raw, str)
        else type(raw).__name__
    )
    raise InvalidSymbolError(
        f"invalid symbol {shown}: expected 1-40 ASCII letters A-Z and digits 0-9 "
        "(case-insensitive), e.g. 'BTCUSDT'"
    )


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
        #: symbol -> its last decoded report and the stored bytes it came from.
        self._decoded: dict[str, tuple[RawReport, StoredReport]] = {}

    async def known_symbols(self) -> list[str]:
        """Registered by ingest (keys.SYMBOLS) or with a report, sorted."""
        return (await self._registered_and_known())[1]

    async def _registered_and_known(self) -> tuple[dict[str, dict[str, Any]], list[str]]:
        """Ingest's registrations (with their info) and every known symbol, sorted."""
        registered = await self.store.registered()
        return registered, sorted(set(registered) | await self.store.published())

    async def _missing(self, symbol: str) -> UnknownSymbolError:
        known = await self.known_symbols()
        if symbol in known:
            return ReportNotPublishedError(symbol, known)
        return UnknownSymbolError(symbol, known)

    def _serve(self, stored: StoredReport, now_ms: int, stored_size: int) -> dict[str, Any]:
        served = serve_report(stored.report, stored.write_ms, now_ms, self.policy)
        if stored_size > MAX_REPORT_BYTES - SERVE_GROWTH_BYTES:
            served = capped(served)  # (else it fits: no encoding just to measure it)
        status = served["ingestion"]["status"]
        counter = _SERVED_BY_STATUS.get(status)
        if counter is None:
            counter = _SERVED_BY_STATUS[status] = REPORTS_SERVED.labels(status)
        counter.inc()
        if served["report_write_age_ms"] is not None:
            REPORT_WRITE_AGE.observe(served["report_write_age_ms"] / 1000)
        return served

    def _decode(self, raw: RawReport) -> StoredReport:
        """The parsed report; the last parse of each symbol is reused while its stored
        bytes are the same (a report is rewritten at most 4 times a second and read far
        more often). Nothing downstream modifies a decoded report (serve_report copies)."""
        last = self._decoded.get(raw.symbol)
        if last is not None and last[0] == raw:
            return last[1]
        try:
            stored = decode_report(raw)
        except CorruptReportError as exc:
            log.warning("corrupt_report", symbol=raw.symbol, error=str(exc))
            raise
        if len(self._decoded) >= MAX_DECODED:
            self._decoded.clear()
        self._decoded[raw.symbol] = (raw, stored)
        return stored

    async def get_report(
        self, raw_symbol: str, sections: Sequence[object] | None = None
    ) -> dict[str, Any]:
        """The served report of one symbol, whole or only ``sections`` (raises
        Invalid/UnknownSymbolError, UnknownSectionError, StoreUnavailableError,
        CorruptReportError)."""
        symbol = normalize_symbol(raw_symbol)
        wanted = check_sections(sections or ())
        raw = await self.store.read(symbol)
        if raw is None:
            raise await self._missing(symbol)
        return select(self._serve(self._decode(raw), self._clock(), len(raw.json)), wanted)

    async def get_reports(
        self, raw_symbols: Sequence[str] | None = None, cursor: str | None = None
    ) -> dict[str, Any]:
        """Several reports at once; per-symbol problems go to ``errors``, not an exception.

        Named symbols: at most ``max_batch`` distinct ones (duplicates count once).
        No symbols (None or empty): every known symbol, a page of at most ``max_batch``
        at a time, in symbol order after ``cursor``; ``next_cursor`` continues (null at
        the end) and ``total`` counts them all.
        """
        errors: list[dict[str, str]] = []
        symbols: list[str] = []
        page: dict[str, Any] = {}
        # Checked even beside symbols (where it has no effect), so a bad cursor never passes.
        after = "" if cursor is None else normalize_symbol(cursor)
        if raw_symbols:
            seen: set[object] = set()
            for raw_symbol in raw_symbols:
                try:
                    symbol = normalize_symbol(raw_symbol)
                except InvalidSymbolError as invalid:
                    if raw_symbol not in seen:
                        seen.add(raw_symbol)
                        errors.append(
                            _error(str(raw_symbol)[:MAX_SYMBOL_INPUT], "invalid_symbol", invalid)
                        )
                    continue
                if symbol not in symbols:
                    symbols.append(symbol)
            if len(symbols) + len(errors) > self.max_batch:
                raise TooManySymbolsError(
                    f"{len(symbols) + len(errors)} distinct symbols requested; at most "
                    f"{self.max_batch} per call"
                )
        else:
            known = await self.known_symbols()
            rest = [s for s in known if s > after]
            symbols = rest[: self.max_batch]
            more = len(rest) > len(symbols)
            page = {"total": len(known), "next_cursor": symbols[-1] if more else None}
        raws = await self.store.read_many(symbols)
        now_ms = self._clock()
        reports: list[dict[str, Any]] = []
        known_now: list[str] | None = None
        for symbol in symbols:
            raw = raws[symbol]
            if raw is None:
                known_now = known_now if known_now is not None else await self.known_symbols()
                missing = (
                    ReportNotPublishedError(symbol, known_now)
                    if symbol in known_now
                    else UnknownSymbolError(symbol, known_now)
                )
                errors.append(_error(symbol, "unknown_symbol", missing))
                continue
            try:
                reports.append(self._serve(self._decode(raw), now_ms, len(raw.json)))
            except CorruptReportError as corrupt:
                errors.append(_error(symbol, "corrupt", corrupt))
        served_at = iso_utc_from_ns(now_ms * 1_000_000)
        return {"served_at": served_at, "reports": reports, "errors": errors, **page}

    async def list_symbols(self, cursor: str | None = None) -> SymbolList:
        """Known symbols with the status each report would be served with now, a page of
        at most LIST_PAGE in symbol order after ``cursor`` (``next_cursor`` continues)."""
        registered, known = await self._registered_and_known()
        after = "" if cursor is None else normalize_symbol(cursor)
        rest = [s for s in known if s > after]
        page = rest[:LIST_PAGE]
        listing = await self._freshness(page, registered)
        listing.total = len(known)
        listing.next_cursor = page[-1] if len(rest) > len(page) else None
        return listing

    async def _freshness(
        self, symbols: list[str], registered: dict[str, dict[str, Any]]
    ) -> SymbolList:
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
            total=len(rows),
            next_cursor=None,
        )

    async def health(self) -> dict[str, Any]:
        """Redis reachable (else StoreUnavailableError) and how many reports would be
        served ok / degraded / down right now (``no_report``: registered, none yet).

        ``status``: ok when every known symbol is served ok, down when none is (or none
        is known), degraded in between: never "ok" beside reports nobody should use.
        It reads every report (one pipelined round trip, like list_symbols).
        """
        await self.store.ping()
        registered, known = await self._registered_and_known()
        listing = await self._freshness(known, registered)
        counts = dict.fromkeys(("ok", "degraded", "down", "no_report"), 0)
        for row in listing.symbols:
            counts[row.status] += 1
        total = len(listing.symbols)
        status = (
            "ok" if total and counts["ok"] == total else "down" if counts["ok"] == 0 else "degraded"
        )
        return {
            "status": status,
            "redis": "ok",
            "reports": counts,
            "served_at": listing.served_at,
        }


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _error(symbol: str, status: str, exc: Exception) -> dict[str, str]:
    return {"symbol": symbol, "status": status, "error": str(exc)}
