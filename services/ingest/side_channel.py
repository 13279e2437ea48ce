"""What Nautilus data objects do not carry, passed beside them from data client to Actor.

``OrderBookDeltas`` keep only ``sequence`` (= the venue's ``u``), not ``U``/``pu``; a
``TradeTick`` has no liquidation flag. The data client pushes the parsed venue message
(``BookMsg`` / ``TradeMsg``, which holds the very Nautilus object it hands to
Nautilus) onto a per-instrument FIFO just before ``_handle_data``; the Actor pops it
when that object reaches it. Nautilus delivers one instrument's data in the order it
was handed in, so FIFO order matches; the Actor still checks identity (the message
must hold the same object) and treats a mismatch as a sequence break, never guesses.

A diff that changes no level has no Nautilus object: it is queued with
``deltas=None`` and the Actor applies it (it advances the sequence) before the next
object of that instrument.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from services.ingest.parsing import BookMsg, TradeMsg

SideMsg = BookMsg | TradeMsg


class SideChannel:
    """Per-instrument FIFOs of parsed venue messages awaiting their Nautilus object."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[SideMsg]] = {}
        #: Messages that carry a Nautilus object still in flight through Nautilus.
        self.in_flight = 0
        self._delivered = asyncio.Event()
        self._delivered.set()
        #: Live clients register how to fetch a fresh venue snapshot per instrument.
        self._resync: dict[str, Callable[[], None]] = {}

    def push(self, instrument_id: str, msg: SideMsg) -> None:
        self._queues.setdefault(instrument_id, deque()).append(msg)
        if not (isinstance(msg, BookMsg) and msg.deltas is None):
            self.in_flight += 1
            self._delivered.clear()

    def pop_until(self, instrument_id: str, obj: object) -> tuple[list[BookMsg], SideMsg | None]:
        """Leading object-less diffs, then the message holding ``obj`` (None if absent).

        If a message queued before ``obj``'s never arrived, it is discarded and the
        caller sees ``None`` (treated as a sequence break).
        """
        queue = self._queues.get(instrument_id)
        empty: list[BookMsg] = []
        if not queue:
            return empty, None
        leading: list[BookMsg] = []
        lost = False
        while queue:
            msg = queue.popleft()
            if isinstance(msg, BookMsg) and msg.deltas is None:
                leading.append(msg)
                continue
            self._landed()
            held = msg.deltas if isinstance(msg, BookMsg) else msg.tick
            # Identity is the normal case; a copy of the same data still matches.
            if held is obj or _same(held, obj):
                return leading, (None if lost else msg)
            lost = True  # this message's object never arrived: a break, not a guess
        return leading, None

    def on_resync(self, instrument_id: str, request_snapshot: Callable[[], None]) -> None:
        """Register how to get a new venue snapshot for ``instrument_id`` (live mode)."""
        self._resync[instrument_id] = request_snapshot

    def request_resync(self, instrument_id: str) -> bool:
        """Ask the data client for a new snapshot; False if it cannot (replay)."""
        request = self._resync.get(instrument_id)
        if request is None:
            return False
        request()
        return True

    async def wait_delivered(self) -> None:
        """Wait until every object handed to Nautilus has reached the Actor."""
        await self._delivered.wait()

    def _landed(self) -> None:
        self.in_flight -= 1
        if self.in_flight <= 0:
            self._delivered.set()

    def drain(self, instrument_id: str) -> list[BookMsg]:
        """Object-less diffs left at the end of a feed."""
        queue = self._queues.get(instrument_id)
        out: list[BookMsg] = []
        while queue:
            msg = queue.popleft()
            if isinstance(msg, BookMsg) and msg.deltas is None:
                out.append(msg)
            else:
                self._landed()
        return out


def _same(held: object, obj: object) -> bool:
    try:
        return bool(
            type(held) is type(obj)
            and held.ts_event == obj.ts_event  # type: ignore[attr-defined]
            and getattr(held, "sequence", None) == getattr(obj, "sequence", None)
            and getattr(held, "trade_id", None) == getattr(obj, "trade_id", None)
        )
    except AttributeError:
        return False
