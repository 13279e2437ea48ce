"""MCP read API settings (env ``C8_MCP_*`` plus the common ``C8_*``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

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

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.mcp_down_after_ms <= self.mcp_stale_after_ms:
            raise ValueError("C8_MCP_DOWN_AFTER_MS must be greater than C8_MCP_STALE_AFTER_MS")
        return self
