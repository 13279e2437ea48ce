"""Live ingest against venue faults, over real sockets (NautilusTrader's clients -> the
venue emulator): a dropped connection, a silent socket, a lost frame, HTTP 429/418 on
the REST snapshot. Each is seen, counted and recovered from, and the books end exactly
as the venue's.

One emulator and one ingest process for the module; every test faults its own market.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from context8.emulator.process import EmulatorProcess
from context8.redis_server import RedisServer, free_port
from tests.support.live_ingest import (
    ON_EMULATOR,
    entries,
    files_of,
    scaled_levels,
    start_live_ingest,
    statuses,
)
from tests.support.polling import poll
from tests.support.streams import check_stream_consistency

pytestmark = pytest.mark.timeout(300)

SYMBOLS = ["BTCUSDT", "BTCUSDTSPOT", "BTCUSDPERP", "XRPUSDT"]
PRECISION = {"BTCUSDT": (1, 3), "BTCUSDTSPOT": (2, 8), "BTCUSDPERP": (1, 0), "XRPUSDT": (4, 0)}
SPEED = 20
#: The spot feed's stall limit (wall seconds; the others keep the default 10 s).
STALL_S = 1.0


@dataclass
class Live:
    emu: EmulatorProcess
    client: redis.Redis
    metrics_url: str
    log: Path

    def metric(self, name: str, **labels: str) -> float:
        """A sample of ingest's /metrics (0 if absent)."""
        text = urllib.request.urlopen(self.metrics_url, timeout=5).read().decode()
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            head, _, value = line.rpartition(" ")
            if head == f"{name}{{{want}}}" or (not labels and head == name):
                return float(value)
        return 0.0

    def states_after(self, symbol: str, since_ns: int) -> list[tuple[str, str, int]]:
        return [s for s in statuses(self.client, symbol) if s[2] >= since_ns]

    def wait_state(self, symbol: str, since_ns: int, state: str, timeout: float = 30) -> int:
        """The receive time of the symbol's first ``state`` entry written after ``since_ns``."""
        found = poll(
            lambda: [s for s in self.states_after(symbol, since_ns) if s[0] == state],
            timeout,
            f"{symbol} {state} after the fault",
        )
        return int(found[0][2])


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("live-faults")
    port = free_port()
    with RedisServer() as server, EmulatorProcess(files_of(*SYMBOLS), speed=SPEED) as emu:
        proc = start_live_ingest(
            server.url,
            emu.venue_urls,
            SYMBOLS,
            tmp / "ingest.log",
            metrics_port=str(port),
            ingest_stall_after=f"BTCUSDTSPOT={STALL_S}",
        )
        client = redis.Redis.from_url(server.url)
        try:
            state = Live(emu, client, f"http://127.0.0.1:{port}/metrics", tmp / "ingest.log")
            for sym in SYMBOLS:
                poll(lambda s=sym: client.xlen(f"c8:md:{{{s}}}") > 0, 60, f"{sym} flowing")
            yield state
        finally:
            proc.terminate()
            assert proc.wait(timeout=20) == 0
            client.close()


def test_dropped_connection_reconnects_resyncs_and_is_counted(live: Live) -> None:
    times: dict[str, float] = {}
    for sym in ("BTCUSDT", "XRPUSDT"):
        market, _ = ON_EMULATOR[sym]
        before = live.metric("context8_ingest_reconnects_total", venue=market)
        cut = time.time_ns()
        live.emu.fault("disconnect", market)
        prefix = f"venue reconnected ({market})"
        poll(
            lambda s=sym, c=cut, p=prefix: any(
                r.startswith(p) for _, r, _ in live.states_after(s, c)
            ),
            30,
            f"{sym} re-sync after the reconnect",
        )
        stream = [e for _, e in entries(live.client, sym) if e.recv_ns >= cut]
        at = next(
            i for i, e in enumerate(stream) if getattr(e.payload, "reason", "").startswith(prefix)
        )
        assert stream[at].payload.state == "resync"  # type: ignore[union-attr]
        # ok only with the fresh snapshot that follows: no delta on the dropped book.
        ok_at = poll(
            lambda s=sym, c=cut, a=at: _next_ok(
                [e for _, e in entries(live.client, s) if e.recv_ns >= c], a
            ),
            30,
            f"{sym} ok",
        )
        stream = [e for _, e in entries(live.client, sym) if e.recv_ns >= cut]
        between = [e.kind for e in stream[at + 1 : ok_at]]
        assert "snap" in between and between.index("snap") < (
            between.index("delta") if "delta" in between else len(between)
        ), between
        poll(
            lambda m=market, b=before: live.metric("context8_ingest_reconnects_total", venue=m) > b,
            5,
            "the reconnect counted",
        )
        times[sym] = (stream[ok_at].recv_ns - cut) / 1e9
    print(f"disconnect -> ok (s): {times}")


def _next_ok(stream: list, after: int) -> int | None:
    """Index of the first ``ok`` status after position ``after``."""
    for i in range(after + 1, len(stream)):
        payload = stream[i].payload
        if getattr(payload, "state", None) == "ok":
            return i
    return None


