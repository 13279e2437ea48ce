"""Venue decimal strings -> exact scaled ints -> Nautilus objects via the raw constructors.

Nautilus's adapters build every level with ``Price.from_str`` / ``Quantity.from_str``
(~2.4 µs each here) and a ``BookOrder`` per level; reading the values back out of a
delta costs another ~4 µs a level. Ingest needs the exact ints anyway (the wire carries
prices and sizes scaled by ``10**pp`` / ``10**sp``), so they are computed once, straight
from the venue's text, and the Nautilus objects are built from them with
``OrderBookDelta.from_raw`` / ``TradeTick.from_raw`` (a fixed-point raw value is the
scaled int times ``10**(FIXED_PRECISION - precision)``). The ints travel beside the
object (``BookMsg.bids/asks``, ``TradeMsg.px/sz``), so nothing is parsed twice.

The Nautilus objects are the ones Nautilus's own adapters would build (same actions,
sides, flags, sequence, timestamps), except that the event time is the exact integer
nanoseconds (Nautilus's ``millis_to_nanos`` goes through a double).
"""

from __future__ import annotations

from collections.abc import Sequence

from nautilus_trader.model.data import OrderBookDelta, OrderBookDeltas, TradeTick
from nautilus_trader.model.enums import AggressorSide, BookAction, OrderSide, RecordFlag
from nautilus_trader.model.identifiers import InstrumentId, TradeId
from nautilus_trader.model.objects import FIXED_PRECISION

Level = tuple[int, int]

#: scaled int (precision p) -> Nautilus raw fixed-point value: multiply by this.
RAW_FACTOR = [10 ** (FIXED_PRECISION - p) for p in range(FIXED_PRECISION + 1)]
_ZEROS = ["0" * n for n in range(FIXED_PRECISION + 1)]

_ADD = BookAction.ADD
_UPDATE = BookAction.UPDATE
_DELETE = BookAction.DELETE
_BUY = OrderSide.BUY
_SELL = OrderSide.SELL
_F_LAST = int(RecordFlag.F_LAST)
_F_SNAPSHOT = int(RecordFlag.F_SNAPSHOT)
_from_raw = OrderBookDelta.from_raw
_clear = OrderBookDelta.clear


class ValueRejection(ValueError):
    """A venue number that is not a plain non-negative decimal, or is off the grid."""

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(f"{reason}: {text!r}")
        self.reason = reason


def scaled(text: str, precision: int) -> int:
    """``"61837.63000000"`` at precision 2 -> ``6183763``; exact, no float on the way.

    Raises ``ValueRejection``: ``bad_value`` for anything but ASCII digits with at most
    one ``.`` (signs, exponents, blanks), ``off_grid`` for digits finer than ``precision``.
    """
    whole, _, frac = text.partition(".")
    if len(frac) > precision:
        frac = frac.rstrip("0")
        if len(frac) > precision:
            if not (frac.isdigit() and frac.isascii()):
                raise ValueRejection("bad_value", text)
            raise ValueRejection("off_grid", text)
    digits = whole + frac
    if not (digits.isdigit() and digits.isascii() and whole):
        raise ValueRejection("bad_value", text)
    return int(digits + _ZEROS[precision - len(frac)])


