"""The HTTP face of the read API: plain JSON routes beside the streamable HTTP MCP endpoint.

GET /v1/reports/{symbol}   one served report (400 invalid, 404 unknown, 503 Redis down)
GET /v1/reports            every known symbol, or ?symbols=A,B (same shape as get_reports)
GET /v1/symbols            known symbols and their freshness (same as list_symbols)
GET /healthz               200 when Redis answers, 503 otherwise
/mcp                       MCP over streamable HTTP (stateless, JSON responses)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from mcp.server.mcpserver import MCPServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from services.mcp.errors import CorruptReportError, StoreUnavailableError, TooManySymbolsError
from services.mcp.metrics import observe
from services.mcp.service import ReportService
from shared.errors import InvalidSymbolError, UnknownSymbolError

TRANSPORT = "http"
MCP_PATH = "/mcp"


class JSONBody(Response):
    """orjson-encoded JSON that no cache keeps (reports age by the millisecond)."""

    media_type = "application/json"

    def __init__(self, content: Any, status_code: int = 200) -> None:
        super().__init__(content, status_code, headers={"Cache-Control": "no-store"})

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(exc: Exception) -> JSONBody:
    """The HTTP answer for an anticipated failure."""
    if isinstance(exc, UnknownSymbolError):
        return JSONBody({"error": str(exc), "known_symbols": exc.known}, 404)
    if isinstance(exc, InvalidSymbolError | TooManySymbolsError):
        return JSONBody({"error": str(exc)}, 400)
    if isinstance(exc, StoreUnavailableError):
        return JSONBody({"error": str(exc)}, 503)
    if isinstance(exc, CorruptReportError):
        return JSONBody({"error": str(exc)}, 500)
    raise exc


_Handler = Callable[[Request], Awaitable[Any]]


def _route(path: str, handler: _Handler) -> Route:
    """A GET route whose handler returns a JSON-able body; errors become JSON errors."""

    async def endpoint(request: Request) -> Response:
        try:
            with observe(TRANSPORT, path):
                return JSONBody(await handler(request))
        except (
            UnknownSymbolError,
            InvalidSymbolError,
            TooManySymbolsError,
            StoreUnavailableError,
            CorruptReportError,
        ) as exc:
            return error_response(exc)

    return Route(path, endpoint, methods=["GET"])


def rest_routes(service: ReportService) -> list[BaseRoute]:
    async def get_report(request: Request) -> dict[str, Any]:
        return await service.get_report(request.path_params["symbol"])

    async def get_reports(request: Request) -> dict[str, Any]:
        wanted = [s for s in request.query_params.get("symbols", "").split(",") if s.strip()]
        return await service.get_reports(wanted or None)

    async def list_symbols(request: Request) -> dict[str, Any]:
        return (await service.list_symbols()).model_dump(mode="json")

    async def healthz(request: Request) -> dict[str, Any]:
        await service.check_health()
        return {"status": "ok", "redis": "ok"}

    return [
        _route("/v1/reports/{symbol}", get_report),
        _route("/v1/reports", get_reports),
        _route("/v1/symbols", list_symbols),
        _route("/healthz", healthz),
    ]


def build_http_app(service: ReportService, mcp_server: MCPServer, host: str) -> Starlette:
    """JSON routes + the MCP streamable HTTP endpoint in one Starlette app.

    Stateless MCP with JSON responses: a read-only API needs no sessions, so any replica
    can answer any request and no long-lived stream delays a graceful shutdown.
    """
    mcp_app = mcp_server.streamable_http_app(
        streamable_http_path=MCP_PATH, stateless_http=True, json_response=True, host=host
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with mcp_server.session_manager.run():
            yield

    return Starlette(routes=[*rest_routes(service), *mcp_app.routes], lifespan=lifespan)
