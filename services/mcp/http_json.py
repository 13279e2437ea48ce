"""JSON answers of the HTTP API: the response class and the mapping of anticipated
errors to status codes, shared by the JSON routes (http_api.py) and the SSE route (sse.py)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from services.mcp.errors import (
    CorruptReportError,
    InvalidArgumentError,
    StoreUnavailableError,
    TooManySymbolsError,
)
from shared.errors import InvalidSymbolError, UnknownSymbolError

#: The failures ``error_response`` answers (anything else is a bug: a 500 from Starlette).
ANSWERED = (
    UnknownSymbolError,
    InvalidSymbolError,
    TooManySymbolsError,
    InvalidArgumentError,
    StoreUnavailableError,
    CorruptReportError,
)


class JSONBody(Response):
    """orjson-encoded JSON that no cache keeps (reports age by the millisecond)."""

    media_type = "application/json"

    def __init__(
        self, content: Any, status_code: int = 200, headers: dict[str, str] | None = None
    ) -> None:
        # Response.__init__ by hand: the same headers, without its generic merging (this
        # is on every JSON answer's path).
        self.status_code = status_code
        self.background = None
        self.body = body = self.render(content)
        raw = [(b"cache-control", b"no-store")]
        if headers:
            given = {k.lower(): v for k, v in headers.items()}
            raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in given.items()]
            if "cache-control" not in given:
                raw.insert(0, (b"cache-control", b"no-store"))
        raw.append((b"content-length", str(len(body)).encode()))
        raw.append((b"content-type", b"application/json"))
        self.raw_headers = raw

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(exc: Exception) -> JSONBody:
    """The HTTP answer for an anticipated failure."""
    if isinstance(exc, UnknownSymbolError):
        body = {"error": str(exc), "suggestions": exc.suggestions, "known_count": exc.known_count}
        return JSONBody(body, 404)
    if isinstance(exc, InvalidSymbolError | TooManySymbolsError | InvalidArgumentError):
        return JSONBody({"error": str(exc)}, 400)
    if isinstance(exc, StoreUnavailableError):
        return JSONBody({"error": str(exc)}, 503)
    if isinstance(exc, CorruptReportError):
        return JSONBody({"error": str(exc)}, 500)
    raise exc


def csv_param(request: Request, name: str) -> list[str] | None:
    """A comma-separated query parameter: None when absent; an empty item (``a,,b``,
    ``name=``) is an error rather than silently meaning "everything"."""
    if not request.scope.get("query_string"):
        return None  # (most requests: no query string to parse)
    raw = request.query_params.get(name)
    if raw is None:
        return None
    items = [item.strip() for item in raw.split(",")]
    if not all(items):
        raise InvalidArgumentError(f"{name}: empty item in {raw[:80]!r}; omit {name} instead")
    return items