class LevelScaler:
    """``scaled`` for one feed's book levels, memoised, and the levels' Nautilus deltas.

    Book messages repeat the same few hundred price and size strings (the levels near
    the top change over and over), so a dict lookup replaces most conversions. Each memo
    maps the venue text to ``(scaled int, Nautilus raw value)``. Only successful
    conversions are remembered; each memo is emptied when it grows past ``max_entries``
    (a drifting market keeps adding prices).
    """

    def __init__(self, pp: int, sp: int, max_entries: int = 100_000) -> None:
        self.pp = pp
        self.sp = sp
        self._prices: dict[str, tuple[int, int]] = {}
        self._sizes: dict[str, tuple[int, int]] = {}
        self._max = max_entries

    def book(
        self,
        instrument_id: InstrumentId,
        bids: Sequence[Sequence[str]],
        asks: Sequence[Sequence[str]],
        sequence: int,
        ts_event: int,
        ts_init: int,
        snapshot: bool,
    ) -> tuple[list[Level], list[Level], OrderBookDeltas | None]:
        """One venue book message: its levels as ints and its Nautilus deltas.

        ``bids``/``asks`` hold ``[price, size]`` string pairs. A snapshot's deltas start
        with a CLEAR and add its levels (``F_SNAPSHOT``); a diff's update (size > 0) or
        delete (size 0) levels; the last delta carries ``F_LAST``. A diff without levels
        has no deltas (None).
        """
        out: list[OrderBookDelta] = []
        if snapshot:
            out.append(_clear(instrument_id, sequence, ts_event, ts_init))
        flags = _F_SNAPSHOT if snapshot else 0
        head = (out, instrument_id, sequence, ts_event, ts_init, flags, snapshot)
        bid_levels = self._side(bids, _BUY, *head)
        ask_levels = self._side(asks, _SELL, *head)
        if not out:
            return bid_levels, ask_levels, None
        if bid_levels or ask_levels:
            side, (px, sz) = (_SELL, ask_levels[-1]) if ask_levels else (_BUY, bid_levels[-1])
            out[-1] = _from_raw(
                instrument_id,
                (_ADD if snapshot else _UPDATE) if sz else _DELETE,
                side,
                px * RAW_FACTOR[self.pp],
                self.pp,
                sz * RAW_FACTOR[self.sp],
                self.sp,
                0,
                flags | _F_LAST,
                sequence,
                ts_event,
                ts_init,
            )
        return bid_levels, ask_levels, OrderBookDeltas(instrument_id, out)

    def _side(
        self,
        levels: Sequence[Sequence[str]],
        side: OrderSide,
        out: list[OrderBookDelta],
        instrument_id: InstrumentId,
        sequence: int,
        ts_event: int,
        ts_init: int,
        flags: int,
        snapshot: bool,
    ) -> list[Level]:
        """One side's levels -> scaled pairs; appends their deltas to ``out``.

        The hot loop of ingest (every level of every book message): locals only, one
        memo lookup per text, the raw values ready in the memo.
        """
        prices, sizes = self._prices, self._sizes
        pp, sp = self.pp, self.sp
        set_action = _ADD if snapshot else _UPDATE
        ints: list[Level] = []
        add_int = ints.append
        add_delta = out.append
        for price, size in levels:
            px, px_raw = prices.get(price) or self._price(price)
            sz, sz_raw = sizes.get(size) or self._size(size)
            add_int((px, sz))
            add_delta(
                _from_raw(
                    instrument_id,
                    set_action if sz else _DELETE,
                    side,
                    px_raw,
                    pp,
                    sz_raw,
                    sp,
                    0,
                    flags,
                    sequence,
                    ts_event,
                    ts_init,
                )
            )
        return ints

    def _price(self, text: str) -> tuple[int, int]:
        value = scaled(text, self.pp)
        if len(self._prices) >= self._max:
            self._prices.clear()
        pair = self._prices[text] = (value, value * RAW_FACTOR[self.pp])
        return pair

    def _size(self, text: str) -> tuple[int, int]:
        value = scaled(text, self.sp)
        if len(self._sizes) >= self._max:
            self._sizes.clear()
        pair = self._sizes[text] = (value, value * RAW_FACTOR[self.sp])
        return pair


def trade_tick(
    instrument_id: InstrumentId,
    px: int,
    sz: int,
    pp: int,
    sp: int,
    buyer_aggressor: bool,
    trade_id: str,
    ts_event: int,
    ts_init: int,
) -> TradeTick:
    """A ``TradeTick`` from scaled ints (size must be positive, as Nautilus requires)."""
    if sz <= 0:
        raise ValueRejection("bad_value", f"trade size {sz}")
    return TradeTick.from_raw(
        instrument_id,
        px * RAW_FACTOR[pp],
        pp,
        sz * RAW_FACTOR[sp],
        sp,
        AggressorSide.BUYER if buyer_aggressor else AggressorSide.SELLER,
        TradeId(trade_id),
        ts_event,
        ts_init,
    )
