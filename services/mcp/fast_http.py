"""A lean ASGI front for the JSON GET routes: matched and answered without Starlette's
per-request layers (error and exception middleware, the router's walk of every route,
``request_response``'s wrappers), everything else passed on to the Starlette app.

The JSON routes are the same ``Route`` objects the Starlette app holds (declared once in
``http_api.rest_routes`` with ``http_api._route``), so a route added there is served
here too: its endpoint gets the same ``Request`` (path parameters included) and its
``Response`` goes out as is. What stays with Starlette: other methods (405 with
``Allow``), unknown paths (JSON 404), trailing-slash redirects, ``root_path`` mounts,
``/mcp``, ``/v1/stream`` and the OAuth metadata. Auth and the rate limit wrap this front
(``AuthMiddleware`` outermost), so they guard both paths alike.

Pure part (unit-tested): ``PathTemplate`` matches Starlette's ``{name}`` templates
(a parameter is one non-empty path segment, as Starlette's default ``str`` convertor).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]

_INTERNAL_ERROR = orjson.dumps({"error": "internal error"})


@dataclass(frozen=True, slots=True)
class PathTemplate:
    """``/v1/reports/{symbol}`` as segments: literals must be equal, ``{name}`` takes one
    non-empty segment."""

    segments: tuple[str, ...]
    #: Per segment: the parameter's name, or None for a literal.
    names: tuple[str | None, ...]

    @classmethod
    def parse(cls, path: str) -> PathTemplate:
        segments = tuple(path.split("/"))
        names = tuple(s[1:-1] if s.startswith("{") and s.endswith("}") else None for s in segments)
        for name in names:
            if name is not None and not name.isidentifier():  # "{n:int}": not handled here
                raise ValueError(f"unsupported path parameter {name!r} in {path!r}")
        return cls(segments, names)

    @property
    def has_params(self) -> bool:
        return any(name is not None for name in self.names)

    def match(self, parts: Sequence[str]) -> dict[str, str] | None:
        """The path parameters if ``parts`` (the request path split on "/") matches."""
        if len(parts) != len(self.segments):
            return None
        found: dict[str, str] = {}
        for want, name, got in zip(self.segments, self.names, parts, strict=True):
            if name is None:
                if want != got:
                    return None
            elif not got:
                return None
            else:
                found[name] = got
        return found


def is_fast(route: Route) -> bool:
    """Whether the fast path can serve ``route``: GET-only (HEAD comes with it) with plain
    ``{name}`` parameters. Anything else stays with Starlette alone."""
    if route.methods != {"GET", "HEAD"}:
        return False
    try:
        PathTemplate.parse(route.path)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class FastRoute:
    order: int  # its place among the routes (Starlette: the first that matches wins)
    template: PathTemplate
    endpoint: Endpoint


class FastRoutes:
    """ASGI: GET/HEAD on a JSON route answered here, anything else to ``app``."""

    def __init__(self, app: ASGIApp, routes: Sequence[Route]) -> None:
        self.app = app
        #: Literal paths looked up directly; templated ones tried in declaration order, and
        #: only those declared before a matching literal one can take its place.
        self.exact: dict[str, FastRoute] = {}
        self.templated: list[FastRoute] = []
        for order, route in enumerate(routes):
            if not is_fast(route):
                continue  # Starlette serves it (other methods, parameter convertors)
            fast = FastRoute(order, PathTemplate.parse(route.path), route.endpoint)
            if fast.template.has_params:
                self.templated.append(fast)
            elif route.path not in self.exact:
                self.exact[route.path] = fast

    def find(self, path: str) -> tuple[Endpoint, dict[str, str]] | None:
        """The endpoint for ``path`` and its path parameters (None: not a fast route)."""
        literal = self.exact.get(path)
        parts = path.split("/")
        for route in self.templated:
            if literal is not None and route.order > literal.order:
                break
            params = route.template.match(parts)
            if params is not None:
                return route.endpoint, params
        return None if literal is None else (literal.endpoint, {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in ("GET", "HEAD")
            or scope.get("root_path")
            or (found := self.find(scope["path"])) is None
        ):
            await self.app(scope, receive, send)
            return
        endpoint, params = found
        scope["path_params"] = params
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            response = await endpoint(Request(scope, receive))
            if type(response).__call__ is Response.__call__ and response.background is None:
                # A whole body (JSONBody, a 304): two messages, no wrappers.
                started = True
                await send(
                    {
                        "type": "http.response.start",
                        "status": response.status_code,
                        "headers": response.raw_headers,
                    }
                )
                await send({"type": "http.response.body", "body": response.body})
            else:
                await response(scope, receive, sending)
        except Exception:
            # Starlette's ServerErrorMiddleware would answer 500 and re-raise (uvicorn logs
            # the traceback); the same here, in JSON like every other error.
            if not started:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(_INTERNAL_ERROR)).encode()),
                            (b"cache-control", b"no-store"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": _INTERNAL_ERROR})
            raise
