"""``GET /v1/stream?symbols=A,B``: report updates as Server-Sent Events, and the /mcp GET guard.

Stream format (``text/event-stream``, UTF-8)::

    retry: 2000                       reconnect delay hint (ms)

    event: report                     one per symbol at the start (its current report, if
    id: BTCUSDT:1764689400123         published), then one per update (rate-limited,
    data: {...served report...}       coalesced: see services/mcp/push.py)

    event: error                      the report could not be read (Redis down, corrupt)
    data: {"symbol": "BTCUSDT", "error": "..."}

    : keepalive                       comment every C8_MCP_SSE_HEARTBEAT_S without events

    event: end                        the server ends the stream (shutdown, slow_consumer)
    data: {"reason": "shutdown"}

``data`` of a ``report`` event is exactly what ``GET /v1/reports/{symbol}`` serves at that
moment (read-time freshness included), so freshness stays honest; ``id`` is
``SYMBOL:updatedAt``. No replay: a reconnecting client gets the current reports again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from services.mcp.errors import CorruptReportError, StoreUnavailableError, TooManySymbolsError
from services.mcp.http_json import ANSWERED, JSONBody, csv_param, error_response
from services.mcp.metrics import observe
from services.mcp.push import PushCapacityError, PushHub, Update
from services.mcp.service import ReportService, normalize_symbol
from shared.errors import InvalidSymbolError, UnknownSymbolError

STREAM_PATH = "/v1/stream"
TRANSPORT = "http"


async def resolve_symbols(service: ReportService, raw: list[str]) -> list[str]:
    """Normalized, de-duplicated, known symbols (raises Invalid/Unknown/TooMany, Unavailable)."""
    symbols = list(dict.fromkeys(normalize_symbol(s) for s in raw))
    if not symbols:
        raise InvalidSymbolError(
            "symbols is required: GET /v1/stream?symbols=BTCUSDT,ETHUSDT (comma-separated)"
        )
    if len(symbols) > service.max_batch:
        raise TooManySymbolsError(
            f"{len(symbols)} symbols requested; at most {service.max_batch} per stream"
        )
    known = await service.known_symbols()
    for symbol in symbols:
        if symbol not in known:
            raise UnknownSymbolError(symbol, known)
    return symbols


def sse_event(event: str, data: Any, event_id: str | None = None) -> bytes:
    head = f"event: {event}\n" + (f"id: {event_id}\n" if event_id else "")
    return head.encode() + b"data: " + orjson.dumps(data) + b"\n\n"


async def report_event(service: ReportService, symbol: str) -> bytes | None:
    """The ``report`` event of ``symbol`` now (an ``error`` event if unreadable, None if it
    has no report yet)."""
    try:
        report = await service.get_report(symbol)
    except UnknownSymbolError:
        return None
    except (StoreUnavailableError, CorruptReportError) as exc:
        return sse_event("error", {"symbol": symbol, "error": str(exc)})
    return sse_event("report", report, f"{symbol}:{report.get('updatedAt', '')}")


async def event_stream(
    service: ReportService, hub: PushHub, symbols: list[str], heartbeat_s: float
) -> AsyncIterator[bytes]:
    # Subscribed before the first read, so no write between the snapshot and the first
    # update is missed; closed however the stream ends (client gone: cancelled).
    try:
        sub = await hub.open("sse", symbols)
    except PushCapacityError:  # filled up since the route checked
        yield sse_event("end", {"reason": "capacity"})
        return
    try:
        yield b"retry: 2000\n\n"
        for symbol in symbols:
            event = await report_event(service, symbol)
            if event is not None:
                yield event
        while True:
            update: Update | None = await sub.next(timeout=heartbeat_s)
            if update is None:
                if sub.closed:
                    break
                yield b": keepalive\n\n"
                continue
            event = await report_event(service, update.symbol)
            if event is not None:
                yield event
                sub.delivered(update)
        if sub.closed_reason in ("shutdown", "slow_consumer"):
            yield sse_event("end", {"reason": sub.closed_reason})
    finally:
        sub.close()


def stream_route(service: ReportService, hub: PushHub, heartbeat_s: float) -> Route:
    async def stream(request: Request) -> Response:
        try:
            with observe(TRANSPORT, STREAM_PATH):
                # As the JSON routes: an empty item (``a,,b``) is refused, not dropped.
                raw = csv_param(request, "symbols") or []
                symbols = await resolve_symbols(service, raw)
        except ANSWERED as exc:
            return error_response(exc)
        if hub.closing:
            return JSONBody({"error": "server is shutting down; reconnect shortly"}, 503)
        if hub.at_capacity:
            return JSONBody({"error": "too many open streams on this server; retry later"}, 503)
        return StreamingResponse(
            event_stream(service, hub, symbols, heartbeat_s),
            media_type="text/event-stream",
            # no-transform / X-Accel-Buffering: proxies must not buffer the stream.
            headers={"Cache-Control": "no-store, no-transform", "X-Accel-Buffering": "no"},
        )

    return Route(STREAM_PATH, stream, methods=["GET"])


GET_MCP_HINT = (
    "GET /mcp opens a server-to-client stream only for a legacy (protocol <= 2025-11-25) "
    "MCP session: send its Mcp-Session-Id. 2026-07-28 clients get report updates from a "
    "subscriptions/listen request (POST /mcp); plain HTTP clients use "
    "GET /v1/stream?symbols=BTCUSDT,..."
)


class McpGetGuard:
    """Wraps the /mcp endpoint: a GET that cannot become a real stream is a JSON 405.

    Without this, a GET without a session (or any GET on a stateless endpoint) would
    hold an event stream open that nothing is ever written to.
    """

    def __init__(self, app: ASGIApp, *, stateful: bool) -> None:
        self.app = app
        self.stateful = stateful

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            headers = Headers(scope=scope)
            if not (self.stateful and headers.get("mcp-session-id")):
                response = JSONBody({"error": GET_MCP_HINT}, 405)
                response.headers["Allow"] = "POST, DELETE" if self.stateful else "POST"
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
