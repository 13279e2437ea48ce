"""Bearer-token auth and per-client rate limits for the HTTP face of the read API.

Pure parts (unit-tested without a server): the start-up exposure rule, token parsing and
constant-time matching, the RFC 7662 introspection answer -> ``AccessToken`` mapping, the
``WWW-Authenticate`` challenge and the token bucket. Thin shell: ``AuthMiddleware`` (pure
ASGI, so streaming responses pass through untouched), the token verifiers (the MCP SDK's
``TokenVerifier`` protocol) and ``build_auth`` (settings -> what main wires in).

Credentials, in the order they are tried: static bearer tokens (``C8_MCP_TOKENS``,
``C8_MCP_TOKENS_FILE``), then OAuth 2.1 resource-server mode (tokens checked by the
issuer's introspection endpoint). With none configured every route is open, which the
start-up rule allows on loopback addresses only. stdio MCP needs none of this: the client
started the process and owns its stdin/stdout.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import structlog
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.routes import build_resource_metadata_url
from mcp.server.auth.settings import AuthSettings
from pydantic import AnyHttpUrl
from starlette.authentication import AuthCredentials
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from services.mcp.metrics import AUTH_FAILURES, RATE_LIMITED
from services.mcp.settings import Settings
from shared.errors import ConfigError

log = structlog.get_logger("mcp.auth")

REALM = "context8"
#: Never behind auth: probes (orchestrators carry no token), the API description (no
#: data in it) and the OAuth discovery document (a client reads it to get a token).
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json"})
OPEN_PREFIXES = ("/.well-known/oauth-protected-resource",)

CREDENTIAL_SETTINGS = "C8_MCP_TOKENS, C8_MCP_TOKENS_FILE or C8_MCP_OAUTH_ISSUER"


class AuthConfigError(ConfigError):
    """Auth settings that must stop the service at start-up (exit code 2)."""


# --- pure: start-up rule ---------------------------------------------------------


def is_loopback_host(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; False for 0.0.0.0, '' and names."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # another host name: may resolve to anything


def exposure_error(host: str, has_credentials: bool, allow_unauthenticated: bool) -> str | None:
    """Why serving ``host`` is refused (None: allowed). Open access is loopback-only."""
    if has_credentials or allow_unauthenticated or is_loopback_host(host):
        return None
    return (
        f"refusing to serve C8_MCP_HOST={host!r} without credentials: a non-loopback "
        f"address needs {CREDENTIAL_SETTINGS} (or C8_MCP_ALLOW_UNAUTHENTICATED=true when an "
        "authenticating proxy guards it; or bind 127.0.0.1)"
    )


# --- pure: tokens ------------------------------------------------------------------


def split_tokens(value: str) -> list[str]:
    """``C8_MCP_TOKENS``: comma-separated, blanks ignored."""
    return [t.strip() for t in value.split(",") if t.strip()]


def parse_token_lines(text: str) -> list[str]:
    """A tokens file: one token per line, blank lines and ``#`` comments ignored."""
    return [s for s in (line.strip() for line in text.splitlines()) if s and not s.startswith("#")]


