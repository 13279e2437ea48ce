"""The rebuilt books of every kit session against the exchange's own bookTicker."""

from __future__ import annotations

import pytest
from ingest_support import (
    BYBIT,
    SESSIONS,
    SPOT_2023,
    SessionResult,
    replay_session,
    snaps,
    statuses,
)

#: Comparable bookTickers per session, counted independently (kit README method on the
#: bundled files; spot and COIN-M are their 2024-08-08 day files only, see data/README.md).
EXPECTED_COMPARABLE = {
    "usdm-btc-2024-07": 625,
    "usdm-eth-2024-07": 834,
    "usdm-btc-2024-08": 629,
    "spot-btc-2024-08": 564,
    "coinm-btc-2024-08": 1124,
}
#: Depth events per session (counted the same way) = applied + covered by the snapshot.
EXPECTED_DEPTH_EVENTS = {
    "usdm-btc-2024-07": 9022,
    "usdm-eth-2024-07": 8929,
    "usdm-btc-2024-08": 6551,
    "spot-btc-2024-08": 3451,
    "coinm-btc-2024-08": 26847,
}


@pytest.mark.parametrize("name", list(SESSIONS))
def test_top_of_book_matches_book_ticker(
    name: str, session_results: dict[str, SessionResult]
) -> None:
    result = session_results[name]
    stats = result.sequencer.stats
    matches, mismatches = result.compare_with_book_ticker()
    print(f"{name}: {matches} bookTicker matches, {mismatches} mismatches, {stats}")
    assert (matches, mismatches) == (EXPECTED_COMPARABLE[name], 0)
    assert stats.gaps == 0 and stats.crossed == 0 and stats.resyncs == 0
    assert stats.snapshots == 1
    assert stats.applied + stats.covered == EXPECTED_DEPTH_EVENTS[name]
    assert 0 <= stats.covered <= 23
    assert result.rejections == {}
    assert result.sequencer.phase == "ok"


@pytest.mark.parametrize("name", list(SESSIONS))
def test_first_book_output_is_the_venue_snapshot(
    name: str, session_results: dict[str, SessionResult]
) -> None:
    outputs = session_results[name].outputs
    assert snaps(outputs)[:1] == outputs[:1] and outputs[0].source == "stream"  # type: ignore[union-attr]
    assert statuses(outputs) == []
    snap = snaps(outputs)[0]
    # Best first on both sides, and 1000 levels per side as the REST snapshot has.
    assert snap.bids == sorted(snap.bids, reverse=True) and len(snap.bids) == 1000
    assert snap.asks == sorted(snap.asks) and len(snap.asks) == 1000


def test_known_snapshot_top_of_usdm_btc_2024_07(session_results: dict[str, SessionResult]) -> None:
    """README: snapshot lastUpdateId 4984028384061, best bid/ask 63943.9 / 63944.0."""
    snap = snaps(session_results["usdm-btc-2024-07"].outputs)[0]
    assert snap is session_results["usdm-btc-2024-07"].outputs[0]
    assert snap.u == 4984028384061
    assert snap.bids[0][0] == 639439 and snap.asks[0][0] == 639440


def test_trades_are_all_there_with_consecutive_ids(
    session_results: dict[str, SessionResult],
) -> None:
    trades = session_results["usdm-btc-2024-07"].trades
    assert len(trades) == 10701
    ids = [int(t.id) for t in trades]
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    assert not any(t.liq for t in trades)  # every X is MARKET in this session


def test_spot_2023_without_snapshot_is_unbuildable() -> None:
    result = replay_session([SPOT_2023])
    assert [s.state for s in statuses(result.outputs)] == ["unbuildable"]
    assert snaps(result.outputs) == []
    assert result.sequencer.top() is None and result.sequencer.phase == "waiting"
    assert result.sequencer.finish(0, 0) == []  # already said once
    assert len(result.trades) == 3144


def test_bybit_file_rebuilds_with_no_gap() -> None:
    result = replay_session([BYBIT])
    stats = result.sequencer.stats
    assert stats.snapshots == 1 and stats.applied == 49
    assert stats.gaps == 0 and stats.crossed == 0
    assert stats.level_changes + 1000 == 3966  # README: 3,966 level rows incl. the snapshot
    # README: final best bid/ask 1.9537 / 1.9538 (XRPUSDT price precision 4).
    top = result.sequencer.top()
    assert top is not None and (top[0], top[2]) == (19537, 19538)
