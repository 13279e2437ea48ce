"""Auth and rate limits on a real ``python -m services.mcp`` HTTP server: the start-up
rule, static bearer tokens (JSON routes and MCP), 401/403/429 answers and their metrics,
and OAuth resource-server mode against a stand-in issuer's introspection endpoint."""

from __future__ import annotations

import base64
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import httpx2
import pytest
import redis
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from context8.redis_server import RedisServer, free_port
from tests.mcp.helpers import (
    REPO,
    HttpServerProcess,
    make_report,
    put_report,
    service_env,
    wait_for,
)
from tests.mcp.test_mcp_http import metric_samples

TOKENS = ("tok-alpha-1", "tok-beta-2")
FILE_TOKEN = "tok-from-file-3"
RESOURCE = "https://mcp.example.test/mcp"
METADATA = "https://mcp.example.test/.well-known/oauth-protected-resource/mcp"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def start_and_wait_exit(redis_url: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.mcp"],
        cwd=REPO,
        env=service_env(redis_url, C8_MCP_PORT=str(free_port()), **env),
        capture_output=True,
        text=True,
        timeout=30,
    )


async def mcp_tool_names(url: str, headers: dict[str, str]) -> set[str]:
    async with (
        httpx2.AsyncClient(headers=headers, timeout=10) as http,
        Client(streamable_http_client(url, http_client=http), read_timeout_seconds=10) as client,
    ):
        return {tool.name for tool in (await client.list_tools()).tools}