def load_static_tokens(tokens: str | None, tokens_file: str | None) -> tuple[str, ...]:
    """Every configured static token; raise ``AuthConfigError`` for an unusable file."""
    found = split_tokens(tokens or "")
    if tokens_file:
        try:
            text = Path(tokens_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise AuthConfigError(
                f"C8_MCP_TOKENS_FILE={tokens_file!r} is not readable: {exc}"
            ) from exc
        from_file = parse_token_lines(text)
        if not from_file:
            raise AuthConfigError(f"C8_MCP_TOKENS_FILE={tokens_file!r} holds no token")
        found += from_file
    if any(any(c.isspace() for c in t) for t in found):
        raise AuthConfigError("bearer tokens must not contain whitespace")
    return tuple(dict.fromkeys(found))


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (None: no bearer header)."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip()


def client_id_for(token: str) -> str:
    """A stable, non-secret name for a static token (rate-limit key, logs)."""
    return "token:" + hashlib.sha256(token.encode()).hexdigest()[:12]


def match_token(presented: str, known: Sequence[bytes]) -> bool:
    """Constant-time membership: every known token is compared, whatever matches."""
    candidate = presented.encode()
    hit = False
    for token in known:
        hit |= hmac.compare_digest(candidate, token)
    return hit


def _same_url(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def access_token_from_introspection(
    token: str, answer: Mapping[str, Any], now: float, resource: str, issuer: str
) -> AccessToken | None:
    """An RFC 7662 introspection answer -> the SDK's ``AccessToken`` (None: refuse).

    Refused unless active, unexpired and issued for ``resource`` (``aud``; the MCP auth
    spec forbids accepting tokens meant for another server). A stated ``iss`` must be
    ``issuer``.
    """
    if answer.get("active") is not True:
        return None
    exp = answer.get("exp")
    if exp is not None and (not isinstance(exp, int | float) or exp <= now):
        return None
    aud = answer.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if not any(isinstance(a, str) and _same_url(a, resource) for a in audiences):
        return None
    iss = answer.get("iss")
    if iss is not None and not (isinstance(iss, str) and _same_url(iss, issuer)):
        return None
    scope = answer.get("scope")
    sub = answer.get("sub")
    return AccessToken(
        token=token,
        client_id=str(answer.get("client_id") or sub or "oauth"),
        scopes=scope.split() if isinstance(scope, str) else [],
        expires_at=int(exp) if exp is not None else None,
        resource=resource,
        subject=sub if isinstance(sub, str) else None,
        claims={"iss": iss} if iss is not None else None,
    )


# --- pure: answers ---------------------------------------------------------------


def challenge(error: str | None, description: str | None, resource_metadata_url: str | None) -> str:
    """``WWW-Authenticate`` value (RFC 6750 §3; no error code when no token was sent)."""
    parts = [f'realm="{REALM}"']
    if error:
        parts.append(f'error="{error}"')
    if description:
        parts.append(f'error_description="{description}"')
    if resource_metadata_url:
        parts.append(f'resource_metadata="{resource_metadata_url}"')
    return "Bearer " + ", ".join(parts)


def retry_after_s(wait_s: float) -> int:
    """``Retry-After`` in whole seconds, at least 1 (0 would invite an instant retry)."""
    return max(1, math.ceil(wait_s))


# --- pure: token bucket ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bucket:
    tokens: float
    at: float


def _refilled(bucket: Bucket | None, now: float, rate: float, burst: int) -> float:
    if bucket is None:
        return float(burst)
    return min(float(burst), bucket.tokens + max(0.0, now - bucket.at) * rate)


def waiting(bucket: Bucket | None, now: float, rate: float, burst: int) -> float:
    """The wait (s) until the bucket allows a request, without spending one (0: now)."""
    tokens = _refilled(bucket, now, rate, burst)
    return 0.0 if tokens >= 1.0 else (1.0 - tokens) / rate


def take(bucket: Bucket | None, now: float, rate: float, burst: int) -> tuple[Bucket, float]:
    """Spend one request: the new bucket and the wait (s) until one is allowed (0: now)."""
    tokens = _refilled(bucket, now, rate, burst)
    if tokens >= 1.0:
        return Bucket(tokens - 1.0, now), 0.0
    return Bucket(tokens, now), (1.0 - tokens) / rate


class RateLimiter:
    """One token bucket per client key (token's client id, or ``ip:<addr>`` when open)."""

    def __init__(
        self,
        rate: float,
        burst: int,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self.clock = clock
        self.buckets: dict[str, Bucket] = {}

    def check(self, key: str) -> float:
        """Spend one request for ``key``; the wait in seconds when it is over its limit."""
        now = self.clock()
        bucket, wait = take(self.buckets.get(key), now, self.rate, self.burst)
        self.buckets[key] = bucket
        if len(self.buckets) > self.max_clients:
            self._prune(now)
        return wait

    def wait(self, key: str) -> float:
        """The wait in seconds before ``key`` may make a request; nothing is spent."""
        return waiting(self.buckets.get(key), self.clock(), self.rate, self.burst)

    def _prune(self, now: float) -> None:
        # A bucket idle long enough to be full again is the same as no bucket.
        full_after = self.burst / self.rate
        self.buckets = {k: b for k, b in self.buckets.items() if now - b.at < full_after}
        if len(self.buckets) > self.max_clients:  # a flood of clients: keep the newest half
            newest = sorted(self.buckets.items(), key=lambda kv: kv[1].at)[len(self.buckets) // 2 :]
            self.buckets = dict(newest)


# --- verifiers (the SDK's TokenVerifier protocol) -----------------------------------


class StaticTokenVerifier:
    """Static bearer tokens; they carry ``scopes`` (the required ones: full access)."""

    def __init__(self, tokens: Iterable[str], scopes: Sequence[str] = ()) -> None:
        self._tokens = [t.encode() for t in tokens]
        self._scopes = list(scopes)

    async def verify_token(self, token: str) -> AccessToken | None:
        if not match_token(token, self._tokens):
            return None
        return AccessToken(token=token, client_id=client_id_for(token), scopes=self._scopes)


class IntrospectionTokenVerifier:
    """OAuth 2.1 resource server: ask the issuer's RFC 7662 introspection endpoint.

    Accepted answers are cached for ``cache_s`` (never past the token's ``exp``) so a
    client's request rate does not become the issuer's. Any failure to get an answer
    refuses the token (401): the safe side.
    """

    def __init__(
        self,
        introspection_url: str,
        resource: str,
        issuer: str,
        client_id: str | None = None,
        client_secret: str | None = None,
        timeout_s: float = 5.0,
        cache_s: float = 30.0,
        max_cached: int = 10_000,
    ) -> None:
        self.introspection_url = introspection_url
        self.resource = resource
        self.issuer = issuer
        self._auth = aiohttp.BasicAuth(client_id, client_secret or "") if client_id else None
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._cache_s = cache_s
        self._max_cached = max_cached
        self._cache: dict[str, tuple[float, AccessToken]] = {}

    async def verify_token(self, token: str) -> AccessToken | None:
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.time()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        answer = await self._introspect(token)
        if answer is None:
            return None
        access = access_token_from_introspection(token, answer, now, self.resource, self.issuer)
        if access is not None:
            until = now + self._cache_s
            if access.expires_at is not None:
                until = min(until, float(access.expires_at))
            if len(self._cache) >= self._max_cached:
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
                if len(self._cache) >= self._max_cached:
                    self._cache.clear()
            self._cache[key] = (until, access)
        return access

    async def _introspect(self, token: str) -> dict[str, Any] | None:
        try:
            async with (
                aiohttp.ClientSession(timeout=self._timeout) as session,
                session.post(
                    self.introspection_url,
                    data={"token": token, "token_type_hint": "access_token"},
                    auth=self._auth,
                    headers={"Accept": "application/json"},
                ) as response,
            ):
                if response.status != 200:
                    log.warning("oauth_introspection_failed", status=response.status)
                    return None
                answer = orjson.loads(await response.read())
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
            log.warning("oauth_introspection_failed", error=repr(exc))
            return None
        return answer if isinstance(answer, dict) else None


class ChainTokenVerifier:
    """The first verifier that accepts the token wins (static tokens, then OAuth)."""

    def __init__(self, verifiers: Sequence[TokenVerifier]) -> None:
        self.verifiers = list(verifiers)

    async def verify_token(self, token: str) -> AccessToken | None:
        for verifier in self.verifiers:
            access = await verifier.verify_token(token)
            if access is not None:
                return access
        return None


# --- ASGI middleware ---------------------------------------------------------------


@dataclass(frozen=True)
class AuthConfig:
    """What ``AuthMiddleware`` enforces. ``verifier`` None: open (loopback) mode."""

    verifier: TokenVerifier | None = None
    required_scopes: tuple[str, ...] = ()
    resource_metadata_url: str | None = None
    limiter: RateLimiter | None = None


def is_open_path(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def _client_key(scope: Scope) -> str:
    client = scope.get("client")
    return f"ip:{client[0]}" if client else "ip:unknown"


class AuthMiddleware:
    """Pure ASGI: checks the bearer token and the client's rate limit, then passes the
    request on untouched (no response buffering, so SSE and MCP streams keep streaming).

    An accepted token is put where the SDK looks for it (``scope["user"]`` /
    ``scope["auth"]`` and its auth contextvar), so the SDK's own ``RequireAuthMiddleware``
    on ``/mcp`` (OAuth mode) and ``get_access_token()`` in tools see the caller.
    """

    def __init__(self, app: ASGIApp, config: AuthConfig) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or is_open_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        config = self.config
        user: AuthenticatedUser | None = None
        key = _client_key(scope)
        if config.verifier is not None:
            # Refused requests spend from a per-IP bucket of their own: a client guessing
            # tokens is slowed down (429) before it reaches the verifier or the issuer.
            if config.limiter is not None and (wait := config.limiter.wait(_fail_key(scope))):
                await _too_many(scope, send, wait)
                return
            token = bearer_token(Headers(scope=scope).get("authorization"))
            if token is None:
                await self._refuse(scope, send, "missing", 401, None, "bearer token required")
                return
            access = await config.verifier.verify_token(token) if token else None
            if access is None or (
                access.expires_at is not None and access.expires_at < time.time()
            ):
                await self._refuse(
                    scope, send, "invalid", 401, "invalid_token", "token unknown or expired"
                )
                return
            missing = [s for s in config.required_scopes if s not in access.scopes]
            if missing:
                await self._refuse(
                    scope,
                    send,
                    "insufficient_scope",
                    403,
                    "insufficient_scope",
                    f"required scope: {' '.join(config.required_scopes)}",
                )
                return
            user = AuthenticatedUser(access)
            scope = {**scope, "user": user, "auth": AuthCredentials(access.scopes)}
            key = access.client_id
        if config.limiter is not None:
            wait = config.limiter.check(key)
            if wait > 0:
                await _too_many(scope, send, wait)
                return
        if user is None:
            await self.app(scope, receive, send)
            return
        reset = auth_context_var.set(user)
        try:
            await self.app(scope, receive, send)
        finally:
            auth_context_var.reset(reset)

    async def _refuse(
        self,
        scope: Scope,
        send: Send,
        reason: str,
        status: int,
        error: str | None,
        description: str,
    ) -> None:
        AUTH_FAILURES.labels(reason).inc()
        if self.config.limiter is not None:
            self.config.limiter.check(_fail_key(scope))
        # No token sent: a bare challenge (RFC 6750 §3.1), the details go in the body.
        header = challenge(error, description if error else None, self.config.resource_metadata_url)
        body = {"error": error or "unauthorized", "error_description": description}
        await _send_json(scope, send, status, body, [(b"www-authenticate", header.encode())])


def _fail_key(scope: Scope) -> str:
    return "refused:" + _client_key(scope)


async def _too_many(scope: Scope, send: Send, wait: float) -> None:
    RATE_LIMITED.inc()
    seconds = retry_after_s(wait)
    body = {"error": f"rate limit exceeded; retry in {seconds} s"}
    await _send_json(scope, send, 429, body, [(b"retry-after", str(seconds).encode())])


async def _send_json(
    scope: Scope, send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]]
) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})  # policy violation
        return
    payload = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"cache-control", b"no-store"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


# --- settings -> wiring --------------------------------------------------------------


@dataclass(frozen=True)
class AuthSetup:
    """What main wires in: the middleware config and, in OAuth mode, the SDK's auth."""

    middleware: AuthConfig
    mode: str  # open | tokens | oauth | tokens+oauth
    static_tokens: int = 0
    #: For ``MCPServer(auth=..., token_verifier=...)``: protected-resource metadata route
    #: and the SDK's own check on /mcp. None without OAuth (AuthSettings needs an issuer).
    mcp_auth: AuthSettings | None = None
    mcp_token_verifier: TokenVerifier | None = field(default=None)


def build_auth(settings: Settings) -> AuthSetup:
    """Settings -> auth wiring; ``AuthConfigError`` when the service must not start."""
    tokens = load_static_tokens(
        settings.mcp_tokens.get_secret_value() if settings.mcp_tokens else None,
        settings.mcp_tokens_file,
    )
    scopes = tuple(split_tokens(settings.mcp_oauth_required_scopes))
    verifiers: list[TokenVerifier] = []
    if tokens:
        verifiers.append(StaticTokenVerifier(tokens, scopes))
    mcp_auth: AuthSettings | None = None
    metadata_url: str | None = None
    oauth = settings.mcp_oauth_issuer is not None
    if settings.mcp_oauth_issuer and settings.mcp_oauth_resource_url:
        try:
            resource_url = AnyHttpUrl(settings.mcp_oauth_resource_url)
            mcp_auth = AuthSettings(
                issuer_url=AnyHttpUrl(settings.mcp_oauth_issuer),
                resource_server_url=resource_url,
                required_scopes=list(scopes) or None,
                # IntrospectionTokenVerifier checks the audience itself.
                validate_token_resource=False,
            )
        except ValueError as exc:
            raise AuthConfigError(f"bad OAuth setting: {exc}") from exc
        metadata_url = str(build_resource_metadata_url(resource_url))
        secret = settings.mcp_oauth_client_secret
        verifiers.append(
            IntrospectionTokenVerifier(
                str(settings.mcp_oauth_introspection_url),
                settings.mcp_oauth_resource_url,
                settings.mcp_oauth_issuer,
                settings.mcp_oauth_client_id,
                secret.get_secret_value() if secret else None,
            )
        )
    problem = exposure_error(settings.mcp_host, bool(verifiers), settings.mcp_allow_unauthenticated)
    if problem:
        raise AuthConfigError(problem)
    verifier: TokenVerifier | None = None
    if len(verifiers) == 1:
        verifier = verifiers[0]
    elif verifiers:
        verifier = ChainTokenVerifier(verifiers)
    limiter = (
        RateLimiter(settings.mcp_rate_limit_rps, settings.mcp_rate_limit_burst)
        if settings.mcp_rate_limit_rps > 0
        else None
    )
    mode = "+".join(m for m, on in (("tokens", bool(tokens)), ("oauth", oauth)) if on) or "open"
    return AuthSetup(
        middleware=AuthConfig(verifier, scopes, metadata_url, limiter),
        mode=mode,
        static_tokens=len(tokens),
        mcp_auth=mcp_auth,
        mcp_token_verifier=verifier if mcp_auth is not None else None,
    )
