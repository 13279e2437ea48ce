"""Per-result cache hints for ``resources/read`` of a report, from the report's freshness.

The SDK fills ``ttlMs``/``cacheScope`` from the server-wide static hint
(``cache_hints={"resources/read": CacheHint(0)}`` in tools.py) and lets no MCPServer
resource function set its own, so a server middleware rewrites ``ttlMs`` on the wire
result: a fresh report will not change before the next cycle's report, so a client may
reuse it until then; a late, degraded or down report gets 0.

Only ``resources/read`` carries hints: tool results (``CallToolResult``) have no
``ttlMs``/``cacheScope`` in the protocol (2026-07-28), so there is nothing to set there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from mcp.server.context import CallNext, HandlerResult, ServerMiddleware, ServerRequestContext

#: Report resources whose reads get a freshness hint.
REPORT_URI_PREFIX = "report://"


def report_ttl_ms(report: Mapping[str, Any], cycle_ms: int) -> int:
    """How long (ms) a served report stays the newest one: the rest of the publish
    cycle it was written in, when it is fresh (status ok, write age known); else 0."""
    ingestion = report.get("ingestion")
    status = ingestion.get("status") if isinstance(ingestion, Mapping) else None
    age = report.get("report_write_age_ms")
    if status != "ok" or not isinstance(age, int) or isinstance(age, bool) or age < 0:
        return 0
    return max(0, cycle_ms - age)


def with_report_ttl(result: Mapping[str, Any], cycle_ms: int) -> Mapping[str, Any]:
    """``result`` (a resources/read wire dict) with ``ttlMs`` from its report's freshness.

    Untouched when the result has no ``ttlMs`` (a legacy protocol version: the field does
    not exist there) or is not exactly one JSON report.
    """
    contents = result.get("contents")
    if "ttlMs" not in result or not isinstance(contents, list) or len(contents) != 1:
        return result
    item = contents[0]
    uri, text = item.get("uri"), item.get("text")
    if not (isinstance(uri, str) and uri.startswith(REPORT_URI_PREFIX) and isinstance(text, str)):
        return result
    try:
        report = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {**result, "ttlMs": 0}
    ttl = report_ttl_ms(report, cycle_ms) if isinstance(report, dict) else 0
    return {**result, "ttlMs": ttl}


def report_cache_hints(cycle_ms: int) -> ServerMiddleware[Any]:
    """Server middleware setting the freshness ``ttlMs`` on report reads."""

    async def middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        result = await call_next(ctx)
        if ctx.method == "resources/read" and isinstance(result, dict):
            return dict(with_report_ttl(result, cycle_ms))
        return result

    return middleware
