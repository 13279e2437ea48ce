"""AuthMiddleware on a real uvicorn server (in a thread): streamed responses pass through
unbuffered, and an open (loopback) server rate-limits per client IP."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from context8.redis_server import free_port
from services.mcp.auth import AuthConfig, AuthMiddleware, RateLimiter, StaticTokenVerifier
from tests.mcp.helpers import wait_for

TOKEN = "stream-token"


@contextmanager
def serve(app: Starlette) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 10, "uvicorn to start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def streaming_app(config: AuthConfig) -> Starlette:
    release = asyncio.Event()

    async def chunks() -> AsyncIterator[bytes]:
        yield b"data: first\n\n"
        await release.wait()  # held until the client proves it got the first chunk
        yield b"data: second\n\n"

    async def stream(request: Request) -> StreamingResponse:
        release.clear()
        return StreamingResponse(chunks(), media_type="text/event-stream")

    async def let_go(request: Request) -> JSONResponse:
        release.set()
        user = request.scope.get("user")  # set by AuthMiddleware for an accepted token
        return JSONResponse({"released": True, "client": user.display_name if user else None})

    return Starlette(
        routes=[Route("/v1/stream", stream), Route("/release", let_go, methods=["POST"])],
        middleware=[Middleware(AuthMiddleware, config=config)],
    )


def test_streams_pass_through_unbuffered() -> None:
    config = AuthConfig(verifier=StaticTokenVerifier([TOKEN]))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with serve(streaming_app(config)) as base, httpx.Client(base_url=base, timeout=10) as http:
        assert http.get("/v1/stream").status_code == 401
        with http.stream("GET", "/v1/stream", headers=auth) as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            assert next(lines) == "data: first"  # arrived while the generator is blocked
            released = http.post("/release", headers=auth)
            assert released.status_code == 200
            assert released.json()["client"].startswith("token:")  # scope["user"] set
            assert [line for line in lines if line] == ["data: second"]


def test_open_server_limits_per_ip() -> None:
    config = AuthConfig(limiter=RateLimiter(rate=0.1, burst=2))
    app = streaming_app(config)
    with serve(app) as base, httpx.Client(base_url=base, timeout=10) as http:
        codes = [http.post("/release").status_code for _ in range(2)]
        limited = http.post("/release")
    assert codes == [200, 200]
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "10"  # one request per 10 s


def test_refused_requests_are_rate_limited_per_ip() -> None:
    config = AuthConfig(
        verifier=StaticTokenVerifier([TOKEN]), limiter=RateLimiter(rate=0.1, burst=2)
    )
    with serve(streaming_app(config)) as base, httpx.Client(base_url=base, timeout=10) as http:
        guesses = [
            http.post("/release", headers={"Authorization": f"Bearer guess-{i}"}).status_code
            for i in range(2)
        ]
        blocked = http.post("/release", headers={"Authorization": "Bearer guess-3"})
    assert guesses == [401, 401]
    assert blocked.status_code == 429  # before the token is even checked
    assert blocked.headers["retry-after"] == "10"
