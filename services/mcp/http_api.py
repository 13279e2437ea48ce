"""The HTTP face of the read API: plain JSON routes beside the streamable HTTP MCP endpoint.

GET /v1/reports/{symbol}   one served report (400 invalid, 404 unknown, 503 Redis down)
GET /v1/reports/{symbol}/history?minutes=&fields=a,b   time series (services/mcp/history.py)
GET /v1/reports            every known symbol, or ?symbols=A,B (same shape as get_reports)
GET /v1/symbols            known symbols and their freshness (same as list_symbols)
GET /v1/assets[/{asset}]   asset reports across markets (services/mcp/assets.py)
GET /healthz               200 when Redis answers, 503 otherwise
GET /v1/stream?symbols=A,B report updates as Server-Sent Events (services/mcp/sse.py)
/mcp                       MCP over streamable HTTP (JSON responses; stateful with push)
"""

from __future__ import annotations

import gc
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from mcp.server.mcpserver import MCPServer
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from services.mcp.assets import AssetReader
from services.mcp.auth import AuthConfig, AuthMiddleware
from services.mcp.fast_http import FastRoutes
from services.mcp.history import HistoryReader
from services.mcp.http_docs import endpoints, schemas
from services.mcp.http_json import ANSWERED, JSONBody, csv_param, error_response
from services.mcp.metrics import observe
from services.mcp.openapi import OPENAPI_PATH, build_document
from services.mcp.push import PushHub
from services.mcp.service import ReportService, server_version
from services.mcp.sse import McpGetGuard, stream_route

TRANSPORT = "http"
MCP_PATH = "/mcp"


def report_etag(report: dict[str, Any], sections: list[str]) -> str:
    """Weak tag of a served report: the stored report (symbol, write time), the status it
    is served with and the asked sections. Weak because the read-time fields (served_at,
    data_age_ms, report_write_age_ms) differ on every read of the same stored report."""
    status = (report.get("ingestion") or {}).get("status")
    parts = [str(report.get("symbol")), str(report.get("updatedAt")), str(status)]
    digest = hashlib.blake2s(
        "|".join([*parts, ",".join(sorted(sections))]).encode(), digest_size=8
    ).hexdigest()
    return f'W/"{digest}"'


def _if_none_match(request: Request) -> set[str]:
    """The tags of If-None-Match (weak comparison: W/ prefixes are equivalent)."""
    raw = request.headers.get("if-none-match")
    if not raw:
        return set()
    tags = {t.strip() for t in raw.split(",") if t.strip()}
    return tags | {f"W/{t}" for t in tags if not t.startswith("W/")}


_Handler = Callable[[Request], Awaitable[Any]]


def _route(path: str, handler: _Handler) -> Route:
    """A GET route whose handler returns a JSON-able body; errors become JSON errors."""

    async def endpoint(request: Request) -> Response:
        try:
            with observe(TRANSPORT, path):
                body = await handler(request)
                return body if isinstance(body, Response) else JSONBody(body)
        except ANSWERED as exc:
            return error_response(exc)

    return Route(path, endpoint, methods=["GET"])


