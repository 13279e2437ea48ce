"""Ingest settings (environment variables ``C8_*``; table in services/ingest/README.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from shared.settings import ServiceSettings

#: Recorded data bundled with the repository (data/README.md).
DATA = Path(__file__).resolve().parents[2] / "data"
#: The demo slice: Binance USD-M BTCUSDT and ETHUSDT, 2024-07-18 23:57 -> 07-19 00:05 UTC.
DEMO_FILES: tuple[Path, ...] = tuple(
    DATA / name
    for name in (
        "binance-usdm/BTCUSDT/btcusdt_20240718.gz",
        "binance-usdm/BTCUSDT/btcusdt_20240719.gz",
        "binance-usdm/ETHUSDT/ethusdt_20240718.gz",
        "binance-usdm/ETHUSDT/ethusdt_20240719.gz",
    )
)


class Settings(ServiceSettings):
    """What the ingest service reads on top of the common settings."""

    #: ``replay`` (recorded files) or ``live`` (venue WebSockets through Nautilus's adapters).
    ingest_mode: Literal["replay", "live"] = "replay"
    #: Comma-separated recorded files laid out as ``<venue>-<market>/<SYMBOL>/<file>``;
    #: empty = the bundled demo slice (data/binance-usdm/{BTCUSDT,ETHUSDT}).
    ingest_replay_files: str = ""
    #: ``1`` = real time on exchange time, ``N`` = N times faster, ``max`` = unpaced.
    ingest_speed: str = "1"
    #: Keep running idle after the recording ends (false) or exit 0 (true).
    ingest_exit_at_end: bool = False
    #: Approximate MAXLEN of each symbol stream (XADD MAXLEN ~).
    ingest_stream_maxlen: int = Field(default=500_000, ge=1_000)
    #: Re-emit a checkpoint snapshot every this many seconds of exchange event time.
    ingest_checkpoint_interval_s: float = Field(default=30.0, gt=0)
    #: Entries per pipelined XADD batch, and the longest a written entry may wait.
    ingest_batch_size: int = Field(default=500, ge=1, le=100_000)
    ingest_flush_interval_ms: int = Field(default=20, ge=1, le=5_000)
    #: Event-time budget for the first snapshot before ``unbuildable`` is published.
    ingest_snapshot_wait_s: float = Field(default=10.0, gt=0)
    #: Override/extend the known precision table: ``RAW=PP:SP,...`` (e.g. ``BTCUSDT=1:3``).
    ingest_precisions: str = ""
    #: Rename feeds whose report symbols collide: ``binance-spot:BTCUSDT=BTCUSDTSPOT,...``.
    ingest_symbol_map: str = ""
    #: Live mode: comma-separated ``<venue>-<market>:<RAW SYMBOL>`` (e.g. ``binance-usdm:BTCUSDT``).
    ingest_live_symbols: str = ""
    #: Live mode: other servers for the venues' public APIs,
    #: ``<venue>-<market>=<http base>|<ws base>,...`` (unset: the real endpoints).
    ingest_venue_urls: str = ""
    #: How often the stream lengths (XLEN) are sampled for the metrics.
    ingest_stream_stats_interval_s: float = Field(default=5.0, gt=0)
    #: Replay progress line on stderr: ``auto`` (only when stderr is a terminal),
    #: ``always`` or ``never``.
    ingest_progress: Literal["auto", "always", "never"] = "auto"
    #: Expected maximum silence of a symbol's book feed (s); longer is a stall (0 = off).
    ingest_stall_after_s: float = Field(default=10.0, ge=0)
    #: Per-symbol overrides of the stall limit: ``BTCUSDT=5,XRPUSDT=30,SOLUSDT=off``.
    ingest_stall_after: str = ""
    #: Live Binance futures: seconds between open interest REST polls per symbol (0 = off).
    ingest_open_interest_poll_s: float = Field(default=30.0, ge=0)
    #: TTL of this process's claim on each of its symbols (renewed every third of it); a
    #: standby takes a lapsed claim over within a tenth of it.
    ingest_claim_ttl_s: float = Field(default=2.0, gt=0)
    #: Log level of NautilusTrader's own logger (its logs go to stdout).
    ingest_nautilus_log_level: str = "WARNING"

    @field_validator("ingest_speed")
    @classmethod
    def _valid_speed(cls, value: str) -> str:
        text = value.strip().lower()
        if text == "max":
            return text
        try:
            speed = float(text)
        except ValueError as exc:
            raise ValueError(
                f"C8_INGEST_SPEED must be a positive number or 'max', not {value!r}"
            ) from exc
        if not speed > 0:
            raise ValueError(f"C8_INGEST_SPEED must be > 0, not {value!r}")
        return text

    @property
    def speed(self) -> float | None:
        """Replay speed factor; None = as fast as possible."""
        return None if self.ingest_speed == "max" else float(self.ingest_speed)

    def stall_overrides(self) -> dict[str, float]:
        """``C8_INGEST_STALL_AFTER`` parsed: {symbol: seconds} (0 = off); ``ConfigError``."""
        from services.ingest.stall import parse_stall_overrides

        return parse_stall_overrides(self.ingest_stall_after)

    def replay_paths(self) -> list[Path]:
        paths = [Path(p.strip()) for p in self.ingest_replay_files.split(",") if p.strip()]
        if not paths:
            paths = list(DEMO_FILES)
        return paths
