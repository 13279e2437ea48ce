"""Errors of the read API, under the shared Context8Error tree (shared/errors.py)."""

from __future__ import annotations

from shared.errors import Context8Error, UnknownSymbolError


class StoreUnavailableError(Context8Error):
    """Redis did not answer (connection refused, timeout, ...): HTTP 503 / MCP tool error."""


class CorruptReportError(Context8Error, ValueError):
    """A stored report that is not a JSON object: HTTP 500 / MCP tool error."""


class ReportNotPublishedError(UnknownSymbolError):
    """A registered symbol (ingest knows it) that has no report yet."""

    def __init__(self, symbol: str, known: list[str]) -> None:
        super().__init__(symbol, known)
        self.args = (
            f"no report for {symbol!r} yet: the symbol is registered but no report has been "
            "published (service starting, or calc/publisher not running)",
        )


class TooManySymbolsError(Context8Error, ValueError):
    """A batch request for more symbols than C8_MCP_MAX_BATCH allows."""


class InvalidArgumentError(Context8Error, ValueError):
    """A request argument that is not valid (e.g. a prompt's notional or side)."""
