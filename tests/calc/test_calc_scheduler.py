"""Event-time cycles: determinism, boundaries, stall watchdog, feed states."""

from __future__ import annotations

import itertools
import random

from services.calc.analytics import CycleClock, SymbolCore, replay, report_at
from shared.report import iso_utc_from_ns, ns_from_iso_utc, schema_errors
from shared.wire import (
    DeltaPayload,
    Entry,
    SnapPayload,
    StatusPayload,
    TradePayload,
    decode,
    encode,
)
from tests.calc.calc_kit import session_entries

MS = 1_000_000
P = 250 * MS


def test_clock_releases_boundaries_strictly_before_an_event() -> None:
    clock = CycleClock(P)
    assert clock.due_through(10 * P) == []  # no clock before the first event
    assert clock.due_before(1_000 * MS + 1) == []  # starts at the next boundary
    assert clock.next_ns == 1_250 * MS
    assert clock.due_before(1_250 * MS) == []  # t < e only: 1250 stays open
    assert clock.due_before(1_250 * MS + 1) == [1_250 * MS]
    assert clock.due_before(2_000 * MS + 1) == [1_500 * MS, 1_750 * MS, 2_000 * MS]
    assert clock.due_before(1_000 * MS) == []  # late event: nothing to release
    assert clock.due_through(2_249 * MS) == []  # never past the estimate
    assert clock.due_through(2_250 * MS) == [2_250 * MS]


def test_same_reports_all_at_once_or_one_by_one() -> None:
    entries = session_entries("usdm-eth")[:6000]
    at_once = list(replay(entries, "ETHUSDT", "BINANCE"))
    # One by one, through the wire encoding, with a watchdog that advances the clock
    # up to (never past) just before the next event, in random chunks.
    rng = random.Random(7)
    core = SymbolCore("ETHUSDT", "BINANCE")
    one_by_one = []
    i = 0
    while i < len(entries):
        chunk = entries[i : i + rng.randint(1, 40)]
        i += len(chunk)
        for e in chunk:
            wired = decode(encode(e.payload, e.event_ns, e.recv_ns))
            one_by_one.extend(core.apply(wired))
        if i < len(entries):
            one_by_one.extend(core.advance_to(entries[i].event_ns - 1))
    got = [
        (c.t_ns, {**c.report, "writer": {"nodeId": "replay", "writerToken": 1}}) for c in one_by_one
    ]
    assert len(at_once) > 500
    assert got == at_once
    times = [t for t, _ in at_once]
    assert all(b - a == P for a, b in itertools.pairwise(times))
    for t, report in at_once[::97]:
        assert ns_from_iso_utc(report["generated_at"]) == t
        assert report["data_age_ms"] >= 0
        assert schema_errors(report) == []


def _snap(u: int = 10) -> SnapPayload:
    return SnapPayload(u=u, pp=1, sp=3, b=[(1000, 5_000), (990, 1_000)], a=[(1001, 2_000)])


def _entry(payload: object, t_ms: int) -> Entry:
    return Entry(
        {
            SnapPayload: "snap",
            DeltaPayload: "delta",
            TradePayload: "trade",
            StatusPayload: "status",
        }[type(payload)],
        t_ms * MS,
        t_ms * MS,
        payload,
    )  # type: ignore[arg-type]


def test_stall_watchdog_grows_data_age_and_degrades() -> None:
    core = SymbolCore("BTCUSDT", "BINANCE")
    base = 1_700_000_000_000
    core.apply(_entry(_snap(), base + 100))
    core.apply(_entry(TradePayload(id="1", px=1005, sz=10, pp=1, sp=3, side="B"), base + 120))
    estimate = (base + 40_000) * MS + 7
    cycles = core.advance_to(estimate)
    assert cycles and cycles[-1].t_ns <= estimate < cycles[-1].t_ns + P
    ages = [c.report["data_age_ms"] for c in cycles]
    assert ages == sorted(ages) and ages[0] == 130 and ages[-1] == 39_880
    status = {c.report["data_age_ms"]: c.report["ingestion"]["status"] for c in cycles}
    assert status[4_880] == "ok" and status[5_130] == "degraded"
    assert status[29_880] == "degraded" and status[30_130] == "down"
    scores = [c.report["health"]["score"] for c in cycles]
    assert scores[0] >= 95 and scores == sorted(scores, reverse=True) and scores[-1] <= 60
    assert core.advance_to(estimate) == []  # nothing twice
    # Data resumes: boundaries continue from where the watchdog stopped.
    more = core.apply(
        _entry(TradePayload(id="2", px=1005, sz=10, pp=1, sp=3, side="S"), base + 41_000)
    )
    assert [c.t_ns for c in more] == [cycles[-1].t_ns + P * k for k in range(1, 4)]


