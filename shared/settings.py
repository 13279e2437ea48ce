"""Settings common to every service; each service subclasses ``ServiceSettings``.

Every variable is read from the environment with the ``C8_`` prefix (for example
``C8_REDIS_URL``); the full table is in README.md.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_node_id() -> str:
    """Host, pid and a random suffix: unique per process start."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class ServiceSettings(BaseSettings):
    """What every service reads."""

    model_config = SettingsConfigDict(env_prefix="C8_", extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"
    #: Socket timeouts and retry budget are explicit so failure detection fits inside
    #: lease TTLs (redis-py's defaults can block for many seconds).
    redis_socket_timeout_s: float = Field(default=1.0, gt=0)
    redis_connect_timeout_s: float = Field(default=1.0, gt=0)
    redis_retries: int = Field(default=2, ge=0, le=10)
    #: Connections a client may open (per server on a cluster). redis-py 8 caps a pool at
    #: 100 by default and fails calls beyond it (MaxConnectionsError): ingest's per-symbol
    #: claim renewals for 100+ symbols then failed and the claims were lost.
    redis_max_connections: int = Field(default=4096, gt=0)
    #: ACL user and password (shared/acl.py has each service's user); the password
    #: from the env or, better, a file (read at start). Not with credentials in the URL.
    redis_username: str | None = None
    redis_password: SecretStr | None = None
    redis_password_file: Path | None = None
    #: TLS (``rediss://`` / ``rediss+cluster://``): the CA that signed the server's
    #: certificate, and this client's certificate and key when the server asks for one.
    redis_tls_ca_file: Path | None = None
    redis_tls_cert_file: Path | None = None
    redis_tls_key_file: Path | None = None
    node_id: str = Field(default_factory=default_node_id, min_length=1)
    metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    log_level: str = "INFO"
    #: ``json`` (one JSON object per line) or ``console`` (human readable).
    log_format: str = "json"
    #: Report candidate partitions (streams calc writes, publishers read); the same on
    #: every calc worker and publisher of a fleet.
    candidate_partitions: int = Field(default=8, ge=1, le=1024)

    @field_validator("log_level")
    @classmethod
    def _upper_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(f"unknown log level {value!r}")
        return level

    @field_validator("log_format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value not in {"json", "console"}:
            raise ValueError("log_format must be 'json' or 'console'")
        return value