def counter(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


# --- start-up rule ---------------------------------------------------------------------


def test_non_loopback_without_credentials_refuses_to_start(redis_url: str, tmp_path: Path) -> None:
    result = start_and_wait_exit(redis_url, C8_MCP_HOST="0.0.0.0")
    assert result.returncode == 2
    assert "refusing to serve C8_MCP_HOST='0.0.0.0' without credentials" in result.stderr
    assert "C8_MCP_TOKENS" in result.stderr and "C8_MCP_OAUTH_ISSUER" in result.stderr

    missing = tmp_path / "no-such-file"
    result = start_and_wait_exit(redis_url, C8_MCP_TOKENS_FILE=str(missing))
    assert result.returncode == 2
    assert f"C8_MCP_TOKENS_FILE='{missing}' is not readable" in result.stderr


# --- static tokens -------------------------------------------------------------------


@pytest.fixture(scope="module")
def token_server(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HttpServerProcess]:
    tokens_file = tmp_path_factory.mktemp("auth") / "tokens"
    tokens_file.write_text(f"# agents\n{FILE_TOKEN}\n")
    proc = HttpServerProcess(
        redis_server.url,
        C8_MCP_HOST="0.0.0.0",  # allowed: credentials are configured
        C8_MCP_TOKENS=",".join(TOKENS),
        C8_MCP_TOKENS_FILE=str(tokens_file),
    )
    proc.wait_ready()
    yield proc
    proc.stop()


def test_static_tokens_guard_the_json_routes(
    token_server: HttpServerProcess, store: redis.Redis
) -> None:
    put_report(store, make_report("BTCUSDT"))
    url = f"{token_server.base}/v1/reports/BTCUSDT"
    before = metric_samples(token_server.metrics_port)

    missing = httpx.get(url)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="context8"'
    assert missing.json()["error"] == "unauthorized"
    basic = httpx.get(url, headers={"Authorization": "Basic " + base64.b64encode(b"u:p").decode()})
    assert basic.status_code == 401 and "error=" not in basic.headers["www-authenticate"]

    wrong = httpx.get(url, headers=bearer("tok-alpha-X"))
    assert wrong.status_code == 401
    challenge = wrong.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="context8", error="invalid_token"')
    assert wrong.json()["error"] == "invalid_token"
    assert httpx.get(url, headers={"Authorization": "Bearer"}).status_code == 401

    for token in (*TOKENS, FILE_TOKEN):
        ok = httpx.get(url, headers=bearer(token))
        assert ok.status_code == 200, token
        assert ok.json()["symbol"] == "BTCUSDT"
    assert (
        httpx.get(f"{token_server.base}/v1/symbols", headers=bearer(TOKENS[0])).status_code == 200
    )
    assert httpx.get(f"{token_server.base}/v1/symbols").status_code == 401
    assert httpx.get(f"{token_server.base}/healthz").status_code == 200  # probes stay open

    after = metric_samples(token_server.metrics_port)
    name = "context8_mcp_auth_failures_total"
    assert counter(after, name, reason="missing") - counter(before, name, reason="missing") == 3
    assert counter(after, name, reason="invalid") - counter(before, name, reason="invalid") == 2


async def test_static_tokens_guard_mcp(token_server: HttpServerProcess) -> None:
    url = f"{token_server.base}/mcp"
    names = await mcp_tool_names(url, bearer(FILE_TOKEN))
    assert {"get_report", "get_reports", "list_symbols"} <= names

    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/list",
        "params": {},
    }
    headers = {"Accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient() as http:
        refused = await http.post(url, json=init, headers=headers)
        wrong = await http.post(url, json=init, headers={**headers, **bearer("nope")})
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == 'Bearer realm="context8"'
    assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["www-authenticate"]


# --- rate limit ----------------------------------------------------------------------


def test_rate_limit_per_client_gives_429_with_retry_after(redis_url: str) -> None:
    proc = HttpServerProcess(
        redis_url,
        C8_MCP_TOKENS=",".join(TOKENS),
        C8_MCP_RATE_LIMIT_RPS="0.2",  # one request per 5 s once the burst is spent
        C8_MCP_RATE_LIMIT_BURST="3",
    )
    try:
        proc.wait_ready()
        url = f"{proc.base}/v1/symbols"
        with httpx.Client() as http:
            codes = [http.get(url, headers=bearer(TOKENS[0])).status_code for _ in range(3)]
            limited = http.get(url, headers=bearer(TOKENS[0]))
            other_client = http.get(url, headers=bearer(TOKENS[1]))
            health = [http.get(f"{proc.base}/healthz").status_code for _ in range(5)]
        assert codes == [200, 200, 200]
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 5
        assert "rate limit exceeded" in limited.json()["error"]
        assert other_client.status_code == 200  # its own bucket
        assert health == [200] * 5  # never limited
        samples = metric_samples(proc.metrics_port)
        assert counter(samples, "context8_mcp_rate_limited_total") == 1
    finally:
        proc.stop()


# --- OAuth resource-server mode --------------------------------------------------------


class StandInIssuer:
    """A tiny authorization server: RFC 7662 introspection behind HTTP Basic client auth."""

    CLIENT = ("context8-mcp", "introspect-s3cret")
    TOKENS = {
        "oauth-good": {"scope": "reports:read profile", "aud": RESOURCE, "client_id": "agent-7"},
        "oauth-other-audience": {"scope": "reports:read", "aud": "https://other.example.test/mcp"},
        "oauth-no-scope": {"scope": "profile", "aud": RESOURCE, "client_id": "agent-8"},
    }

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.calls = 0
        app = Starlette(routes=[Route("/introspect", self.introspect, methods=["POST"])])
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, lifespan="off")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    async def introspect(self, request: Request) -> JSONResponse:
        self.calls += 1
        expected = "Basic " + base64.b64encode(":".join(self.CLIENT).encode()).decode()
        if request.headers.get("authorization") != expected:
            return JSONResponse({"error": "invalid_client"}, 401)
        token = str((await request.form()).get("token"))
        claims = self.TOKENS.get(token)
        if claims is None:
            return JSONResponse({"active": False})
        return JSONResponse({"active": True, "iss": self.url, "sub": "alice", **claims})

    def __enter__(self) -> StandInIssuer:
        self.thread.start()
        wait_for(lambda: self.server.started, 10, "the stand-in issuer to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


async def test_oauth_resource_server_mode(redis_url: str) -> None:
    store = redis.Redis.from_url(redis_url)
    put_report(store, make_report("BTCUSDT"))
    store.close()
    with StandInIssuer() as issuer:
        proc = HttpServerProcess(
            redis_url,
            C8_MCP_HOST="0.0.0.0",
            C8_MCP_TOKENS="static-ops-token",
            C8_MCP_OAUTH_ISSUER=issuer.url,
            C8_MCP_OAUTH_INTROSPECTION_URL=f"{issuer.url}/introspect",
            C8_MCP_OAUTH_RESOURCE_URL=RESOURCE,
            C8_MCP_OAUTH_CLIENT_ID=issuer.CLIENT[0],
            C8_MCP_OAUTH_CLIENT_SECRET=issuer.CLIENT[1],
            C8_MCP_OAUTH_REQUIRED_SCOPES="reports:read",
        )
        try:
            proc.wait_ready()
            async with httpx.AsyncClient(base_url=proc.base) as http:
                meta = await http.get("/.well-known/oauth-protected-resource/mcp")
                assert meta.status_code == 200
                body = meta.json()
                assert body["resource"] == RESOURCE
                assert [a.rstrip("/") for a in body["authorization_servers"]] == [issuer.url]
                assert body["scopes_supported"] == ["reports:read"]

                missing = await http.get("/v1/reports/BTCUSDT")
                assert missing.status_code == 401
                assert missing.headers["www-authenticate"] == (
                    f'Bearer realm="context8", resource_metadata="{METADATA}"'
                )
                good = await http.get("/v1/reports/BTCUSDT", headers=bearer("oauth-good"))
                assert good.status_code == 200 and good.json()["symbol"] == "BTCUSDT"
                static = await http.get("/v1/reports/BTCUSDT", headers=bearer("static-ops-token"))
                assert static.status_code == 200
                for token in ("oauth-other-audience", "oauth-unknown"):
                    refused = await http.get("/v1/reports/BTCUSDT", headers=bearer(token))
                    assert refused.status_code == 401, token
                    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
                    assert f'resource_metadata="{METADATA}"' in refused.headers["www-authenticate"]
                scope = await http.get("/v1/reports/BTCUSDT", headers=bearer("oauth-no-scope"))
                assert scope.status_code == 403
                assert 'error="insufficient_scope"' in scope.headers["www-authenticate"]

            calls = issuer.calls
            names = await mcp_tool_names(f"{proc.base}/mcp", bearer("oauth-good"))
            assert {"get_report", "get_reports", "list_symbols"} <= names
            assert issuer.calls == calls  # accepted answers are cached
            samples = metric_samples(proc.metrics_port)
            name = "context8_mcp_auth_failures_total"
            assert counter(samples, name, reason="missing") == 1
            assert counter(samples, name, reason="invalid") == 2
            assert counter(samples, name, reason="insufficient_scope") == 1
        finally:
            proc.stop()