def test_feed_states_show_in_status_and_health() -> None:
    core = SymbolCore("BTCUSDT", "BINANCE")
    t = 1_700_000_000_000

    def report_after(payload: object) -> dict:
        nonlocal t
        t += 250
        core.apply(_entry(payload, t))
        t += 250
        cycles = core.apply(_entry(TradePayload(id=str(t), px=1005, sz=1, pp=1, sp=3, side="B"), t))
        return cycles[-1].report

    ok = report_after(_snap(10))
    assert ok["ingestion"]["status"] == "ok" and ok["best_bid"] == {"price": 100.0, "qty": 5.0}
    chained = report_after(DeltaPayload(U=11, u=21, pu=10, pp=1, sp=3, b=[(995, 1_000)], a=[]))
    assert chained["ingestion"]["status"] == "ok" and chained["ingestion"]["book"] == "ok"
    gap = report_after(DeltaPayload(U=30, u=31, pu=29, pp=1, sp=3, b=[(995, 1_000)], a=[]))
    assert gap["ingestion"]["status"] == "degraded" and gap["ingestion"]["book"] == "gap"
    assert gap["health"]["score"] < ok["health"]["score"]
    healed = report_after(_snap(40))
    assert healed["ingestion"]["status"] == "ok"
    resync = report_after(StatusPayload(state="resync", reason="gap at venue"))
    assert resync["ingestion"]["status"] == "degraded" and resync["best_bid"] is None
    assert resync["depth"]["bids"] == [] and resync["depth"]["imbalance"] is None
    assert resync["mid_price"] is None and resync["last_price"] == 100.5
    again = report_after(_snap(50))
    assert again["ingestion"]["status"] == "ok" and again["mid_price"] == 100.05
    down = report_after(StatusPayload(state="unbuildable"))
    assert (
        down["ingestion"]["status"] == "down"
        and down["health"]["score"] < resync["health"]["score"]
    )
    degraded = report_after(_snap(60))
    assert degraded["ingestion"]["status"] == "ok"
    degraded = report_after(StatusPayload(state="degraded", reason="venue lagging"))
    assert degraded["ingestion"]["status"] == "degraded"
    for r in (ok, gap, healed, resync, again, down, degraded):
        assert schema_errors({**r, "writer": {"nodeId": "n", "writerToken": 1}}) == []
    assert iso_utc_from_ns(t * MS)  # the clock moved forward throughout


def test_a_long_jump_releases_the_first_boundaries_and_the_last() -> None:
    clock = CycleClock(P, max_idle=4)
    clock.due_before(0)
    assert clock.due_before(3 * P + 1) == [0, P, 2 * P, 3 * P]
    # 100 boundaries pending: the first 4, then only the last one before the event.
    assert clock.due_before(104 * P) == [4 * P, 5 * P, 6 * P, 7 * P, 103 * P]
    assert clock.next_ns == 104 * P
    assert clock.due_through(200 * P + 5) == [104 * P, 105 * P, 106 * P, 107 * P, 200 * P]


def test_report_at_equals_the_replay_report_of_that_boundary() -> None:
    entries = session_entries("usdm-eth")[:4000]
    reports = dict(replay(entries, "ETHUSDT", "BINANCE"))
    t = sorted(reports)[300]
    assert report_at(entries, "ETHUSDT", "BINANCE", t + 100 * MS) == (t, reports[t])
    # Past the end of the entries: carried forward, visibly stale.
    end = max(e.event_ns for e in entries)
    t_late, late = report_at(entries, "ETHUSDT", "BINANCE", end + 40_000 * MS)  # type: ignore[misc]
    assert t_late <= end + 40_000 * MS and late["data_age_ms"] >= 39_700
    assert late["ingestion"]["status"] == "down"