def rest_routes(service: ReportService) -> list[Route]:
    async def get_report(request: Request) -> Response:
        sections = csv_param(request, "sections") or []
        report = await service.get_report(request.path_params["symbol"], sections)
        tag = report_etag(report, sections)
        # no-cache, not no-store: a client may keep the body and revalidate with the tag.
        headers = {"ETag": tag, "Cache-Control": "no-cache"}
        if tag in _if_none_match(request):
            return Response(status_code=304, headers=headers)
        return JSONBody(report, 200, headers)

    history_reader = HistoryReader(service)

    async def get_history(request: Request) -> dict[str, Any]:
        query = request.query_params
        fields = ",".join(query.getlist("fields")) if "fields" in query else None  # a,b or repeated
        return await history_reader.get_history(
            request.path_params["symbol"], query.get("minutes"), fields
        )

    async def get_reports(request: Request) -> dict[str, Any]:
        wanted = csv_param(request, "symbols")
        return await service.get_reports(wanted, request.query_params.get("cursor"))

    async def list_symbols(request: Request) -> dict[str, Any]:
        listing = await service.list_symbols(request.query_params.get("cursor"))
        return listing.model_dump(mode="json")

    async def healthz(request: Request) -> dict[str, Any]:
        return await service.health()

    asset_reader = AssetReader(service)  # services/mcp/assets.py

    async def get_asset(request: Request) -> dict[str, Any]:
        return await asset_reader.get_asset(request.path_params["asset"])

    async def list_assets(request: Request) -> dict[str, Any]:
        return await asset_reader.list_assets()

    async def readyz(request: Request) -> JSONBody:
        health = await service.health()
        ready = health["reports"]["ok"] > 0
        return JSONBody({**health, "ready": ready}, 200 if ready else 503)

    routes = [
        _route("/v1/reports/{symbol}/history", get_history),  # services/mcp/history.py
        _route("/v1/reports/{symbol}", get_report),
        _route("/v1/reports", get_reports),
        _route("/v1/symbols", list_symbols),
        _route("/v1/assets/{asset}", get_asset),
        _route("/v1/assets", list_assets),
        _route("/healthz", healthz),
        _route("/readyz", readyz),
    ]
    documented = endpoints(service.max_batch)
    document = build_document(
        {r.path: documented[r.path] for r in routes if r.path in documented},
        schemas(service.policy.stale_after_ms, service.policy.down_after_ms),
        server_version(),
    )

    async def openapi(request: Request) -> dict[str, Any]:
        return document

    return [*routes, _route(OPENAPI_PATH, openapi)]


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown routes and wrong methods answer JSON like every other error."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
    headers = dict(exc.headers or {}) if isinstance(exc, HTTPException) else {}
    if status == 404:
        detail = f"no route {request.url.path!r}; see /openapi.json for the routes"
    elif status == 405:
        detail = f"method {request.method} not allowed on {request.url.path!r}"
    return JSONBody({"error": detail}, status, headers)


#: The collector's thresholds once serving (gen0 allocations, gen1 and gen2 multipliers).
GC_THRESHOLDS = (20_000, 50, 100)


def settle_heap() -> None:
    """Keep the cyclic collector off what start-up built (modules, the MCP SDK's pydantic
    models, routes): it lives as long as the process. Without this a third of a read's
    CPU went to collections that walked that heap (bench/read_api.py: py-spy showed
    ``gc_collect_main`` in 29 % of the samples), and each full collection paused every
    request in flight (the p99 at 100 clients). Requests' own garbage is freed by
    reference counting; the young generation is collected less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def build_http_app(
    service: ReportService,
    mcp_server: MCPServer,
    host: str,
    auth: AuthConfig | None = None,
    *,
    push: PushHub | None = None,
    sse_heartbeat_s: float = 15.0,
) -> ASGIApp:
    """JSON routes + the MCP streamable HTTP endpoint in one Starlette app, behind the
    JSON routes' fast path and the auth middleware.

    MCP with JSON responses. Without ``push``: stateless (any replica answers any request).
    With ``push`` (services/mcp/push.py): ``GET /v1/stream`` and resource subscriptions,
    and stateful sessions for legacy clients; a GET on /mcp that cannot be a real stream
    is a JSON 405 (services/mcp/sse.py McpGetGuard).
    """
    # With push, legacy (2025-era) clients need a session whose GET stream carries their
    # resources/subscribe notifications: stateful (sticky per Mcp-Session-Id). 2026-07-28
    # requests stay single-exchange either way (subscriptions/listen streams its POST).
    mcp_app = mcp_server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        stateless_http=push is None,
        json_response=True,
        host=host,
    )
    mcp_routes = [
        Route(MCP_PATH, McpGetGuard(r.endpoint, stateful=push is not None))
        if isinstance(r, Route) and r.path == MCP_PATH
        else r
        for r in mcp_app.routes
    ]
    push_routes = [] if push is None else [stream_route(service, push, sse_heartbeat_s)]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with mcp_server.session_manager.run():
            settle_heap()
            yield

    json_routes = rest_routes(service)
    app = Starlette(
        routes=[*json_routes, *push_routes, *mcp_routes],
        lifespan=lifespan,
        exception_handlers={404: _http_error, 405: _http_error},
    )
    # GET on the JSON routes skips Starlette's per-request layers (services/mcp/fast_http.py);
    # the same Route objects stay in the app for everything else (405, HEAD redirects, ...).
    front = FastRoutes(app, json_routes)
    # Outermost: auth + rate limit guard every route but health and OAuth metadata.
    return front if auth is None else AuthMiddleware(front, config=auth)
