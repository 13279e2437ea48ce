"""Venue decimal strings -> exact ints scaled by ``10**precision`` (no float on the way).

The wire carries prices and sizes as ints scaled by the instrument's precision, so the
parsers convert each venue number once, straight from its text. Book messages repeat
the same few hundred price and size strings (the levels near the top change over and
over), so ``LevelScaler`` memoises the conversion per feed.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.ingest.records import Level

_ZEROS = ["0" * n for n in range(19)]


class ValueRejection(ValueError):
    """A venue number that is not a plain non-negative decimal, or is off the grid."""

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(f"{reason}: {text!r}")
        self.reason = reason


def scaled(text: str, precision: int) -> int:
    """``"61837.63000000"`` at precision 2 -> ``6183763``; exact.

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
    """``scaled`` for one feed's ``[price, size]`` levels, memoised.

    Only successful conversions are remembered; each memo is emptied when it grows past
    ``max_entries`` (a drifting market keeps adding prices).
    """

    def __init__(self, pp: int, sp: int, max_entries: int = 100_000) -> None:
        self.pp = pp
        self.sp = sp
        self._prices: dict[str, int] = {}
        self._sizes: dict[str, int] = {}
        self._max = max_entries

    def levels(self, pairs: Sequence[Sequence[str]]) -> list[Level]:
        """``[[price, size], ...]`` text pairs -> scaled ``(price, size)`` int pairs.

        The hot loop of ingest (every level of every book message): one comprehension
        of memo lookups while every text is known (nearly always), else level by level.
        """
        prices, sizes = self._prices, self._sizes
        try:
            return [(prices[price], sizes[size]) for price, size in pairs]
        except KeyError:
            pass
        out: list[Level] = []
        add = out.append
        for price, size in pairs:
            px = prices.get(price)
            if px is None:
                px = self._price(price)
            sz = sizes.get(size)
            if sz is None:
                sz = self._size(size)
            add((px, sz))
        return out

    def _price(self, text: str) -> int:
        value = scaled(text, self.pp)
        if len(self._prices) >= self._max:
            self._prices.clear()
        self._prices[text] = value
        return value

    def _size(self, text: str) -> int:
        value = scaled(text, self.sp)
        if len(self._sizes) >= self._max:
            self._sizes.clear()
        self._sizes[text] = value
        return value
