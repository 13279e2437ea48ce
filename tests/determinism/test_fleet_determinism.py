"""Determinism at the fleet level, with real processes (context8.fleet.Fleet).

The same short slice of the bundled BTCUSDT + ETHUSDT recording is replayed by two
fresh fleets, ingest paced at 1x and unpaced ("max"). Every cycle the calc emitted
must be the same in both runs, and the same as the offline path (`context8 report-at`
and ``services.calc.analytics.replay`` over ``services.ingest.offline``).

Compared: the event-driven cycles, i.e. boundaries before the symbol's last market
event. Cycles after it come only from the stall watchdog, which runs on wall time by
design (how many exist depends on how long the fleet idles after the end); the runs
give it a long grace so that it never fires while data still flows.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from context8.report_at import reports_at
from services.calc.analytics import replay
from services.ingest.offline import offline_feeds
from shared.report import iso_utc_from_ns, ns_from_iso_utc, schema_errors
from tests.determinism.fleet_runs import SYMBOLS, FleetRun, run_fleet, write_slice

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parents[2]
SLICE_SECONDS = 16.0
MS = 1_000_000
FAST_MS = 250


def _without(report: dict[str, Any], *fields: str) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k not in fields}


@pytest.fixture(scope="module")
def slice_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_slice(tmp_path_factory.mktemp("slice"), SLICE_SECONDS)


@pytest.fixture(scope="module")
def last_event_ms(slice_files: list[Path]) -> dict[str, int]:
    """Each symbol's newest market-data event time in the slice (offline ingest)."""
    out: dict[str, int] = {}
    for fr in offline_feeds(slice_files):
        out[fr.feed.symbol] = max(e.event_ns for e in fr.entries() if e.kind != "status") // MS
    return out


@pytest.fixture(scope="module")
def runs(
    slice_files: list[Path],
    last_event_ms: dict[str, int],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, FleetRun]:
    # The last boundary strictly before each symbol's last market event.
    until = {sym: (t - 1) // FAST_MS * FAST_MS for sym, t in last_event_ms.items()}
    return {
        speed: run_fleet(slice_files, speed, tmp_path_factory.mktemp(f"fleet-{speed}"), until)
        for speed in ("1", "max")
    }


def _event_cycles(run: FleetRun, symbol: str, last_ms: int) -> dict[int, dict[str, Any]]:
    return {t: r for t, r in run.candidates[symbol].items() if t < last_ms}


def test_1x_and_max_speed_emit_the_same_reports(
    runs: dict[str, FleetRun], last_event_ms: dict[str, int]
) -> None:
    for speed, run in runs.items():
        assert run.conflicts == [], speed
        assert all(code == 0 for code in run.exit_codes.values()), (speed, run.exit_codes)
    for sym in SYMBOLS:
        paced = _event_cycles(runs["1"], sym, last_event_ms[sym])
        unpaced = _event_cycles(runs["max"], sym, last_event_ms[sym])
        times = sorted(paced)
        # ~16 s of data: every 250 ms boundary from the first to the last, none missing.
        assert len(times) >= 55, (sym, len(times))
        assert times == list(range(times[0], times[-1] + FAST_MS, FAST_MS)), sym
        assert sorted(unpaced) == times, sym
        for t in times:
            a, b = paced[t], unpaced[t]
            assert schema_errors(a) == [], (sym, t)
            # Tokens are the Redis clock at the grant, so they differ between runs.
            assert _without(a, "updatedAt", "writer") == _without(b, "updatedAt", "writer"), (
                sym,
                iso_utc_from_ns(t * MS),
            )
            assert a["writer"]["nodeId"] == b["writer"]["nodeId"], (sym, t)
        # The slice is not trivial: a book, trades, slow fields.
        last = paced[times[-1]]
        assert last["ingestion"]["status"] == "ok" and last["best_bid"] is not None
        assert last["volume_24h"] and "liquidity" in last and "slippage" in last
        # ... and the schema 1.2 flow measures, compared above with everything else.
        assert last["flow"]["vwap_5m"] is not None and last["flow"]["large_trades_5m"]
        assert last["volatility"]["rv_5m_bps"] is not None


def test_fleet_equals_offline_replay_every_cycle(
    runs: dict[str, FleetRun], slice_files: list[Path], last_event_ms: dict[str, int]
) -> None:
    """Every event-driven cycle of the unpaced run = the offline ingest + analytics path."""
    for fr in offline_feeds(slice_files):
        sym = fr.feed.symbol
        offline = {
            t // MS: report
            for t, report in replay(fr.entries(), sym, fr.feed.venue, size_unit=fr.size_unit)
        }
        fleet = _event_cycles(runs["max"], sym, last_event_ms[sym])
        assert sorted(fleet) == sorted(offline), sym
        for t, report in fleet.items():
            assert _without(report, "updatedAt", "writer") == _without(
                offline[t], "updatedAt", "writer"
            ), (sym, iso_utc_from_ns(t * MS))


def test_published_reports_equal_report_at(
    runs: dict[str, FleetRun], slice_files: list[Path], last_event_ms: dict[str, int]
) -> None:
    """Reports read back from report:{SYMBOL} during the 1x run = report-at at their time."""
    compared = 0
    for sym in SYMBOLS:
        published = [
            r
            for at, r in sorted(runs["1"].published[sym].items())
            if ns_from_iso_utc(at) // MS < last_event_ms[sym]
        ]
        assert len(published) >= 10, (sym, len(published))
        step = max(1, len(published) // 6)
        for report in published[::step]:
            t_ns = ns_from_iso_utc(report["generated_at"])
            offline = {r.symbol: r.report for r in reports_at(slice_files, t_ns)}
            assert offline[sym]["writer"] == {"nodeId": "report-at", "writerToken": 1}
            assert report["updatedAt"] > 0 and offline[sym]["updatedAt"] == 0
            assert _without(report, "updatedAt", "writer") == _without(
                offline[sym], "updatedAt", "writer"
            ), (sym, report["generated_at"])
            compared += 1
    assert compared >= 12


def test_report_at_command_equals_fleet_cycle(
    runs: dict[str, FleetRun], slice_files: list[Path], last_event_ms: dict[str, int]
) -> None:
    """The command itself (a subprocess) at a mid-slice time: one line per symbol, each
    equal to the fleet's cycle at that time."""
    t_ms = (min(last_event_ms.values()) // FAST_MS - 20) * FAST_MS
    at = iso_utc_from_ns(t_ms * MS)
    proc = subprocess.run(
        [sys.executable, "-m", "context8", "report-at", "--at", at, *map(str, slice_files)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["symbol"] for r in lines] == sorted(SYMBOLS)
    for report in lines:
        fleet = runs["1"].candidates[report["symbol"]][t_ms]
        assert report["generated_at"] == at
        assert _without(report, "updatedAt", "writer") == _without(fleet, "updatedAt", "writer")
