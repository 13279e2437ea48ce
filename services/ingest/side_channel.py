"""Records carried beside the Nautilus objects built from them, data client -> Actor.

Nautilus's ``OrderBookDeltas`` keep only ``sequence`` (the venue's ``u``), not
``U``/``pu``, and a ``TradeTick`` has no liquidation flag: the Actor works on the
record (``records.py``) the object was built from. The data client pushes the record
with its object onto a per-instrument FIFO just before ``_handle_data(object)``; the
Actor pops it when that object reaches it. Nautilus delivers one instrument's data in
the order it was handed in, so FIFO order matches; the Actor still checks identity (the
entry must hold the same object) and treats a mismatch as a sequence break, never
guesses.

A diff that changes no level has no Nautilus object: it is queued without one and the
Actor applies it (it advances the sequence) before the next object of that instrument.

Derivative records (mark/funding, open interest, liquidations; live futures) have no
Nautilus object and no order to keep with the book: ``direct`` hands them straight to
the Actor (``listen_direct``), which writes them at once.

Live clients also register here how to ask the venue for a fresh book per instrument,
and announce what the venue's stream cannot say itself (the venue is unreachable, the
connection was re-established).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from services.ingest.records import Derivative, Record, Status


class SideChannel:
    """Per-instrument FIFOs of records awaiting their Nautilus object."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[tuple[Record, object | None]]] = {}
        #: Records whose Nautilus object is still in flight through Nautilus.
        self.in_flight = 0
        self._delivered = asyncio.Event()
        self._delivered.set()
        self._resync: dict[str, Callable[[], None]] = {}
        self._listener: Callable[[str, Status], None] | None = None
        self._direct: Callable[[str, Derivative], None] | None = None

    def push(self, instrument_id: str, record: Record, obj: object | None) -> None:
        """Queue ``record``; ``obj`` is the Nautilus object about to be handed to Nautilus
        (None: the record has none, e.g. a diff that changes no level)."""
        self._queues.setdefault(instrument_id, deque()).append((record, obj))
        if obj is not None:
            self.in_flight += 1
            self._delivered.clear()

    def pop_until(self, instrument_id: str, obj: object) -> tuple[list[Record], Record | None]:
        """Leading object-less records, then the record of ``obj`` (None if absent).

        If a record queued before ``obj``'s never had its object delivered, it is
        discarded and the caller gets ``None`` (treated as a sequence break).
        """
        queue = self._queues.get(instrument_id)
        leading: list[Record] = []
        if not queue:
            return leading, None
        lost = False
        while queue:
            record, held = queue.popleft()
            if held is None:
                leading.append(record)
                continue
            self._landed()
            # Identity is the normal case; a copy of the same data still matches.
            if held is obj or _same(held, obj):
                return leading, (None if lost else record)
            lost = True  # this record's object never arrived: a break, not a guess
        return leading, None

    def drain(self, instrument_id: str) -> list[Record]:
        """Object-less records left at the end of a feed."""
        queue = self._queues.get(instrument_id)
        out: list[Record] = []
        while queue:
            record, held = queue.popleft()
            if held is None:
                out.append(record)
            else:
                self._landed()
        return out

    async def wait_delivered(self) -> None:
        """Wait until every object handed to Nautilus has reached the Actor."""
        await self._delivered.wait()

    def _landed(self) -> None:
        self.in_flight -= 1
        if self.in_flight <= 0:
            self._delivered.set()

    def on_resync(self, instrument_id: str, request_snapshot: Callable[[], None]) -> None:
        """Register how to get a new venue snapshot for ``instrument_id`` (live mode)."""
        self._resync[instrument_id] = request_snapshot

    def listen(self, listener: Callable[[str, Status], None]) -> None:
        """Where ``announce`` goes (the Actor)."""
        self._listener = listener

    def announce(self, instrument_id: str, status: Status) -> None:
        """A feed status from the venue client itself (not from the venue's stream)."""
        if self._listener is not None:
            self._listener(instrument_id, status)

    def listen_direct(self, listener: Callable[[str, Derivative], None]) -> None:
        """Where ``direct`` goes (the Actor)."""
        self._direct = listener

    def direct(self, instrument_id: str, record: Derivative) -> None:
        """A derivative record of ``instrument_id``, outside Nautilus (live)."""
        if self._direct is not None:
            self._direct(instrument_id, record)

    def request_resync(self, instrument_id: str) -> bool:
        """Ask the data client for a new snapshot; False if it cannot (replay)."""
        request = self._resync.get(instrument_id)
        if request is None:
            return False
        request()
        return True


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
