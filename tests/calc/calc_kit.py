"""Test helpers for calc: a deliberately plain reading of recorded Binance files.

Nothing here uses the project's analytics: json + gzip + dicts of floats, following
data/README.md (snapshot, then the held and later diffs, pu chain).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gzip
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from services.calc.metrics import CalcMetrics
from services.calc.settings import Settings
from services.calc.worker import CalcWorker
from shared.redis_client import make_redis
from shared.wire import Entry
from tests.support.polling import apoll

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data"

USDM_BTC = [
    DATA / "binance-usdm/BTCUSDT/btcusdt_20240718.gz",
    DATA / "binance-usdm/BTCUSDT/btcusdt_20240719.gz",
]
USDM_ETH = [
    DATA / "binance-usdm/ETHUSDT/ethusdt_20240718.gz",
    DATA / "binance-usdm/ETHUSDT/ethusdt_20240719.gz",
]
SPOT_BTC = [
    DATA / "binance-spot/BTCUSDT/btcusdt_20240808.gz",
]
COINM_BTC = [
    DATA / "binance-coinm/BTCUSD_PERP/btcusd_perp_20240808.gz",
]


def raw_lines(paths: list[Path]) -> Iterator[dict[str, Any]]:
    for path in paths:
        with gzip.open(path, "rt") as fh:
            for line in fh:
                yield json.loads(line.split(" ", 1)[1])


def event_ms(msg: dict[str, Any], watermark_ms: int) -> int | None:
    """Exchange time of a line as the stream contract defines it (docs/stream-contract.md):
    depth diffs and futures snapshots carry the transaction time ``T`` (else ``E``),
    trades ``T``; the spot REST snapshot has none and takes the newest time seen before
    it. None for lines that carry no time (spot bookTicker)."""
    if "lastUpdateId" in msg:
        return msg.get("T") or msg.get("E") or watermark_ms
    data = msg.get("data", {})
    return data.get("T") or data.get("E")


@dataclass
class PlainState:
    """Book and trades after some prefix of a session, all in plain floats."""

    bids: dict[float, float] = field(default_factory=dict)
    asks: dict[float, float] = field(default_factory=dict)
    #: (event time ms, price, qty, taker bought, liquidation fill)
    trades: list[tuple[int, float, float, bool, bool]] = field(default_factory=list)
    max_event_ms: int = 0
    #: Time of the first entry of the stream (a trade before the snapshot, or the snapshot).
    first_ms: int | None = None


def plain_states_at(
    paths: list[Path], times_ms: list[int], project: Callable[[PlainState], Any] | None = None
) -> dict[int, Any]:
    """The plain state for each boundary ``t``: every stream entry before the first one
    whose event time is later than ``t``. Stream order: trades as they arrive; diffs
    before the snapshot are held and follow it (only those with ``u >= lastUpdateId``).
    Ingest's periodic checkpoint snapshots re-state the same book at an already-seen
    time, so they change nothing here. ``project`` (default: a copy of the state) maps
    the live state to what is kept for each boundary."""
    pending = sorted(times_ms)
    out: dict[int, PlainState] = {}
    st = PlainState()
    held_depth: list[tuple[int, dict[str, Any]]] = []
    snap_u: int | None = None
    watermark = 0

    def apply_depth(at_ms: int, d: dict[str, Any]) -> None:
        for side, key in ((st.bids, "b"), (st.asks, "a")):
            for p, q in d[key]:
                if float(q) == 0:
                    side.pop(float(p), None)
                else:
                    side[float(p)] = float(q)
        st.max_event_ms = max(st.max_event_ms, at_ms)

    def close_boundaries(at_ms: int) -> None:
        while pending and at_ms > pending[0]:
            t = pending.pop(0)
            if project is not None:
                out[t] = project(st)
                continue
            out[t] = PlainState(
                dict(st.bids), dict(st.asks), list(st.trades), st.max_event_ms, st.first_ms
            )

    for msg in raw_lines(paths):
        at = event_ms(msg, watermark)
        if at is None:
            continue
        watermark = max(watermark, at)
        stream = msg.get("stream", "")
        if "lastUpdateId" in msg:
            close_boundaries(at)
            snap_u = msg["lastUpdateId"]
            st.bids = {float(p): float(q) for p, q in msg["bids"] if float(q) > 0}
            st.asks = {float(p): float(q) for p, q in msg["asks"] if float(q) > 0}
            st.max_event_ms = max(st.max_event_ms, at)
            st.first_ms = at if st.first_ms is None else st.first_ms
            for held_at, d in held_depth:
                if d["u"] >= snap_u:
                    close_boundaries(held_at)
                    apply_depth(held_at, d)
            continue
        if "@depth" in stream and snap_u is None:
            held_depth.append((at, msg["data"]))
            continue
        if "@depth" not in stream and not stream.endswith("@trade"):
            continue
        close_boundaries(at)
        if not pending:
            break
        data = msg["data"]
        if "@depth" in stream:
            apply_depth(at, data)
        else:
            liq = data.get("X", "MARKET") != "MARKET"
            st.trades.append((at, float(data["p"]), float(data["q"]), not data["m"], liq))
            st.max_event_ms = max(st.max_event_ms, at)
            st.first_ms = at if st.first_ms is None else st.first_ms
    return out


def plain_mids_at(paths: list[Path], times_ms: list[int]) -> dict[int, float | None]:
    """The plain book's mid ``(max bid + min ask) / 2`` at each boundary (None without a
    two-sided, uncrossed book), by the same walk as ``plain_states_at``."""

    def mid(st: PlainState) -> float | None:
        if not st.bids or not st.asks:
            return None
        bid, ask = max(st.bids), min(st.asks)
        return None if bid > ask else (bid + ask) / 2

    return plain_states_at(paths, times_ms, mid)


def book_tickers(paths: list[Path]) -> list[tuple[int, float, float, float, float]]:
    """(u, bid, bid qty, ask, ask qty) of every recorded bookTicker, in file order."""
    return [
        (d["u"], float(d["b"]), float(d["B"]), float(d["a"]), float(d["A"]))
        for msg in raw_lines(paths)
        if msg.get("stream", "").endswith("@bookTicker")
        for d in [msg["data"]]
    ]


wait_for = apoll


@functools.cache
def session_entries(name: str) -> tuple[Entry, ...]:
    """Wire entries ingest writes for a named session (its own offline replay, converted
    once per test run), without the final ``down`` status of the end of the recording."""
    from services.ingest.offline import offline_entries

    (entries,) = offline_entries(SESSIONS[name]).values()
    return tuple(e for e in entries if e.kind != "status")


SESSIONS: dict[str, list[Path]] = {
    "usdm-btc": USDM_BTC,
    "usdm-eth": USDM_ETH,
    "spot-btc": SPOT_BTC,
    "coinm-btc": COINM_BTC,
}


@contextlib.asynccontextmanager
async def running(settings: Settings, stop_within_s: float = 10.0) -> AsyncIterator[CalcWorker]:
    """A calc worker running in this loop; it must stop within ``stop_within_s``."""
    stop = asyncio.Event()
    worker = new_worker(settings)
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, stop_within_s)
        finally:
            await worker.client.aclose()
            await worker.blocking.aclose()


def new_worker(settings: Settings) -> CalcWorker:
    """A calc worker with its two clients, as the service shell builds it (the caller
    closes ``worker.client`` and ``worker.blocking``)."""
    client = make_redis(settings)
    blocking = make_redis(settings, blocking_ms=settings.calc_xread_block_ms + 1000)
    log = structlog.get_logger().bind(test=True)
    return CalcWorker(settings, log, client, blocking, CalcMetrics(CollectorRegistry()))
