"""Recorded Binance files (hftbacktest format) -> wire entries, for offline replays.

Format (see /work/shared/data/README.md): gzip text, ``<local ts> <JSON>`` per line;
combined-stream messages (``@depth``, ``@trade``, ``@bookTicker``) plus one REST
snapshot line. Depth events received before the snapshot are held back and emitted
right after it (the book skips those the snapshot covers), and so are trades received
before it (the stream starts with the snapshot). Event times: depth ``E``,
trades ``T``, the snapshot its ``E`` (spot: the last depth ``E`` seen). bookTicker
lines are not wire entries; they are skipped here.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from shared.errors import WireFormatError
from shared.wire import DeltaPayload, Entry, SnapPayload, TradePayload

MS = 1_000_000


def decimals(text: str) -> int:
    """Significant decimals of a decimal string ("63943.90" -> 1)."""
    if "." not in text:
        return 0
    return len(text.split(".", 1)[1].rstrip("0"))


def to_scaled(text: str, precision: int) -> int:
    """Exact scaled integer of a decimal string; error if it needs more decimals."""
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0")
    if len(frac) > precision:
        raise WireFormatError(f"{text!r} needs more than {precision} decimals")
    sign = -1 if whole.startswith("-") else 1
    return sign * (
        abs(int(whole or "0")) * 10**precision + int((frac or "0").ljust(precision, "0"))
    )


def iter_lines(paths: Iterable[Path]) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(local receive ns, message)`` for every line of the files, in order."""
    for path in paths:
        with gzip.open(path, "rt") as fh:
            for line in fh:
                ts, _, body = line.partition(" ")
                local = int(ts)
                if local < 10**17:  # microseconds (2023 files)
                    local *= 1000
                yield local, json.loads(body)


_PAIR = re.compile(r'\["(-?[0-9.]+)","(-?[0-9.]+)"\]')
_TRADE_PX = re.compile(r'"p":"(-?[0-9.]+)"')
_TRADE_QTY = re.compile(r'"q":"(-?[0-9.]+)"')


def infer_precision(paths: Iterable[Path]) -> tuple[int, int]:
    """(price, size) decimals: the most any book level or trade of the files needs.

    The files carry no instrument info, so the precision is observed (one pass).
    """
    pp = sp = 0
    for path in paths:
        with gzip.open(path, "rt") as fh:
            for line in fh:
                for p, q in _PAIR.findall(line):
                    pp, sp = max(pp, decimals(p)), max(sp, decimals(q))
                for p in _TRADE_PX.findall(line):
                    pp = max(pp, decimals(p))
                for q in _TRADE_QTY.findall(line):
                    sp = max(sp, decimals(q))
    return pp, sp


def binance_entries(
    paths: Iterable[Path], precision: tuple[int, int] | None = None
) -> Iterator[Entry]:
    """Wire entries of one recorded session (files in date order).

    ``precision`` = (price decimals, size decimals); inferred from the files if None.
    """
    paths = list(paths)
    pp, sp = precision or infer_precision(paths)
    have_snapshot = False
    held: list[tuple[int, dict[str, Any]]] = []
    last_depth_ns: int | None = None
    trades_before: list[tuple[int, dict[str, Any]]] = []

    def delta(local: int, d: dict[str, Any]) -> Entry:
        payload = DeltaPayload(
            U=d["U"],
            u=d["u"],
            pu=d.get("pu", d["U"] - 1),
            pp=pp,
            sp=sp,
            b=[(to_scaled(p, pp), to_scaled(q, sp)) for p, q in d["b"]],
            a=[(to_scaled(p, pp), to_scaled(q, sp)) for p, q in d["a"]],
        )
        return Entry("delta", d["E"] * MS, local, payload)

    def trade(local: int, d: dict[str, Any]) -> Entry:
        payload = TradePayload(
            id=str(d["t"]),
            px=to_scaled(d["p"], pp),
            sz=to_scaled(d["q"], sp),
            pp=pp,
            sp=sp,
            side="S" if d["m"] else "B",
            liq=d.get("X", "MARKET") != "MARKET",
        )
        return Entry("trade", d["T"] * MS, local, payload)

    for local, msg in iter_lines(paths):
        stream = msg.get("stream")
        if stream is None:
            if "lastUpdateId" not in msg:
                continue
            have_snapshot = True
            event_ns = msg["E"] * MS if "E" in msg else (last_depth_ns or local)
            yield Entry(
                "snap",
                event_ns,
                local,
                SnapPayload(
                    u=msg["lastUpdateId"],
                    pp=pp,
                    sp=sp,
                    b=[(to_scaled(p, pp), to_scaled(q, sp)) for p, q in msg["bids"]],
                    a=[(to_scaled(p, pp), to_scaled(q, sp)) for p, q in msg["asks"]],
                ),
            )
            for held_local, d in held:
                yield delta(held_local, d)
            held = []
            for held_local, d in trades_before:
                yield trade(held_local, d)
            trades_before = []
            continue
        data = msg["data"]
        if "@depth" in stream:
            last_depth_ns = data["E"] * MS
            if not have_snapshot:
                held.append((local, data))
            else:
                yield delta(local, data)
        elif stream.endswith("@trade"):
            if not have_snapshot:
                trades_before.append((local, data))
            else:
                yield trade(local, data)
