"""Live ingest over real sockets: the venue emulator, ingest processes pointed at it.

Four markets from the bundled recordings: Binance USDⓈ-M BTCUSDT (2024-07), spot BTCUSDT
and COIN-M BTCUSD_PERP (2024-08-08), Bybit linear XRPUSDT. Spot BTCUSDT is published as
``BTCUSDTSPOT`` (the USDⓈ-M one is ``BTCUSDT``).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from context8.emulator.process import EmulatorProcess
from context8.fleet import Fleet, FleetConfig, wait_until
from shared import keys, wire
from tests.conftest import DATA, REPO

FILES: dict[str, list[Path]] = {
    "BTCUSDT": [
        DATA / "binance-usdm/BTCUSDT/btcusdt_20240718.gz",
        DATA / "binance-usdm/BTCUSDT/btcusdt_20240719.gz",
    ],
    "BTCUSDTSPOT": [DATA / "binance-spot/BTCUSDT/btcusdt_20240808.gz"],
    "BTCUSDPERP": [DATA / "binance-coinm/BTCUSD_PERP/btcusd_perp_20240808.gz"],
    "XRPUSDT": [DATA / "bybit-linear/XRPUSDT/2024-12-01_XRPUSDT_ob500.data.zip"],
}
LIVE_SYMBOLS = {
    "BTCUSDT": "binance-usdm:BTCUSDT",
    "BTCUSDTSPOT": "binance-spot:BTCUSDT",
    "BTCUSDPERP": "binance-coinm:BTCUSD_PERP",
    "XRPUSDT": "bybit-linear:XRPUSDT",
}
SYMBOL_MAP = "binance-spot:BTCUSDT=BTCUSDTSPOT"
#: Where each published symbol lives on the emulator: (market, venue symbol).
ON_EMULATOR = {sym: (spec.split(":")[0], spec.split(":")[1]) for sym, spec in LIVE_SYMBOLS.items()}


def files_of(*symbols: str) -> list[Path]:
    return [f for s in symbols for f in FILES[s]]


def live_env(redis_url: str, venue_urls: str, symbols: list[str], **extra: str) -> dict[str, str]:
    """The environment of a live ingest process for ``symbols`` (published names)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("C8_")}
    env.update(
        C8_REDIS_URL=redis_url,
        C8_LOG_LEVEL="INFO",
        C8_METRICS_PORT="0",
        C8_INGEST_MODE="live",
        C8_INGEST_LIVE_SYMBOLS=",".join(LIVE_SYMBOLS[s] for s in symbols),
        C8_INGEST_SYMBOL_MAP=SYMBOL_MAP,
        C8_INGEST_VENUE_URLS=venue_urls,
        C8_INGEST_NAUTILUS_LOG_LEVEL="ERROR",
    )
    env.update({f"C8_{k.upper()}": v for k, v in extra.items()})
    return env


def start_live_ingest(
    redis_url: str, venue_urls: str, symbols: list[str], log_path: Path, **extra: str
) -> subprocess.Popen[bytes]:
    """``python -m services.ingest`` in live mode (its JSON log lines in ``log_path``)."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "services.ingest"],
            cwd=REPO,
            env=live_env(redis_url, venue_urls, symbols, **extra),
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


def entries(client: redis.Redis, symbol: str) -> list[tuple[bytes, wire.Entry]]:
    return [(eid, wire.decode(f)) for eid, f in client.xrange(keys.stream(symbol))]  # type: ignore[union-attr]


def statuses(client: redis.Redis, symbol: str) -> list[tuple[str, str, int]]:
    """(state, reason, rt) of the symbol's status entries, in stream order."""
    return [
        (e.payload.state, e.payload.reason, e.recv_ns)
        for _, e in entries(client, symbol)
        if isinstance(e.payload, wire.StatusPayload)
    ]


def log_events(path: Path, event: str) -> list[dict[str, Any]]:
    """The service's JSON log lines with this ``event``."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{") and f'"{event}"' in line:
            record = json.loads(line)
            if record.get("event") == event:
                out.append(record)
    return out


def scaled_levels(levels: list[list[str]], pp: int, sp: int) -> dict[int, int]:
    """The emulator's true-book levels (venue strings) as the wire's scaled ints."""
    from decimal import Decimal

    return {
        int(Decimal(p) * 10**pp): int(Decimal(q) * 10**sp) for p, q in levels if Decimal(q) != 0
    }


@dataclass
class LiveFleet:
    """A whole fleet on live ingest against the emulator (``live_fleet``)."""

    fleet: Fleet
    client: redis.Redis
    #: Each service's exit code once stopped (filled when ``live_fleet`` exits).
    codes: dict[str, int | None] = field(default_factory=dict)


@contextlib.contextmanager
def live_fleet(
    emu: EmulatorProcess, symbols: Sequence[str], workdir: Path, streams: int, **env: str
) -> Iterator[LiveFleet]:
    """Coordinator, publisher, live ingest and one calc worker on ``symbols`` (published
    names) against ``emu`` (started with ``start="manual"``): once every symbol is
    registered, leased and subscribed to ``streams`` streams on its market, the venue
    starts talking, so the worker reads each stream from its first entry. ``env``:
    extra ``C8_*`` settings (they win over the defaults here)."""
    config = FleetConfig(
        calc_workers=1,
        live_symbols=",".join(LIVE_SYMBOLS[s] for s in symbols),
        extra_env={
            "C8_COORDINATOR_SYMBOLS": ",".join(symbols),
            "C8_INGEST_VENUE_URLS": emu.venue_urls,
            "C8_INGEST_NAUTILUS_LOG_LEVEL": "ERROR",
            # The calc stall watchdog runs on wall time: keep it out of the way.
            "C8_CALC_STALL_GRACE_MS": "60000",
            **env,
        },
    )
    fleet = Fleet(config, workdir=workdir)
    running: LiveFleet | None = None
    try:
        fleet.redis.start()
        running = LiveFleet(fleet, redis.Redis.from_url(fleet.redis.url))
        client = running.client
        fleet.start_service("coordinator")
        fleet.start_service("publisher")
        fleet.start_ingest()
        assert wait_until(lambda: client.hlen(keys.SYMBOLS) == len(symbols), 60)
        fleet.start_calc()
        assert wait_until(lambda: all(client.exists(keys.lease(s)) for s in symbols), 60)

        def subscribed() -> bool:
            markets = emu.stats()["markets"]
            return all(markets[ON_EMULATOR[s][0]]["subscriptions"] >= streams for s in symbols)

        assert wait_until(subscribed, 60), emu.stats()
        assert len(emu.start_clocks()) == len(symbols)
        yield running
    finally:
        if running is not None:
            running.client.close()
        codes = fleet.stop()
        if running is not None:
            running.codes = codes
