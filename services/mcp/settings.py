"""MCP read API settings (env ``C8_MCP_*`` plus the common ``C8_*``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    #: ``http`` (uvicorn: streamable HTTP MCP at /mcp + JSON routes) or ``stdio``.
    mcp_transport: Literal["http", "stdio"] = "http"
    mcp_host: str = "127.0.0.1"
    mcp_port: int = Field(default=8080, ge=1, le=65535)
    #: A report not rewritten for longer than this is served as ``degraded``.
    mcp_stale_after_ms: int = Field(default=3000, gt=0)
    #: A report not rewritten for longer than this is served as ``down``.
    mcp_down_after_ms: int = Field(default=15000, gt=0)
    #: Most symbols one get_reports call may ask for.
    mcp_max_batch: int = Field(default=50, gt=0, le=1000)
    #: On SIGTERM, open HTTP connections get this long to finish before they are closed.
    mcp_shutdown_grace_s: int = Field(default=3, ge=0, le=60)
    # --- push (services/mcp/push.py; README "Push") ---
    #: At most one update notification per subscriber and symbol per this many ms (the
    #: newest update inside the interval is delivered at its end).
    mcp_push_min_interval_ms: int = Field(default=250, ge=0, le=60_000)
    #: Notifications queued for one subscriber before it is dropped as a slow consumer.
    mcp_push_queue: int = Field(default=256, ge=1, le=100_000)
    #: Open push subscriptions (SSE streams, listen streams, legacy sessions) per process.
    mcp_push_max_subscribers: int = Field(default=10_000, ge=1)
    #: GET /v1/stream sends a keep-alive comment after this long without events.
    mcp_sse_heartbeat_s: float = Field(default=15.0, gt=0, le=300)
    #: Expected time between two reports of a symbol (calc's cycle): a fresh report's
    #: resources/read cache hint is at most this minus the report's write age.
    mcp_report_cycle_ms: int = Field(default=250, ge=0, le=60_000)
    # --- auth and rate limits (services/mcp/auth.py; README "Auth") ---
    #: Static bearer tokens, comma-separated (HTTP routes and /mcp).
    mcp_tokens: SecretStr | None = None
    #: File with one bearer token per line (blank lines and ``#`` comments skipped), read at start.
    mcp_tokens_file: str | None = None
    #: OAuth 2.1 resource-server mode: the issuer (authorization server) URL ...
    mcp_oauth_issuer: str | None = None
    #: ... its RFC 7662 token introspection endpoint ...
    mcp_oauth_introspection_url: str | None = None
    #: ... and this server's public MCP URL (the token audience / RFC 8707 resource).
    mcp_oauth_resource_url: str | None = None
    #: Client credentials for the introspection call (HTTP Basic), when the issuer wants them.
    mcp_oauth_client_id: str | None = None
    mcp_oauth_client_secret: SecretStr | None = None
    #: Comma-separated scopes every OAuth token must carry (403 otherwise).
    mcp_oauth_required_scopes: str = ""
    #: Serve a non-loopback address without credentials (only behind an authenticating proxy).
    mcp_allow_unauthenticated: bool = False
    #: Per-client token bucket: sustained requests/s (0 disables) and burst size.
    mcp_rate_limit_rps: float = Field(default=50.0, ge=0)
    mcp_rate_limit_burst: int = Field(default=100, ge=1)

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.mcp_down_after_ms <= self.mcp_stale_after_ms:
            raise ValueError("C8_MCP_DOWN_AFTER_MS must be greater than C8_MCP_STALE_AFTER_MS")
        return self

    @model_validator(mode="after")
    def _check_oauth(self) -> Settings:
        oauth = (
            self.mcp_oauth_issuer,
            self.mcp_oauth_introspection_url,
            self.mcp_oauth_resource_url,
        )
        if any(oauth) and not all(oauth):
            raise ValueError(
                "OAuth resource-server mode needs all of C8_MCP_OAUTH_ISSUER, "
                "C8_MCP_OAUTH_INTROSPECTION_URL and C8_MCP_OAUTH_RESOURCE_URL"
            )
        return self
