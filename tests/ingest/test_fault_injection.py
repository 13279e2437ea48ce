"""Faults injected into real recorded sessions: counted, resynced, never a wrong book."""

from __future__ import annotations

import copy

from ingest_support import SessionResult, deltas, sequence_messages, snaps, statuses

from services.ingest.records import BookUpdate


def _diff_indexes(messages: list) -> list[int]:
    return [i for i, m in enumerate(messages) if isinstance(m, BookUpdate) and not m.snapshot]


def test_dropped_diff_is_a_gap_then_degraded(session_results: dict[str, SessionResult]) -> None:
    clean = session_results["usdm-btc-2024-07"]
    messages = list(clean.messages)
    victim = _diff_indexes(messages)[4000]
    dropped = messages.pop(victim)
    result = sequence_messages(clean.feed, messages)
    stats = result.sequencer.stats
    assert stats.gaps == 1 and stats.resyncs == 1
    found = statuses(result.outputs)
    assert [s.state for s in found] == ["resync"]
    # Nothing is published after the gap: no later snapshot exists in the recording.
    after = result.outputs[result.outputs.index(found[0]) + 1 :]
    assert after == [] and result.sequencer.phase == "degraded"
    assert all(o.u < dropped.u for o in deltas(result.outputs))
    # Up to the gap the book still matched the venue.
    result.quotes = clean.quotes
    matches, mismatches = result.compare_with_book_ticker()
    assert mismatches == 0 and matches > 200


def test_duplicated_diff_is_skipped_and_book_stays_exact(
    session_results: dict[str, SessionResult],
) -> None:
    clean = session_results["usdm-btc-2024-07"]
    messages = list(clean.messages)
    i = _diff_indexes(messages)[3000]
    messages.insert(i + 5, messages[i])  # the same diff again, a few messages later
    result = sequence_messages(clean.feed, messages)
    result.quotes = clean.quotes
    stats = result.sequencer.stats
    assert stats.duplicates == 1 and stats.gaps == 0 and stats.resyncs == 0
    assert result.compare_with_book_ticker() == clean.compare_with_book_ticker()


def test_reordered_diffs_are_a_gap(session_results: dict[str, SessionResult]) -> None:
    clean = session_results["spot-btc-2024-08"]
    messages = list(clean.messages)
    diffs = _diff_indexes(messages)
    a, b = diffs[2000], diffs[2001]
    messages[a], messages[b] = messages[b], messages[a]
    result = sequence_messages(clean.feed, messages)
    assert result.sequencer.stats.gaps == 1
    assert result.sequencer.stats.resyncs == 1
    assert result.sequencer.phase == "degraded"


def test_crossing_diff_is_counted_and_resyncs(session_results: dict[str, SessionResult]) -> None:
    clean = session_results["usdm-eth-2024-07"]
    messages = list(clean.messages)
    i = _diff_indexes(messages)[1500]
    original = messages[i]
    assert isinstance(original, BookUpdate) and original.bids
    # Put a bid far above every ask: a corrupt level the venue would never send.
    tampered = copy.copy(original)
    tampered.bids = [*original.bids, (9999999, original.bids[0][1] or 1)]
    messages[i] = tampered
    result = sequence_messages(clean.feed, messages)
    stats = result.sequencer.stats
    assert stats.crossed == 1 and stats.resyncs == 1
    status = statuses(result.outputs)[0]
    assert status.state == "resync" and "crossed" in status.reason
    # The crossing diff itself was never published.
    assert not any(o.u == original.u for o in deltas(result.outputs))


def test_recovery_from_a_gap_on_the_next_snapshot_has_no_stale_levels(
    session_results: dict[str, SessionResult],
) -> None:
    """A gap in one recording, then a later recording of the same instrument (with its
    own snapshot): the rebuilt book must equal a clean rebuild of the later recording."""
    early = session_results["usdm-btc-2024-07"]
    later = session_results["usdm-btc-2024-08"]
    messages = list(early.messages)
    del messages[_diff_indexes(messages)[6000]]
    result = sequence_messages(early.feed, messages + list(later.messages))
    states = [o.state for o in statuses(result.outputs)]
    assert states == ["resync", "ok"]
    assert len(snaps(result.outputs)) == 2
    assert result.sequencer.bids == later.sequencer.bids
    assert result.sequencer.asks == later.sequencer.asks
    result.quotes = later.quotes
    later_u0 = later.outputs[0].u  # type: ignore[union-attr]
    result.tops = [t for t in result.tops if t[0] >= later_u0]
    assert result.compare_with_book_ticker() == later.compare_with_book_ticker()
