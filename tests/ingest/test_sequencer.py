"""BookSequencer rules on small hand-made books (pure: no Redis, no Nautilus engine)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingest.records import BookUpdate, Status
from services.ingest.sequencer import BookSequencer, Output, Rule

SEC = 1_000_000_000


Levels = list[tuple[int, int]]


def snap(u: int, bids: Levels, asks: Levels, t: int = 0) -> BookUpdate:
    return BookUpdate(True, u, u, u, bids, asks, t, t)


def diff(
    U: int,
    u: int,
    pu: int,
    bids: list[tuple[int, int]] | None = None,
    asks: list[tuple[int, int]] | None = None,
    t: int = 0,
) -> BookUpdate:
    return BookUpdate(False, U, u, pu, bids or [], asks or [], t, t)


def kinds(outs: list[Output]) -> list[str]:
    """A snapshot by its source, a diff by its ``u``, a status by its state."""
    return [
        o.state if isinstance(o, Status) else o.source if o.snapshot else f"d{o.u}" for o in outs
    ]


BOOK = ([(100, 5), (99, 3)], [(101, 4), (102, 7)])


def test_futures_buffers_drops_covered_and_applies_straddling_diff() -> None:
    seq = BookSequencer(Rule.FUTURES)
    assert seq.on_update(diff(1, 5, 0, bids=[(98, 1)])) == []
    assert seq.on_update(diff(6, 9, 5, bids=[(100, 6)])) == []
    assert seq.on_update(diff(10, 14, 9, asks=[(101, 0)])) == []
    outs = seq.on_update(snap(10, *BOOK))  # covers u < 10; the 10..14 diff straddles
    assert kinds(outs) == ["stream", "d14"]
    assert seq.stats.covered == 2 and seq.stats.applied == 1
    assert seq.top() == (100, 5, 102, 7)  # the 100 -> 6 change was covered, 101 removed
    assert kinds(seq.on_update(diff(15, 20, 14, bids=[(100, 9)]))) == ["d20"]
    assert seq.top() == (100, 9, 102, 7)


def test_futures_diff_ending_at_the_snapshot_id_is_applied_spot_one_is_covered() -> None:
    fut = BookSequencer(Rule.FUTURES)
    fut.on_update(snap(10, *BOOK))
    assert kinds(fut.on_update(diff(8, 10, 7, bids=[(100, 1)]))) == ["d10"]
    spot = BookSequencer(Rule.NEXT_ID)
    spot.on_update(snap(10, *BOOK))
    assert spot.on_update(diff(8, 10, 7, bids=[(100, 1)])) == []
    assert spot.stats.covered == 1
    assert kinds(spot.on_update(diff(11, 12, 10, bids=[(100, 2)]))) == ["d12"]
    assert spot.top() == (100, 2, 101, 4)


def test_first_diff_past_the_snapshot_is_a_gap() -> None:
    seq = BookSequencer(Rule.NEXT_ID)
    seq.on_update(snap(10, *BOOK))
    outs = seq.on_update(diff(13, 15, 12))
    assert kinds(outs) == ["resync"] and seq.stats.gaps == 1
    assert seq.phase == "degraded" and seq.top() is None


def test_gap_resyncs_and_the_next_snapshot_rebuilds_without_old_levels() -> None:
    seq = BookSequencer(Rule.FUTURES)
    seq.on_update(snap(10, *BOOK))
    seq.on_update(diff(10, 12, 9, bids=[(97, 8)]))
    outs = seq.on_update(diff(20, 22, 18, bids=[(96, 1)]))  # pu 18 != 12
    assert kinds(outs) == ["resync"]
    assert isinstance(outs[0], Status) and "gap" in outs[0].reason
    assert seq.stats.gaps == 1 and seq.stats.resyncs == 1 and seq.checkpoint(0, 0) is None
    # Diffs keep coming while degraded: they wait for the next snapshot.
    assert seq.on_update(diff(23, 25, 22, asks=[(103, 2)])) == []
    outs = seq.on_update(snap(24, [(95, 1)], [(103, 9)]))
    assert kinds(outs) == ["stream", "ok", "d25"]
    assert seq.bids == {95: 1}  # 100, 99 and 97 from before the resync are gone
    assert seq.asks == {103: 2}
    assert seq.phase == "ok"


def test_crossed_book_resyncs() -> None:
    seq = BookSequencer(Rule.FUTURES)
    seq.on_update(snap(10, *BOOK))
    outs = seq.on_update(diff(10, 11, 9, bids=[(101, 1)]))  # bid 101 >= ask 101
    assert kinds(outs) == ["resync"] and seq.stats.crossed == 1
    assert seq.phase == "degraded" and seq.bids == {} and seq.asks == {}


def test_crossed_snapshot_is_never_published() -> None:
    seq = BookSequencer(Rule.NEXT_ID)
    outs = seq.on_update(snap(10, [(105, 1)], [(101, 1)]))
    assert kinds(outs) == ["resync"] and seq.stats.crossed == 1


def test_duplicate_diff_is_skipped_not_a_gap() -> None:
    seq = BookSequencer(Rule.FUTURES)
    seq.on_update(snap(10, *BOOK))
    first = diff(10, 12, 9, bids=[(100, 1)])
    seq.on_update(first)
    seq.on_update(diff(13, 14, 12, bids=[(100, 2)]))
    assert seq.on_update(first) == []
    assert seq.stats.duplicates == 1 and seq.stats.gaps == 0
    assert seq.top() == (100, 2, 101, 4)


def test_removing_the_best_level_finds_the_next_one() -> None:
    seq = BookSequencer(Rule.NEXT_ID)
    seq.on_update(snap(10, *BOOK))
    seq.on_update(diff(11, 11, 10, bids=[(100, 0)], asks=[(101, 0), (104, 1)]))
    assert seq.top() == (99, 3, 102, 7)
    seq.on_update(diff(12, 12, 11, bids=[(99, 0), (98, 2), (100, 1), (100, 0)]))
    assert seq.top() == (98, 2, 102, 7)


def test_no_snapshot_within_the_wait_is_unbuildable_once() -> None:
    seq = BookSequencer(Rule.NEXT_ID, snapshot_wait_ns=2 * SEC)
    assert seq.on_update(diff(1, 1, 0, t=0)) == []
    assert seq.on_update(diff(2, 2, 1, t=1 * SEC)) == []
    outs = seq.on_update(diff(3, 3, 2, t=3 * SEC))
    assert kinds(outs) == ["unbuildable"]
    assert seq.on_update(diff(4, 4, 3, t=9 * SEC)) == []
    assert seq.finish(9 * SEC, 9 * SEC) == []
    # A snapshot that finally arrives still builds the book from the kept diffs.
    assert kinds(seq.on_update(snap(2, *BOOK))) == ["stream", "d3", "d4"]


def test_feed_ending_without_snapshot_says_unbuildable() -> None:
    seq = BookSequencer(Rule.FUTURES)
    seq.on_update(diff(1, 1, 0))
    assert kinds(seq.finish(5, 5)) == ["unbuildable"]


def test_checkpoint_is_the_current_book_best_first() -> None:
    seq = BookSequencer(Rule.FUTURES)
    seq.on_update(snap(10, *BOOK))
    assert seq.checkpoint(1, 1) is None  # no diff applied yet: the venue snap is current
    seq.on_update(diff(10, 12, 9, bids=[(98, 2)], asks=[(105, 1)]))
    ckpt = seq.checkpoint(7, 8)
    assert ckpt is not None and ckpt.source == "checkpoint" and ckpt.u == 12
    assert ckpt.bids == [(100, 5), (99, 3), (98, 2)]
    assert ckpt.asks == [(101, 4), (102, 7), (105, 1)]
    assert (ckpt.event_ns, ckpt.recv_ns) == (7, 8)


def test_snapshot_while_in_sync_replaces_the_book() -> None:
    seq = BookSequencer(Rule.NEXT_ID)  # Bybit: a new snapshot (or u == 1) resets
    seq.on_update(snap(10, *BOOK))
    seq.on_update(diff(11, 11, 10, bids=[(50, 1)]))
    outs = seq.on_update(snap(1, [(90, 1)], [(91, 1)]))
    assert kinds(outs) == ["stream"] and seq.bids == {90: 1}
    assert kinds(seq.on_update(diff(2, 2, 1, asks=[(92, 3)]))) == ["d2"]


def test_buffer_is_bounded() -> None:
    seq = BookSequencer(Rule.FUTURES, max_buffer=3)
    for i in range(1, 6):
        seq.on_update(diff(i, i, i - 1))
    assert seq.stats.buffer_overflow == 2
    assert kinds(seq.on_update(snap(3, *BOOK))) == ["stream", "d3", "d4", "d5"]


def test_invalidate_forces_a_resync() -> None:
    seq = BookSequencer(Rule.FUTURES)
    seq.on_update(snap(10, *BOOK))
    assert kinds(seq.invalidate("ids lost", 1, 1)) == ["resync"]
    assert seq.invalidate("again", 1, 1) == []
    assert seq.stats.gaps == 1


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.booleans(),  # bid side?
            st.lists(st.tuples(st.integers(1, 40), st.integers(0, 3)), max_size=8),
        ),
        max_size=80,
    )
)
def test_best_levels_always_equal_a_full_scan(updates: list[tuple[bool, Levels]]) -> None:
    """The heap-kept best bid / ask equal max(bids) / min(asks) after every diff.

    Bids live below 50 and asks above 50, so the book never crosses and every diff
    applies; prices are removed and re-added many times (lazy heap entries, rebuilds).
    """
    seq = BookSequencer(Rule.NEXT_ID)
    seq.on_update(snap(1, [(10, 1)], [(60, 1)]))
    u = 1
    for is_bid, levels in updates:
        u += 1
        side = [(p if is_bid else p + 50, s) for p, s in levels]
        seq.on_update(diff(u, u, u - 1, bids=side if is_bid else [], asks=[] if is_bid else side))
        assert seq.phase == "ok"
        assert seq.best_bid == (max(seq.bids) if seq.bids else None)
        assert seq.best_ask == (min(seq.asks) if seq.asks else None)
