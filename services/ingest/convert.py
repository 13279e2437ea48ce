"""Nautilus values -> the wire's scaled ints, exactly (no float on the way)."""

from __future__ import annotations

from nautilus_trader.model.data import OrderBookDeltas
from nautilus_trader.model.enums import BookAction, OrderSide
from nautilus_trader.model.objects import FIXED_PRECISION

from services.ingest.parsing import BookMsg
from services.ingest.sequencer import BookUpdate, Level

_DIVISORS = [10 ** (FIXED_PRECISION - p) for p in range(FIXED_PRECISION + 1)]
_BUY = OrderSide.BUY
_CLEAR = BookAction.CLEAR


class OffGridError(ValueError):
    """A price or size finer than the instrument's precision."""


def scale_raw(raw: int, precision: int) -> int:
    """A Nautilus fixed-point raw value as an int scaled by ``10**precision``."""
    value, rest = divmod(raw, _DIVISORS[precision])
    if rest:
        raise OffGridError(f"value {raw / 10**FIXED_PRECISION} is finer than 1e-{precision}")
    return value


def scale_text(text: str, precision: int) -> int:
    """A venue decimal string (e.g. ``"61837.63000000"``) as an int scaled by ``10**precision``."""
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0")
    if len(frac) > precision:
        raise OffGridError(f"value {text} is finer than 1e-{precision}")
    sign = -1 if whole.startswith("-") else 1
    return sign * (
        abs(int(whole or "0")) * 10**precision + int((frac or "0").ljust(precision, "0"))
    )


def levels_of(deltas: OrderBookDeltas | None, pp: int, sp: int) -> tuple[list[Level], list[Level]]:
    """(bids, asks) as scaled ``(price, size)`` pairs; a CLEAR delta carries no level."""
    bids: list[Level] = []
    asks: list[Level] = []
    if deltas is None:
        return bids, asks
    pdiv = _DIVISORS[pp]
    sdiv = _DIVISORS[sp]
    for delta in deltas.deltas:
        if delta.action == _CLEAR:
            continue
        order = delta.order
        price, prest = divmod(order.price.raw, pdiv)
        size, srest = divmod(order.size.raw, sdiv)
        if prest or srest:
            raise OffGridError(f"level {order.price}/{order.size} is off the {pp}/{sp} grid")
        (bids if order.side == _BUY else asks).append((price, size))
    return bids, asks


def book_update(msg: BookMsg, pp: int, sp: int) -> BookUpdate:
    """The sequencer's input for one parsed venue book message.

    The parser's exact ints when it carried them (the normal case); otherwise (a snapshot
    Nautilus's REST client built) they are read back from the deltas.
    """
    if msg.bids is not None and msg.asks is not None:
        bids, asks = msg.bids, msg.asks
    else:
        bids, asks = levels_of(msg.deltas, pp, sp)
    return BookUpdate(msg.snapshot, msg.U, msg.u, msg.pu, bids, asks, msg.event_ns, msg.recv_ns)
