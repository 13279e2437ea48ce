"""The records ingest passes from a venue parser to the Redis Stream, one shape each.

A venue message becomes a ``BookUpdate`` or a ``Trade`` in the venue parser
(``venues/``); the feed core (``core.py``) takes those records, validates books with
the ``BookSequencer`` and hands records back out (the same ``BookUpdate`` object for an
applied diff, a sorted one for a snapshot or checkpoint, plus ``Status`` changes);
``wire_fields`` encodes each as a stream entry. Prices and sizes are exact ints scaled
by the instrument's ``10**pp`` / ``10**sp`` all the way (no float, no Nautilus type).

``Quote`` (the venue's own best bid/ask, Binance ``bookTicker``) is parsed only to
verify rebuilt books; it never becomes an entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shared import wire

Level = tuple[int, int]

#: Where a book update came from: the venue's stream (WebSocket, or a recording of it),
#: a REST snapshot (Binance live re-sync), or ingest's own validated book (checkpoint).
Source = Literal["stream", "rest", "checkpoint"]

FeedState = Literal["ok", "resync", "unbuildable", "down", "degraded"]


@dataclass(slots=True)
class BookUpdate:
    """A full book (``snapshot``) or one diff; size 0 removes a level.

    ``U``/``u`` are the venue's first/last update ids, ``pu`` the id this update follows,
    normalised by the parser so one rule fits every venue (Binance futures ``pu``;
    Binance spot ``U - 1``; Bybit ``u - 1``). A snapshot is valid at its ``u``.
    """

    snapshot: bool
    U: int
    u: int
    pu: int
    bids: list[Level]
    asks: list[Level]
    event_ns: int
    recv_ns: int
    source: Source = "stream"


@dataclass(slots=True)
class Trade:
    """One trade; ``side`` is the aggressor (``B`` taker bought, ``S`` taker sold)."""

    id: str
    px: int
    sz: int
    side: Literal["B", "S", ""]
    #: A liquidation / insurance-fund fill (Binance futures ``X`` != ``MARKET``).
    liq: bool
    event_ns: int
    recv_ns: int


@dataclass(slots=True)
class Status:
    """A feed state change."""

    state: FeedState
    reason: str
    event_ns: int
    recv_ns: int


@dataclass(slots=True)
class Quote:
    """The venue's best bid/ask as it sent them (Binance bookTicker), for verification."""

    u: int
    bid_px: str
    bid_sz: str
    ask_px: str
    ask_sz: str
    event_ns: int
    recv_ns: int


@dataclass(slots=True)
class MarkUpdate:
    """Derivatives (live): mark / index price and funding; None where the frame has none
    (a Bybit ``tickers`` delta carries only what changed)."""

    mark: float | None
    index: float | None
    funding: float | None
    #: Next funding time, ms since the epoch.
    nft: int | None
    event_ns: int
    recv_ns: int


@dataclass(slots=True)
class OpenInterest:
    """Derivatives (live): open interest (contracts/base) and its quote value if given."""

    oi: float
    value: float | None
    event_ns: int
    recv_ns: int


@dataclass(slots=True)
class Liquidation:
    """Derivatives (live): one forced liquidation; ``side`` is the liquidated position's."""

    side: Literal["long", "short"]
    px: float
    sz: float
    event_ns: int
    recv_ns: int


#: Derivative records: no Nautilus object, no book; written as they come (live only).
Derivative = MarkUpdate | OpenInterest | Liquidation
DERIVATIVE_TYPES = (MarkUpdate, OpenInterest, Liquidation)

#: What a venue parser hands the feed core.
Record = BookUpdate | Trade
#: What the feed core hands the stream.
Entry = BookUpdate | Trade | Status | MarkUpdate | OpenInterest | Liquidation


def wire_fields(out: Entry, pp: int, sp: int) -> tuple[str, dict[bytes, bytes]]:
    """(kind, encoded fields) of one stream entry (``shared.wire``)."""
    payload: wire.Payload
    if type(out) is BookUpdate:
        if out.snapshot:
            src = "checkpoint" if out.source == "checkpoint" else "venue"
            payload = wire.SnapPayload(u=out.u, pp=pp, sp=sp, b=out.bids, a=out.asks, src=src)
            kind = "snap"
        else:
            payload = wire.DeltaPayload(
                U=out.U, u=out.u, pu=out.pu, pp=pp, sp=sp, b=out.bids, a=out.asks
            )
            kind = "delta"
    elif type(out) is Trade:
        payload = wire.TradePayload(
            id=out.id, px=out.px, sz=out.sz, pp=pp, sp=sp, side=out.side, liq=out.liq
        )
        kind = "trade"
    elif type(out) is Status:
        payload = wire.StatusPayload(state=out.state, reason=out.reason)
        kind = "status"
    elif type(out) is MarkUpdate:
        payload = wire.MarkPayload(mark=out.mark, index=out.index, funding=out.funding, nft=out.nft)
        kind = "mark"
    elif type(out) is OpenInterest:
        payload = wire.OpenInterestPayload(oi=out.oi, value=out.value)
        kind = "oi"
    else:
        assert isinstance(out, Liquidation)
        payload = wire.LiquidationPayload(side=out.side, px=out.px, sz=out.sz)
        kind = "liq"
    return kind, wire.encode(payload, out.event_ns, out.recv_ns)
