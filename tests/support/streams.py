"""Reading a market-data stream as a plain consumer would, checking its contract."""

from __future__ import annotations

from dataclasses import dataclass

from shared.wire import DeltaPayload, Entry, SnapPayload, StatusPayload


@dataclass
class Consumed:
    """What a consumer holds at the end of a stream."""

    #: Entries per kind (snap kinds by ``src``: ``snap:venue``, ``snap:checkpoint``).
    counts: dict[str, int]
    #: The update id its book is at (None without a book), and the book.
    u: int | None
    bids: dict[int, int]
    asks: dict[int, int]


def check_stream_consistency(entries: list[tuple[bytes, Entry]]) -> Consumed:
    """Consume a stream as a plain consumer would and check the contract on the way.

    The first book entry is a snap; deltas chain (``pu`` == previous ``u``; the first
    after a snap straddles it: ``pu <= snap.u <= u``); a checkpoint snap equals the
    book the consumer rebuilt itself (unless a resync dropped it: a takeover's book).
    Returns the counts per kind (snap kinds by ``src``) and the book it ended with.
    """
    counts: dict[str, int] = {}
    bids: dict[int, int] = {}
    asks: dict[int, int] = {}
    last_u: int | None = None
    after_snap = False
    have_book = False
    for _eid, entry in entries:
        p = entry.payload
        key = f"snap:{p.src}" if isinstance(p, SnapPayload) else entry.kind
        counts[key] = counts.get(key, 0) + 1
        if isinstance(p, SnapPayload):
            if p.src == "checkpoint" and have_book:  # (after a resync: a takeover's book)
                assert p.u == last_u
                assert dict(p.b) == bids and dict(p.a) == asks
            assert [x for x, _ in p.b] == sorted((x for x, _ in p.b), reverse=True)
            assert [x for x, _ in p.a] == sorted(x for x, _ in p.a)
            bids, asks = dict(p.b), dict(p.a)
            last_u, after_snap, have_book = p.u, True, True
        elif isinstance(p, DeltaPayload):
            assert have_book, "delta before any snap"
            assert last_u is not None
            if after_snap:
                assert p.pu <= last_u <= p.u
            else:
                assert p.pu == last_u
            for side, levels in ((bids, p.b), (asks, p.a)):
                for price, size in levels:
                    if size:
                        side[price] = size
                    else:
                        side.pop(price, None)
            assert max(bids) < min(asks)
            last_u, after_snap = p.u, False
        elif isinstance(p, StatusPayload) and p.state in ("resync", "unbuildable"):
            have_book, bids, asks = False, {}, {}
    return Consumed(counts, last_u, bids, asks)
