"""Records -> NautilusTrader data objects, for the trip through a Nautilus node.

The data clients (replay and live) hand Nautilus ``OrderBookDeltas`` / ``TradeTick``
objects to the node's data engine, which delivers them to the ingest Actor; the record
they were built from travels beside them on the ``SideChannel``. They are the objects
Nautilus's own adapters would build (same actions, sides, flags, sequence, timestamps),
built with the raw constructors from the records' exact ints (a fixed-point raw value is
the scaled int times ``10**(FIXED_PRECISION - precision)``): ``Price.from_str`` per
level was ingest's largest cost. The event time is the exact integer nanoseconds
(Nautilus's ``millis_to_nanos`` goes through a double).
"""

from __future__ import annotations

from collections.abc import Callable

from nautilus_trader.core.data import Data
from nautilus_trader.model.data import OrderBookDelta, OrderBookDeltas, TradeTick
from nautilus_trader.model.enums import AggressorSide, BookAction, OrderSide, RecordFlag
from nautilus_trader.model.identifiers import InstrumentId, TradeId
from nautilus_trader.model.objects import FIXED_PRECISION

from services.ingest.feeds import Feed
from services.ingest.records import BookUpdate, Level, Record, Trade
from services.ingest.side_channel import SideChannel

#: scaled int (precision p) -> Nautilus raw fixed-point value: multiply by this.
RAW_FACTOR = [10 ** (FIXED_PRECISION - p) for p in range(FIXED_PRECISION + 1)]

_ADD = BookAction.ADD
_UPDATE = BookAction.UPDATE
_DELETE = BookAction.DELETE
_BUY = OrderSide.BUY
_SELL = OrderSide.SELL
_F_LAST = int(RecordFlag.F_LAST)
_F_SNAPSHOT = int(RecordFlag.F_SNAPSHOT)
_from_raw = OrderBookDelta.from_raw
_clear = OrderBookDelta.clear
_AGGRESSOR = {"B": AggressorSide.BUYER, "S": AggressorSide.SELLER, "": AggressorSide.NO_AGGRESSOR}


def book_deltas(
    update: BookUpdate, instrument_id: InstrumentId, pp: int, sp: int
) -> OrderBookDeltas | None:
    """The update as Nautilus deltas; None for a diff that changes no level.

    A snapshot starts with a CLEAR and adds its levels (``F_SNAPSHOT``); a diff updates
    (size > 0) or deletes (size 0) levels; the last delta carries ``F_LAST``.
    The deltas' ``sequence`` is the venue's ``u`` (Nautilus's Bybit adapter puts Bybit's
    cross sequence ``seq`` there; ingest's records do not carry it).
    """
    snapshot = update.snapshot
    sequence = update.u
    out: list[OrderBookDelta] = []
    ts_event, ts_init = update.event_ns, update.recv_ns
    if snapshot:
        out.append(_clear(instrument_id, sequence, ts_event, ts_init))
    flags = _F_SNAPSHOT if snapshot else 0
    pf, sf = RAW_FACTOR[pp], RAW_FACTOR[sp]
    set_action = _ADD if snapshot else _UPDATE
    for levels, side in ((update.bids, _BUY), (update.asks, _SELL)):
        add = out.append
        for px, sz in levels:
            add(
                _from_raw(
                    instrument_id,
                    set_action if sz else _DELETE,
                    side,
                    px * pf,
                    pp,
                    sz * sf,
                    sp,
                    0,
                    flags,
                    sequence,
                    ts_event,
                    ts_init,
                )
            )
    if not out:
        return None
    last: Level | None = (
        update.asks[-1] if update.asks else update.bids[-1] if update.bids else None
    )
    if last is not None:  # rebuild the final level with F_LAST (the objects are immutable)
        px, sz = last
        out[-1] = _from_raw(
            instrument_id,
            set_action if sz else _DELETE,
            _SELL if update.asks else _BUY,
            px * pf,
            pp,
            sz * sf,
            sp,
            0,
            flags | _F_LAST,
            sequence,
            ts_event,
            ts_init,
        )
    return OrderBookDeltas(instrument_id, out)


def trade_tick(trade: Trade, instrument_id: InstrumentId, pp: int, sp: int) -> TradeTick:
    """The trade as a Nautilus ``TradeTick`` (its size must be positive)."""
    return TradeTick.from_raw(
        instrument_id,
        trade.px * RAW_FACTOR[pp],
        pp,
        trade.sz * RAW_FACTOR[sp],
        sp,
        _AGGRESSOR[trade.side],
        TradeId(trade.id),
        trade.event_ns,
        trade.recv_ns,
    )


class Handoff:
    """Hands one feed's records to a Nautilus data client (``_handle_data``), each with
    its record on the side channel, so the Actor gets the record back."""

    def __init__(self, feed: Feed, side: SideChannel, handle_data: Callable[[Data], None]) -> None:
        self.feed = feed
        self._iid = feed.instrument_id
        self._instrument_id = InstrumentId.from_str(feed.instrument_id)
        self._pp, self._sp = feed.price_precision, feed.size_precision
        self._side = side
        self._handle = handle_data

    def __call__(self, record: Record) -> None:
        obj: Data | None
        if type(record) is Trade:
            obj = trade_tick(record, self._instrument_id, self._pp, self._sp)
        else:
            assert isinstance(record, BookUpdate)
            obj = book_deltas(record, self._instrument_id, self._pp, self._sp)
        self._side.push(self._iid, record, obj)
        if obj is not None:
            self._handle(obj)
