"""Prometheus metrics of the read API (served by shared.metrics.start_metrics)."""

from __future__ import annotations

import time
from types import TracebackType

from prometheus_client import Counter, Histogram

from services.mcp.errors import (
    CorruptReportError,
    InvalidArgumentError,
    StoreUnavailableError,
    TooManySymbolsError,
)
from shared.errors import InvalidSymbolError, UnknownSymbolError

REQUESTS = Counter(
    "context8_mcp_requests_total",
    "Read requests by transport (http, mcp_http, mcp_stdio, mcp_memory), endpoint "
    "(route or tool) and status (ok, invalid_symbol, invalid_request, unknown_symbol, "
    "unavailable, corrupt, error).",
    ["transport", "endpoint", "status"],
)
LATENCY = Histogram(
    "context8_mcp_request_duration_seconds",
    "Time to answer one read request.",
    ["transport", "endpoint"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
REPORTS_SERVED = Counter(
    "context8_mcp_reports_served_total",
    "Reports served, by the ingestion status they were served with (after read-time "
    "downgrade): ok, degraded, down.",
    ["status"],
)
REPORT_WRITE_AGE = Histogram(
    "context8_mcp_served_report_write_age_seconds",
    "Time since the publisher wrote each served report, at serve time.",
    buckets=(0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 15.0, 30.0, 60.0, 300.0),
)
REDIS_ERRORS = Counter(
    "context8_mcp_redis_errors_total",
    "Redis calls that failed (connection refused, timeout, ...).",
)
AUTH_FAILURES = Counter(
    "context8_mcp_auth_failures_total",
    "Requests refused by auth: reason missing (no bearer token, 401), invalid (unknown or "
    "expired token, 401), insufficient_scope (403).",
    ["reason"],
)
for _reason in ("missing", "invalid", "insufficient_scope"):
    AUTH_FAILURES.labels(_reason)  # export 0s so rate() works from the start
RATE_LIMITED = Counter(
    "context8_mcp_rate_limited_total",
    "Requests refused with 429 by the per-client rate limit.",
)


def outcome(exc: BaseException | None) -> str:
    """The ``status`` label of a request that raised ``exc`` (None: it succeeded)."""
    if exc is None:
        return "ok"
    if isinstance(exc, InvalidSymbolError):
        return "invalid_symbol"
    if isinstance(exc, TooManySymbolsError | InvalidArgumentError):
        return "invalid_request"
    if isinstance(exc, UnknownSymbolError):
        return "unknown_symbol"
    if isinstance(exc, StoreUnavailableError):
        return "unavailable"
    if isinstance(exc, CorruptReportError):
        return "corrupt"
    return "error"


class Observed:
    """Counts and times one request (``with observe(...)``); the status label comes from
    what it raised. The labelled children are looked up once per label set: this is on
    every request's path."""

    __slots__ = ("_key", "_start")

    def __init__(self, transport: str, endpoint: str) -> None:
        self._key = (transport, endpoint)

    def __enter__(self) -> None:
        self._start = time.perf_counter()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        elapsed = time.perf_counter() - self._start
        latency = _LATENCY_CHILDREN.get(self._key)
        if latency is None:
            latency = _LATENCY_CHILDREN[self._key] = LATENCY.labels(*self._key)
        latency.observe(elapsed)
        # Like a plain ``except Exception``: a cancelled request counts as ok.
        status = outcome(exc if isinstance(exc, Exception) else None)
        key = (*self._key, status)
        requests = _REQUEST_CHILDREN.get(key)
        if requests is None:
            requests = _REQUEST_CHILDREN[key] = REQUESTS.labels(*key)
        requests.inc()


_LATENCY_CHILDREN: dict[tuple[str, str], Histogram] = {}
_REQUEST_CHILDREN: dict[tuple[str, str, str], Counter] = {}


def observe(transport: str, endpoint: str) -> Observed:
    """Count and time one request; the status label comes from what it raised."""
    return Observed(transport, endpoint)
