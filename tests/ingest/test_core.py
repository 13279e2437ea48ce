"""FeedCore, pure: takeovers (with the trade backfill) and an unreachable venue."""

from __future__ import annotations

from services.ingest.core import (
    CoreConfig,
    FeedCore,
    ResyncRequest,
    StateChange,
    WrittenTail,
)
from services.ingest.feeds import Feed
from services.ingest.records import BookUpdate, Status, Trade

FEED = Feed("BINANCE", "usdm", "BTCUSDT", "BTCUSDT", 1, 3)
S = 1_000_000_000


def _snap(u: int, t: int) -> BookUpdate:
    return BookUpdate(True, u, u, u, [(100, 1)], [(101, 1)], t, t)


def _diff(u: int, t: int) -> BookUpdate:
    return BookUpdate(False, u, u, u - 1, [(99, 2)], [], t, t)


def _trade(n: int, t: int) -> Trade:
    return Trade(str(n), 100, 1, "B", False, t, t)


def _fed(core: FeedCore) -> None:
    core.on_record(_snap(10, 1 * S))
    core.on_record(_diff(11, 2 * S))
    for n in range(5):
        core.on_record(_trade(n, (3 + n) * S))


def test_live_takeover_resyncs_from_the_venue_and_backfills_unwritten_trades() -> None:
    core = FeedCore(FEED, CoreConfig(wall_clock=True))
    _fed(core)
    # The previous writer wrote trades 0..2 (since 3 s): 3 and 4 are missing.
    outs = core.takeover("ingest takeover by b", 100 * S, WrittenTail(frozenset("012"), 3 * S))
    entries = [o for o in outs if isinstance(o, Status | Trade | BookUpdate)]
    assert [type(e).__name__ for e in entries] == ["Status", "Trade", "Trade"]
    assert entries[0].state == "resync" and entries[0].reason == "ingest takeover by b"
    assert [t.id for t in entries[1:]] == ["3", "4"]  # type: ignore[union-attr]
    assert any(isinstance(o, ResyncRequest) for o in outs)
    assert core.state == "degraded" and core.counts.backfilled == 2
    # The fresh venue snapshot rebuilds the book: snap + ok.
    after = core.on_record(_snap(20, 101 * S), now_ns=1)
    assert [type(o).__name__ for o in after if not isinstance(o, StateChange)] == [
        "BookUpdate",
        "Status",
    ]
    assert core.state == "ok"


def test_replay_takeover_writes_its_own_book_and_an_empty_stream_gets_every_trade() -> None:
    core = FeedCore(FEED)
    _fed(core)
    outs = core.takeover("ingest takeover by b", 0, WrittenTail(frozenset(), None))
    entries = [o for o in outs if isinstance(o, Status | Trade | BookUpdate)]
    kinds = [
        e.state if isinstance(e, Status) else "trade" if isinstance(e, Trade) else e.source
        for e in entries
    ]
    assert kinds == ["resync", *["trade"] * 5, "checkpoint", "ok"]
    snap = entries[6]
    assert isinstance(snap, BookUpdate) and snap.u == 11 and snap.bids == [(100, 1), (99, 2)]
    assert core.state == "ok"


def test_unreachable_venue_is_down_once_per_reason_and_stalls_wait_for_it() -> None:
    core = FeedCore(FEED, CoreConfig(wall_clock=True, stall_limit_ns=1 * S))
    core.start(0)
    down = Status("down", "venue unreachable: ws://x: refused", 5 * S, 5 * S)
    first = core.venue_status(down)
    assert [o.state for o in first if isinstance(o, Status)] == ["down"]
    assert core.venue_status(down) == []  # said once
    assert core.check_stall(10 * S, 10 * S) == []  # no feed, no stall
    other = Status("down", "venue unreachable: ws://x: reset", 6 * S, 6 * S)
    assert [o.state for o in core.venue_status(other) if isinstance(o, Status)] == ["down"]
    core.on_record(_snap(10, 7 * S), now_ns=11 * S)
    assert core.state == "ok"


def test_a_reconnect_drops_the_book_until_a_fresh_snapshot() -> None:
    core = FeedCore(FEED, CoreConfig(wall_clock=True))
    _fed(core)
    why = "venue reconnected (binance-usdm); re-sync from a fresh snapshot"
    outs = core.venue_status(Status("resync", why, 50 * S, 50 * S))
    assert [(o.state, o.reason) for o in outs if isinstance(o, Status)] == [("resync", why)]
    assert any(isinstance(o, ResyncRequest) for o in outs) and core.state == "degraded"
    # A diff sent before the drop but delivered after it is buffered, not applied.
    assert [o for o in core.on_record(_diff(12, 51 * S), 1) if isinstance(o, BookUpdate)] == []
    after = core.on_record(_snap(12, 52 * S), 2)
    assert [o.state for o in after if isinstance(o, Status)] == ["ok"]
