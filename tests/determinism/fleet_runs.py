"""Helpers for the fleet-level determinism tests: a short data slice, a fleet run.

The fleet is started piece by piece (not ``Fleet.start()``): one calc worker, the
coordinator told both symbols up front (``C8_COORDINATOR_SYMBOLS``), and ingest only
after the worker holds both writer leases. The worker then reads each stream from its
first entry, so the trade windows of every cycle cover the same entries in every run
(a takeover would restart them at the newest checkpoint).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from context8.fleet import Fleet, FleetConfig, wait_until
from shared import keys
from tests.conftest import DATA
from tests.support.candidates import CandidateReader

SYMBOLS = ("BTCUSDT", "ETHUSDT")
#: The first day-file of each bundled session (it covers the first ~3 minutes).
FIRST_FILES = (
    "binance-usdm/BTCUSDT/btcusdt_20240718.gz",
    "binance-usdm/ETHUSDT/ethusdt_20240718.gz",
)


def write_slice(root: Path, seconds: float) -> list[Path]:
    """Truncated gzip copies of the bundled files, same kit layout under ``root``.

    Each keeps its lines up to ``seconds`` of local receive time after its first line
    (well past the REST snapshot line, which comes ~0.3 s in): a cut recording.
    """
    out: list[Path] = []
    for rel in FIRST_FILES:
        dst = root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        kept: list[bytes] = []
        first: int | None = None
        snapshot = False
        with gzip.open(DATA / rel, "rb") as src:
            for line in src:
                ts = int(line.split(b" ", 1)[0])
                first = ts if first is None else first
                if ts - first > seconds * 1e9:
                    break
                snapshot = snapshot or b'"lastUpdateId"' in line[:80]
                kept.append(line)
        assert snapshot, f"the slice of {rel} must include the snapshot line"
        with gzip.open(dst, "wb") as fh:
            fh.writelines(kept)
        out.append(dst)
    return out


@dataclass
class FleetRun:
    """What one fleet run emitted: every candidate, and published reports seen."""

    #: symbol -> {cycle time ms: report} (every candidate the calc wrote)
    candidates: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    #: symbol -> {generated_at: report} read back from report:{SYMBOL} while running
    published: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    exit_codes: dict[str, int | None] = field(default_factory=dict)
    #: Cycles emitted more than once with different content (must stay empty).
    conflicts: list[tuple[str, int]] = field(default_factory=list)


def run_fleet(
    files: list[Path], speed: str, workdir: Path, until_ms: dict[str, int], timeout: float = 90.0
) -> FleetRun:
    """Replay ``files`` through a real fleet until each symbol's cycle ``until_ms[symbol]``
    (the last one before its final market event) has been emitted.

    The stall watchdog (wall-time driven by design) is pushed out of the way with a long
    grace: a CPU-starved ingest must not make the worker advance the clock by itself.
    """
    config = FleetConfig(
        calc_workers=1,
        speed=speed,
        replay_files=tuple(files),
        extra_env={
            "C8_COORDINATOR_SYMBOLS": ",".join(SYMBOLS),
            "C8_INGEST_NAUTILUS_LOG_LEVEL": "ERROR",
            "C8_CALC_STALL_GRACE_MS": "60000",
        },
    )
    fleet = Fleet(config, workdir=workdir)
    run = FleetRun({s: {} for s in SYMBOLS}, {s: {} for s in SYMBOLS})
    try:
        fleet.redis.start()
        client = redis.Redis.from_url(fleet.redis.url)
        fleet.start_service("coordinator")
        fleet.start_service("publisher")
        fleet.start_calc()
        assert wait_until(lambda: all(client.exists(keys.lease(s)) for s in SYMBOLS), timeout=60), (
            f"leases not taken; dead: {[s.name for s in fleet.dead_services()]}"
        )
        fleet.start_service(
            "ingest",
            {
                "C8_INGEST_MODE": "replay",
                "C8_INGEST_SPEED": speed,
                "C8_INGEST_REPLAY_FILES": ",".join(str(p) for p in files),
            },
        )
        reader = CandidateReader(client, SYMBOLS)

        def collect() -> bool:
            for cand in reader.read():
                report = json.loads(cand.report_json)
                seen = run.candidates[cand.symbol].setdefault(cand.event_ms, report)
                if seen != report:
                    run.conflicts.append((cand.symbol, cand.event_ms))
            for sym in SYMBOLS:
                raw = client.hget(keys.report(sym), "json")
                if raw is not None:
                    report = json.loads(raw)
                    run.published[sym][report["generated_at"]] = report
            return all(until_ms[sym] in run.candidates[sym] for sym in SYMBOLS)

        assert wait_until(collect, timeout=timeout, interval=0.0), (
            f"last cycles not emitted after {timeout} s; "
            f"dead: {[s.name for s in fleet.dead_services()]}"
        )
        client.close()
    finally:
        run.exit_codes = fleet.stop()
    return run