def test_silent_socket_is_degraded_within_the_limit_then_resynced(live: Live) -> None:
    market, raw = ON_EMULATOR["BTCUSDTSPOT"]
    before = live.metric("context8_ingest_stalls_total", symbol="BTCUSDTSPOT")
    silent = time.time_ns()
    live.emu.fault("stall", market, raw)
    stalled = live.wait_state("BTCUSDTSPOT", silent, "degraded")
    # Seen within the limit plus the watchdog's tick (a quarter of it) and scheduling.
    assert (stalled - silent) / 1e9 < STALL_S * 1.25 + 1.0
    # The REST snapshot rebuilds the book but the socket is still silent: not ok.
    poll(
        lambda: any(
            "waiting for live updates" in r for _, r, _ in live.states_after("BTCUSDTSPOT", silent)
        ),
        15,
        "the REST re-sync",
    )
    assert "ok" not in [s for s, _, _ in live.states_after("BTCUSDTSPOT", silent)]
    resumed = time.time_ns()
    live.emu.fault("resume", market, raw)
    ok = live.wait_state("BTCUSDTSPOT", resumed, "ok")
    reasons = [r for _, r, _ in live.states_after("BTCUSDTSPOT", silent)]
    assert reasons[0].startswith("stall: no book update for")
    assert reasons[-1] == "live book updates resumed after the stall"
    assert live.metric("context8_ingest_stalls_total", symbol="BTCUSDTSPOT") > before
    seen_s, back_s = (stalled - silent) / 1e9, (ok - resumed) / 1e9
    print(f"stall seen after {seen_s:.2f} s; resume -> ok {back_s:.2f} s")


def test_lost_frame_is_a_gap_and_resyncs_from_rest(live: Live) -> None:
    market, raw = ON_EMULATOR["BTCUSDPERP"]
    gaps = live.metric("context8_ingest_gaps_total", symbol="BTCUSDPERP")
    lost = time.time_ns()
    live.emu.fault("drop", market, raw, count=1)
    resync = live.wait_state("BTCUSDPERP", lost, "resync")
    live.wait_state("BTCUSDPERP", resync, "ok")
    (state, reason, _), *_ = live.states_after("BTCUSDPERP", lost)
    assert state == "resync" and reason.startswith("gap: pu=")
    poll(
        lambda: live.metric("context8_ingest_gaps_total", symbol="BTCUSDPERP") == gaps + 1,
        5,
        "the gap counted",
    )


@pytest.mark.parametrize(("sym", "status"), [("BTCUSDT", 429), ("BTCUSDPERP", 418)])
def test_rate_limit_answers_are_honoured(live: Live, sym: str, status: int) -> None:
    market, raw = ON_EMULATOR[sym]
    retry_after = 2
    live.emu.fault("http_error", market, status=status, count=1, retry_after=retry_after)
    refused = live.emu.market_stats(market)["rest_requests"].get(str(status), 0)
    start = time.time_ns()
    live.emu.fault("drop", market, raw, count=1)  # a gap: ingest asks for a snapshot
    resync = live.wait_state(sym, start, "resync")
    ok = live.wait_state(sym, resync, "ok")
    stats = live.emu.market_stats(market)
    assert stats["rest_requests"].get(str(status), 0) == refused + 1
    # The retry waited for Retry-After (the first request was refused at once).
    assert (ok - resync) / 1e9 >= retry_after
    assert stats["violations"] == {}, stats["violations"]
    assert stats["weight_per_minute_max"] <= stats["limits"]["weight_per_minute"] / 2


def test_a_slow_snapshot_loses_no_diff(live: Live) -> None:
    """Diffs keep coming while the REST snapshot takes its time: they are buffered, the
    ones it covers dropped, the rest applied on top (the final book check proves it)."""
    market, raw = ON_EMULATOR["BTCUSDTSPOT"]
    delay = 1.5
    live.emu.fault("slow_snapshot", market, raw, delay=delay)
    start = time.time_ns()
    live.emu.fault("drop", market, raw, count=1)
    resync = live.wait_state("BTCUSDTSPOT", start, "resync")
    ok = live.wait_state("BTCUSDTSPOT", resync, "ok")
    live.emu.clear(market, raw)
    assert (ok - resync) / 1e9 >= delay
    stream = [e for _, e in entries(live.client, "BTCUSDTSPOT") if e.recv_ns >= start]
    first = next(i for i, e in enumerate(stream) if getattr(e.payload, "state", "") == "resync")
    then = _next_ok(stream, first)
    assert then is not None
    # Nothing on the dropped book meanwhile (trades only), the snapshot, ok, then the
    # diffs that came during the wait and continue it.
    between = [e.kind for e in stream[first + 1 : then]]
    assert "delta" not in between and between[-1] == "snap", between
    assert [e.kind for e in stream[then + 1 : then + 3]] == ["delta", "delta"]


def test_books_end_as_the_venues(live: Live) -> None:
    """After every fault, each rebuilt book equals the venue's true book at the same
    update id: no stale level survived a re-sync (compared when the venue has gone
    quiet at the end of its recording)."""
    for sym in SYMBOLS:
        market, raw = ON_EMULATOR[sym]
        poll(lambda m=market, r=raw: live.emu.symbol_stats(m, r)["ended"], 120, f"{sym} ended")
        pp, sp = PRECISION[sym]
        truth = live.emu.book(market, raw, depth=200)

        def caught_up(s: str = sym, u: int = truth["last_update_id"]) -> bool:
            return check_stream_consistency(entries(live.client, s)).u == u

        poll(caught_up, 30, f"{sym} at the venue's last update id")
        book = check_stream_consistency(entries(live.client, sym))
        bids, asks = book.bids, book.asks
        top_bids = dict(sorted(bids.items(), reverse=True)[:200])
        top_asks = dict(sorted(asks.items())[:200])
        assert top_bids == scaled_levels(truth["bids"], pp, sp), sym
        assert top_asks == scaled_levels(truth["asks"], pp, sp), sym
    for market, stats in live.emu.stats()["markets"].items():
        assert stats["violations"] == {}, (market, stats["violations"])
