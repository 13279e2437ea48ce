"""Publisher settings (env ``C8_PUBLISHER_*`` plus the common ``C8_*``)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    #: Validate every report against schema 1.2 before writing (invalid -> rejected).
    publisher_validate: bool = True
    #: Most candidates read (and written in one pipeline) per batch.
    publisher_batch: int = Field(default=256, ge=1, le=10_000)
    #: XREADGROUP BLOCK time; also bounds how long SIGTERM waits for a quiet stream.
    publisher_block_ms: int = Field(default=500, ge=1, le=5_000)
    #: Approximate MAXLEN of each symbol's audit stream.
    publisher_audit_maxlen: int = Field(default=1000, ge=1)
    #: TTL of this publisher's lease on each candidate partition it reads (renewed every
    #: third of it): a dead publisher's partitions are taken over after about this long.
    publisher_partition_ttl_ms: int = Field(default=1000, ge=100, le=60_000)
