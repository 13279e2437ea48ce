"""The pure parts of services/mcp/auth.py: start-up rule, tokens, introspection answers,
challenges, token bucket, settings -> wiring."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from services.mcp.auth import (
    AuthConfigError,
    Bucket,
    ChainTokenVerifier,
    IntrospectionTokenVerifier,
    RateLimiter,
    StaticTokenVerifier,
    access_token_from_introspection,
    bearer_token,
    build_auth,
    challenge,
    client_id_for,
    exposure_error,
    is_loopback_host,
    is_open_path,
    load_static_tokens,
    match_token,
    parse_token_lines,
    retry_after_s,
    split_tokens,
    take,
    waiting,
)
from services.mcp.settings import Settings

RESOURCE = "https://mcp.example.test/mcp"
ISSUER = "https://issuer.example.test"


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.4.5.6", "::1", "[::1]", "localhost", "LocalHost"]
)
def test_loopback_hosts(host: str) -> None:
    assert is_loopback_host(host)
    assert exposure_error(host, has_credentials=False, allow_unauthenticated=False) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "", "::", "10.1.2.3", "192.168.0.7", "mcp.internal"])
def test_other_hosts_need_credentials(host: str) -> None:
    assert not is_loopback_host(host)
    error = exposure_error(host, has_credentials=False, allow_unauthenticated=False)
    assert error is not None
    for setting in ("C8_MCP_TOKENS", "C8_MCP_TOKENS_FILE", "C8_MCP_OAUTH_ISSUER"):
        assert setting in error
    assert exposure_error(host, has_credentials=True, allow_unauthenticated=False) is None
    assert exposure_error(host, has_credentials=False, allow_unauthenticated=True) is None


def test_token_parsing(tmp_path: Path) -> None:
    assert split_tokens(" a, ,b ,") == ["a", "b"]
    assert parse_token_lines("# comment\n\n  t1  \nt2\n#t3\n") == ["t1", "t2"]
    path = tmp_path / "tokens"
    path.write_text("# team A\nfile-1\nfile-2\nx\n")
    assert load_static_tokens("x, y", str(path)) == ("x", "y", "file-1", "file-2")
    assert load_static_tokens(None, None) == ()


def test_unusable_token_files_are_errors(tmp_path: Path) -> None:
    with pytest.raises(AuthConfigError, match="not readable"):
        load_static_tokens(None, str(tmp_path / "missing"))
    empty = tmp_path / "empty"
    empty.write_text("# nothing yet\n\n")
    with pytest.raises(AuthConfigError, match="holds no token"):
        load_static_tokens(None, str(empty))


def test_bearer_header() -> None:
    assert bearer_token(None) is None
    assert bearer_token("Basic dXNlcjpwdw==") is None
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Bearer") == ""


def test_constant_time_match() -> None:
    known = [b"alpha", b"beta"]
    assert match_token("beta", known)
    assert not match_token("bet", known)
    assert not match_token("", known)
    assert not match_token("gamma", [])


def test_client_id_does_not_reveal_the_token() -> None:
    name = client_id_for("s3cret-token")
    assert name.startswith("token:") and "s3cret" not in name
    assert name == client_id_for("s3cret-token") != client_id_for("other")


def _answer(**extra: object) -> dict[str, object]:
    return {
        "active": True,
        "client_id": "agent-1",
        "scope": "reports:read x",
        "aud": RESOURCE,
        **extra,
    }


def test_introspection_answers() -> None:
    def check(answer: dict[str, object]) -> object:
        return access_token_from_introspection("t", answer, 1000.0, RESOURCE, ISSUER)

    ok = check(_answer(exp=2000, sub="alice", iss=ISSUER + "/"))
    assert ok is not None
    assert (ok.client_id, ok.scopes, ok.expires_at, ok.subject) == (
        "agent-1",
        ["reports:read", "x"],
        2000,
        "alice",
    )
    assert check(_answer(aud=["other", RESOURCE + "/"])) is not None
    assert check(_answer(active=False)) is None
    assert check({"active": "true", "aud": RESOURCE}) is None
    assert check(_answer(exp=999)) is None  # expired
    assert check(_answer(aud="https://other.example.test/mcp")) is None  # meant for another server
    assert check({"active": True, "client_id": "c"}) is None  # no audience: refused
    assert check(_answer(iss="https://evil.example.test")) is None


def test_challenge_and_retry_after() -> None:
    assert challenge(None, None, None) == 'Bearer realm="context8"'
    assert challenge(
        "invalid_token", "bad", "https://h/.well-known/oauth-protected-resource/mcp"
    ) == (
        'Bearer realm="context8", error="invalid_token", error_description="bad", '
        'resource_metadata="https://h/.well-known/oauth-protected-resource/mcp"'
    )
    assert retry_after_s(0.01) == 1
    assert retry_after_s(1.0) == 1
    assert retry_after_s(1.2) == 2


def test_open_paths() -> None:
    assert is_open_path("/healthz") and is_open_path("/readyz") and is_open_path("/openapi.json")
    assert is_open_path("/.well-known/oauth-protected-resource/mcp")
    assert not is_open_path("/mcp") and not is_open_path("/v1/reports")
    assert not is_open_path("/healthz/x")


def test_token_bucket() -> None:
    bucket: Bucket | None = None
    waits = []
    for _ in range(4):
        bucket, wait = take(bucket, 10.0, rate=2.0, burst=3)
        waits.append(wait)
    assert waits == [0.0, 0.0, 0.0, 0.5]  # burst of 3, then 1 token takes 0.5 s at 2/s
    assert bucket is not None
    bucket, wait = take(bucket, 10.5, rate=2.0, burst=3)
    assert wait == 0.0 and bucket.tokens == pytest.approx(0.0)
    assert waiting(bucket, 10.5, rate=2.0, burst=3) == pytest.approx(0.5)  # peek spends nothing
    assert waiting(bucket, 11.0, rate=2.0, burst=3) == 0.0
    assert waiting(None, 0.0, rate=2.0, burst=3) == 0.0
    bucket, wait = take(bucket, 1000.0, rate=2.0, burst=3)  # refills to burst, not beyond
    assert wait == 0.0 and bucket.tokens == pytest.approx(2.0)


def test_rate_limiter_is_per_client_and_prunes() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=1.0, burst=2, max_clients=3, clock=lambda: now[0])
    assert [limiter.check("a") for _ in range(3)] == [0.0, 0.0, 1.0]
    assert limiter.check("b") == 0.0  # another client has its own bucket
    now[0] = 10.0
    for key in ("c", "d", "e"):
        limiter.check(key)
    # a and b are full again (idle > burst/rate): dropped, as if never seen
    assert set(limiter.buckets) == {"c", "d", "e"}
    assert limiter.check("a") == 0.0


async def test_static_and_chained_verifiers() -> None:
    static = StaticTokenVerifier(["one", "two"], scopes=["reports:read"])
    access = await static.verify_token("two")
    assert access is not None and access.client_id == client_id_for("two")
    assert access.scopes == ["reports:read"]
    assert await static.verify_token("three") is None
    chain = ChainTokenVerifier([StaticTokenVerifier(["x"]), static])
    assert await chain.verify_token("one") is not None
    assert await chain.verify_token("nope") is None


def _settings(**values: object) -> Settings:
    return Settings.model_validate({"redis_url": "redis://127.0.0.1:1/0", **values})


def test_build_auth_modes(tmp_path: Path) -> None:
    open_ = build_auth(_settings())
    assert open_.mode == "open" and open_.middleware.verifier is None
    assert open_.middleware.limiter is not None  # 50 rps / burst 100 by default
    assert build_auth(_settings(mcp_rate_limit_rps=0)).middleware.limiter is None

    with pytest.raises(AuthConfigError, match="C8_MCP_TOKENS"):
        build_auth(_settings(mcp_host="0.0.0.0"))
    assert build_auth(_settings(mcp_host="0.0.0.0", mcp_allow_unauthenticated=True)).mode == "open"
    tokens = build_auth(_settings(mcp_host="0.0.0.0", mcp_tokens=SecretStr("a,b")))
    assert (tokens.mode, tokens.static_tokens, tokens.mcp_auth) == ("tokens", 2, None)
    with pytest.raises(AuthConfigError, match="not readable"):
        build_auth(_settings(mcp_tokens_file=str(tmp_path / "missing")))

    with pytest.raises(ValidationError, match="C8_MCP_OAUTH_RESOURCE_URL"):
        _settings(mcp_oauth_issuer=ISSUER)
    oauth = build_auth(
        _settings(
            mcp_host="0.0.0.0",
            mcp_tokens=SecretStr("a"),
            mcp_oauth_issuer=ISSUER,
            mcp_oauth_introspection_url=ISSUER + "/introspect",
            mcp_oauth_resource_url=RESOURCE,
            mcp_oauth_required_scopes="reports:read",
        )
    )
    assert oauth.mode == "tokens+oauth"
    assert oauth.mcp_auth is not None and oauth.mcp_token_verifier is oauth.middleware.verifier
    assert isinstance(oauth.middleware.verifier, ChainTokenVerifier)
    assert isinstance(oauth.middleware.verifier.verifiers[1], IntrospectionTokenVerifier)
    assert oauth.middleware.required_scopes == ("reports:read",)
    assert oauth.middleware.resource_metadata_url == (
        "https://mcp.example.test/.well-known/oauth-protected-resource/mcp"
    )
