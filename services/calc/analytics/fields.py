"""Report fields from book and trade state: exact definitions, one function each.

Every function is pure. Prices/sizes arrive as scaled integers with their precision;
divisions are done on Python ints where possible (correctly rounded to float once).
See docs/analytics.md for the definitions and thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.calc.analytics.book import BookState, L2Book, Level
from shared import health as health_rules
from shared.health import DEGRADED_AGE_MS, DOWN_AGE_MS

#: book_integrity score per book condition.
INTEGRITY_SCORE: dict[str, int] = {
    "ok": 100,
    "feed_degraded": 60,
    "gap": 30,
    "resync": 10,
    "crossed": 0,
    "none": 0,
    "feed_down": 0,
}


def level_json(level: Level, pp: int, sp: int) -> dict[str, float]:
    return {"price": level[0] / 10**pp, "qty": level[1] / 10**sp}


@dataclass(frozen=True, slots=True)
class TopOfBook:
    best_bid: dict[str, float] | None
    best_ask: dict[str, float] | None
    mid_price: float | None
    spread_bps: float | None
    micro_price: float | None


NO_TOP = TopOfBook(None, None, None, None, None)


def top_of_book(book: L2Book) -> TopOfBook:
    """Best levels, mid, spread and micro-price; null when unknown or the book is crossed."""
    if not book.has_book or book.is_crossed():
        return NO_TOP
    bid, ask = book.best_bid(), book.best_ask()
    pp, sp = book.pp, book.sp
    best_bid = level_json(bid, pp, sp) if bid else None
    best_ask = level_json(ask, pp, sp) if ask else None
    if bid is None or ask is None:
        return TopOfBook(best_bid, best_ask, None, None, None)
    (b, bq), (a, aq) = bid, ask
    scale = 10**pp
    mid = round((b + a) / (2 * scale), 8)
    spread_bps = round((a - b) * 20_000 / (a + b), 4)
    micro = round((b * aq + a * bq) / ((bq + aq) * scale), 8) if bq + aq > 0 else None
    return TopOfBook(best_bid, best_ask, mid, spread_bps, micro)


def depth_fields(book: L2Book, levels: int) -> dict[str, Any]:
    """Top ``levels`` per side (bids descending, asks ascending), totals and imbalance."""
    if not book.has_book:
        return {
            "bids": [],
            "asks": [],
            "total_bid_qty": 0.0,
            "total_ask_qty": 0.0,
            "imbalance": None,
        }
    pp, sp = book.pp, book.sp
    pscale, sscale = 10**pp, 10**sp
    bids = book.top_bids(levels)
    asks = book.top_asks(levels)
    tb = sum(q for _, q in bids)
    ta = sum(q for _, q in asks)
    return {
        "bids": [{"price": p / pscale, "qty": q / sscale} for p, q in bids],
        "asks": [{"price": p / pscale, "qty": q / sscale} for p, q in asks],
        "total_bid_qty": tb / sscale,
        "total_ask_qty": ta / sscale,
        "imbalance": (tb - ta) / (tb + ta) if tb + ta > 0 else None,
    }


def book_condition(book: L2Book, feed_state: str) -> str:
    """One word for the book's trustworthiness (a key of ``INTEGRITY_SCORE``)."""
    if book.state is BookState.NONE:
        return "none"
    if book.state is BookState.RESYNC:
        return "resync"
    if feed_state == "down":
        return "feed_down"
    if book.is_crossed():
        return "crossed"
    if book.state is BookState.GAP:
        return "gap"
    if feed_state == "degraded":
        return "feed_degraded"
    return "ok"


def ingestion_status(condition: str, age_ms: int | None) -> str:
    """``down``: no book, feed down, or data older than 30 s; ``degraded``: book suspect
    (gap, crossed, resyncing, feed degraded) or data older than 5 s; else ``ok``."""
    if condition in ("none", "feed_down") or age_ms is None or age_ms > DOWN_AGE_MS:
        return "down"
    if condition != "ok" or age_ms > DEGRADED_AGE_MS:
        return "degraded"
    return "ok"


def health(condition: str, age_ms: int | None, spread_bps: float | None) -> dict[str, Any]:
    """Weighted score 0-100 with its components (freshness, book_integrity, spread),
    capped by the status the same inputs give (``shared.health``)."""
    status = ingestion_status(condition, age_ms)
    return health_rules.health(INTEGRITY_SCORE[condition], age_ms, spread_bps, status)
