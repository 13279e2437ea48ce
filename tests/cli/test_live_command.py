"""``context8 live`` (``./run live``), the main job, as a user runs it: the whole fleet
headless on live venue data (the venue emulator over real sockets), an unreachable venue,
a bad symbol list."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from context8.emulator.process import EmulatorProcess
from context8.redis_server import free_port
from shared.report import schema_errors
from tests.conftest import REPO
from tests.support.live_ingest import files_of

pytestmark = pytest.mark.timeout(180)


def _live(*args: str, venue_urls: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("C8_")}
    if venue_urls:
        env["C8_INGEST_VENUE_URLS"] = venue_urls
    return subprocess.run(
        [sys.executable, "-m", "context8", "live", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )


def test_live_fleet_with_a_standby_prints_fresh_reports() -> None:
    with EmulatorProcess(files_of("BTCUSDT", "BTCUSDPERP"), speed=1) as emu:
        run = _live(
            "binance-usdm:BTCUSDT,binance-coinm:BTCUSD_PERP",
            "--duration",
            "15",
            "--standby",
            venue_urls=emu.venue_urls,
        )
        stats = emu.stats()["markets"]
    assert run.returncode == 0, run.stderr[-2000:]
    # Headless, the reports go to stdout and where to read them to stderr.
    err = "".join(run.stderr.split())  # the console wraps long lines
    assert re.search(r"MCPathttp://127\.0\.0\.1:\d+/mcp", err), run.stderr[-2000:]
    reports = {r["symbol"]: r for r in map(json.loads, run.stdout.splitlines())}
    assert sorted(reports) == ["BTCUSDPERP", "BTCUSDT"]
    for report in reports.values():
        assert schema_errors(report) == []
        assert report["ingestion"]["status"] == "ok", report["ingestion"]
        assert report["data_age_ms"] < 2000 and report["best_bid"] is not None
    # Two ingest processes followed the venue: the writer and its hot standby.
    assert stats["binance-usdm"]["connections_open"] == 0  # all stopped cleanly
    assert stats["binance-usdm"]["connections_total"] >= 2


def test_an_unreachable_venue_is_named_and_the_symbol_has_no_fresh_report() -> None:
    port = free_port()
    urls = f"binance-usdm=http://127.0.0.1:{port}|ws://127.0.0.1:{port}"
    run = _live("binance-usdm:BTCUSDT", "--duration", "6", venue_urls=urls)
    assert run.returncode == 1
    assert run.stdout == ""
    err = " ".join(run.stderr.split())  # the console wraps long lines
    assert "venue unreachable" in err and f"ws://127.0.0.1:{port}/stream?streams=" in err
    assert "Connection refused" in err and "no report for BTCUSDT" in err


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("BTCUSDT", "want <venue>-<market>:<SYMBOL>"),
        ("binance-usdm:DOGEUSDT", "unknown live symbol DOGEUSDT on binance-usdm"),
        ("kraken-spot:BTCUSD", "want <venue>-<market>:<SYMBOL>"),
    ],
)
def test_a_bad_symbol_list_is_a_clear_usage_error(spec: str, message: str) -> None:
    run = _live(spec, "--duration", "5")
    assert run.returncode == 2 and message in run.stderr
