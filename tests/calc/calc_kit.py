"""Test helpers for calc: a deliberately plain reading of recorded Binance files.

Nothing here uses the project's analytics: json + gzip + dicts of floats, following
/work/shared/data/README.md (snapshot, then the held and later diffs, pu chain).
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.wire import Entry

KIT = Path("/work/shared/data")
REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "data"

USDM_BTC = [
    DEMO / "binance-usdm/BTCUSDT/btcusdt_20240718.gz",
    DEMO / "binance-usdm/BTCUSDT/btcusdt_20240719.gz",
]
USDM_ETH = [
    DEMO / "binance-usdm/ETHUSDT/ethusdt_20240718.gz",
    DEMO / "binance-usdm/ETHUSDT/ethusdt_20240719.gz",
]
SPOT_BTC = [
    KIT / "binance-spot/BTCUSDT/btcusdt_20240808.gz",
    KIT / "binance-spot/BTCUSDT/btcusdt_20240809.gz",
]
COINM_BTC = [
    KIT / "binance-coinm/BTCUSD_PERP/btcusd_perp_20240808.gz",
    KIT / "binance-coinm/BTCUSD_PERP/btcusd_perp_20240809.gz",
]


def raw_lines(paths: list[Path]) -> Iterator[dict[str, Any]]:
    for path in paths:
        with gzip.open(path, "rt") as fh:
            for line in fh:
                yield json.loads(line.split(" ", 1)[1])


@dataclass
class PlainState:
    """Book and trades after some prefix of a session, all in plain floats."""

    bids: dict[float, float] = field(default_factory=dict)
    asks: dict[float, float] = field(default_factory=dict)
    #: (event time ms, price, qty, taker bought, liquidation fill)
    trades: list[tuple[int, float, float, bool, bool]] = field(default_factory=list)
    max_event_ms: int = 0
    snapshot_ms: int | None = None


def plain_states_at(paths: list[Path], times_ms: list[int]) -> dict[int, PlainState]:
    """The plain state for each boundary: every line before the first line (after the
    snapshot) whose event time is later than the boundary; lines before the snapshot are
    applied right after it (depth only if u >= lastUpdateId)."""
    pending = sorted(times_ms)
    out: dict[int, PlainState] = {}
    st = PlainState()
    held_depth: list[dict[str, Any]] = []
    held_trades: list[dict[str, Any]] = []
    snap_u: int | None = None
    last_depth_ms = 0

    def apply_depth(d: dict[str, Any]) -> None:
        for side, key in ((st.bids, "b"), (st.asks, "a")):
            for p, q in d[key]:
                if float(q) == 0:
                    side.pop(float(p), None)
                else:
                    side[float(p)] = float(q)
        st.max_event_ms = max(st.max_event_ms, d["E"])

    def add_trade(d: dict[str, Any]) -> None:
        liq = d.get("X", "MARKET") != "MARKET"
        st.trades.append((d["T"], float(d["p"]), float(d["q"]), not d["m"], liq))
        st.max_event_ms = max(st.max_event_ms, d["T"])

    for msg in raw_lines(paths):
        if "stream" not in msg:
            if "lastUpdateId" not in msg:
                continue
            snap_u = msg["lastUpdateId"]
            st.bids = {float(p): float(q) for p, q in msg["bids"] if float(q) > 0}
            st.asks = {float(p): float(q) for p, q in msg["asks"] if float(q) > 0}
            st.snapshot_ms = msg.get("E", last_depth_ms)
            st.max_event_ms = max(st.max_event_ms, st.snapshot_ms)
            for d in held_depth:
                if d["u"] >= snap_u:
                    apply_depth(d)
            for d in held_trades:
                add_trade(d)
            continue
        data = msg["data"]
        stream = msg["stream"]
        if "@depth" in stream:
            event_ms = data["E"]
            last_depth_ms = event_ms
        elif stream.endswith("@trade"):
            event_ms = data["T"]
        else:
            continue
        if snap_u is None:
            (held_depth if "@depth" in stream else held_trades).append(data)
            continue
        while pending and event_ms > pending[0]:
            t = pending.pop(0)
            out[t] = PlainState(
                dict(st.bids), dict(st.asks), list(st.trades), st.max_event_ms, st.snapshot_ms
            )
        if not pending:
            break
        if "@depth" in stream:
            apply_depth(data)
        else:
            add_trade(data)
    return out


def book_tickers(paths: list[Path]) -> list[tuple[int, float, float, float, float]]:
    """(u, bid, bid qty, ask, ask qty) of every recorded bookTicker, in file order."""
    return [
        (d["u"], float(d["b"]), float(d["B"]), float(d["a"]), float(d["A"]))
        for msg in raw_lines(paths)
        if msg.get("stream", "").endswith("@bookTicker")
        for d in [msg["data"]]
    ]


async def wait_for(predicate: Callable[[], Any], timeout: float, what: str = "condition") -> Any:
    """Poll ``predicate`` (sync or async) until truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


@functools.cache
def session_entries(name: str) -> tuple[Entry, ...]:
    """Wire entries of a named session (converted once per test run)."""
    from services.calc.binance_files import binance_entries

    return tuple(binance_entries(SESSIONS[name]))


SESSIONS: dict[str, list[Path]] = {
    "usdm-btc": USDM_BTC,
    "usdm-eth": USDM_ETH,
    "spot-btc": SPOT_BTC,
    "coinm-btc": COINM_BTC,
}
