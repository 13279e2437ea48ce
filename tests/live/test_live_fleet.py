"""The whole fleet on live venue data over real sockets: the venue emulator serves the
bundled recordings; ingest follows it through NautilusTrader's own Binance and Bybit
clients (WebSocket subscriptions, REST depth snapshots); nothing is injected.

Live and offline give the same numbers: every cycle the calc worker emits equals the
report ``context8 report-at`` derives from the same recordings at the same event time,
on four markets (Binance USDⓈ-M, spot, COIN-M, Bybit linear).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from context8.emulator.process import EmulatorProcess
from context8.fleet import wait_until
from context8.report_at import reports_at
from services.calc.analytics import replay
from services.ingest.offline import IngestOptions, offline_feeds
from shared import keys
from shared.report import iso_utc_from_ns, schema_errors
from tests.support.candidates import CandidateReader
from tests.support.live_ingest import SYMBOL_MAP, files_of, live_fleet

pytestmark = pytest.mark.timeout(300)

SYMBOLS = ["BTCUSDT", "BTCUSDTSPOT", "BTCUSDPERP", "XRPUSDT"]
#: Ingest asks for its REST snapshot once the stream flows: every ms it takes is SPEED ms
#: of exchange time, and a book that starts later than the recording's misses trades the
#: offline replay counts. 3x keeps that well inside one cycle on a slow machine.
SPEED = 3
#: Exchange time compared, from each symbol's first cycle with a book.
COMPARED_S = 20
#: How much later (event time) than the recording's the live book may start.
LATE_BOOK_S = 10
MS = 1_000_000


def _offline(files: list[Path]) -> dict[str, dict[int, dict[str, Any]]]:
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for fr in offline_feeds(files, IngestOptions(symbol_map=SYMBOL_MAP)):
        reports = replay(fr.entries(), fr.feed.symbol, fr.feed.venue, size_unit=fr.size_unit)
        out[fr.feed.symbol] = {t // MS: r for t, r in reports}
    return out


def _comparable(report: dict[str, Any]) -> dict[str, Any]:
    # ``derivatives`` exists live only (no recording has them): tests/live/test_live_derivatives.py
    return {k: v for k, v in report.items() if k not in ("updatedAt", "writer", "derivatives")}


def test_live_fleet_publishes_what_report_at_computes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = files_of(*SYMBOLS)
    offline = _offline(files)
    # Each symbol's cycles to compare: from its first with a book, COMPARED_S long, and
    # only while its recording still has data (Bybit's holds 4.8 s).
    wanted: dict[str, list[int]] = {}
    for sym, cycles in offline.items():
        booked = [t for t, r in sorted(cycles.items()) if r["best_bid"] is not None]
        wanted[sym] = [t for t in booked if t <= booked[0] + COMPARED_S * 1000]
    assert set(wanted) == set(SYMBOLS)
    with EmulatorProcess(files, speed=SPEED, start="manual") as emu:
        live: dict[str, dict[int, dict[str, Any]]] = {s: {} for s in SYMBOLS}
        # Book and trades subscribed on every market (futures: mark price and
        # liquidations too), then the venue starts talking: the worker reads each stream
        # from its first entry, as the offline replay does.
        with live_fleet(
            emu, SYMBOLS, tmp_path / "fleet", streams=2, C8_INGEST_SYMBOL_MAP=SYMBOL_MAP
        ) as running:
            client = running.client
            reader = CandidateReader(client, SYMBOLS)

            def collect() -> bool:
                for cand in reader.read():
                    live[cand.symbol].setdefault(cand.event_ms, json.loads(cand.report_json))
                return all(wanted[s][-1] in live[s] for s in SYMBOLS)

            assert wait_until(collect, timeout=120, interval=0.0), {
                s: [t for t in wanted[s] if t not in live[s]][:5] for s in SYMBOLS
            }
            published = {s: client.hget(keys.report(s), "json") for s in SYMBOLS}
        assert all(code == 0 for code in running.codes.values()), running.codes
        stats = emu.stats()["markets"]
    compared = {}
    for sym in SYMBOLS:
        # The live book starts at the venue snapshot ingest fetched, and at 15x a
        # snapshot fetched a little later is seconds later in event time: compare from
        # the first cycle the live fleet had a book for (within LATE_BOOK_S of the
        # recording's first), every cycle from there on.
        booked = [t for t in wanted[sym] if t in live[sym] and live[sym][t]["best_bid"]]
        assert booked, (sym, "no live cycle with a book")
        assert booked[0] <= wanted[sym][0] + LATE_BOOK_S * 1000, (sym, booked[0])
        wanted[sym] = [t for t in wanted[sym] if t >= booked[0]]
        for t in wanted[sym]:
            assert t in live[sym], (sym, iso_utc_from_ns(t * MS))
            report = live[sym][t]
            assert schema_errors(report) == [], (sym, t)
            assert _comparable(report) == _comparable(offline[sym][t]), (
                sym,
                iso_utc_from_ns(t * MS),
            )
        compared[sym] = len(wanted[sym])
        assert published[sym] is not None  # and the publisher wrote it
    # And the command's own code path, at a few of those times.
    monkeypatch.setenv("C8_INGEST_SYMBOL_MAP", SYMBOL_MAP)
    for sym in SYMBOLS:
        for t in (wanted[sym][2], wanted[sym][-1]):
            (found,) = reports_at(files_of(sym), t * MS)
            assert _comparable(found.report) == _comparable(live[sym][t]), (sym, t)
    print(f"live == report-at: cycles compared per symbol {compared}")
    # Live derivatives (tests/live/test_live_derivatives.py checks their values): the
    # futures markets have the section, spot never; COIN-M sizes are contracts (no notional).
    assert not any("derivatives" in r for r in live["BTCUSDTSPOT"].values())
    for sym in ("BTCUSDT", "BTCUSDPERP", "XRPUSDT"):
        assert any(r.get("derivatives") for r in live[sym].values()), sym
    coinm = [r["derivatives"] for r in live["BTCUSDPERP"].values() if r.get("derivatives")]
    assert all(d["liquidations_5m"]["long"]["notional"] is None for d in coinm)
    assert compared["BTCUSDT"] >= COMPARED_S * 4 and compared["XRPUSDT"] >= 15
    for market, m in stats.items():
        assert m["violations"] == {}, (market, m["violations"])
