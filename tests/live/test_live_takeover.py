"""Ingest high availability over real sockets: two live ingest processes follow the
same venue symbols; the standby takes a killed owner's feeds over once its claims lapse,
re-syncs them from a fresh venue snapshot, and a paused owner that wakes up after being
replaced never writes beside the new one."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import redis

from context8.emulator.process import EmulatorProcess
from context8.redis_server import RedisServer
from shared import keys, wire
from tests.support.live_ingest import (
    ON_EMULATOR,
    entries,
    files_of,
    log_events,
    scaled_levels,
    start_live_ingest,
)
from tests.support.polling import poll
from tests.support.streams import check_stream_consistency

pytestmark = pytest.mark.timeout(240)

SYMBOLS = ["BTCUSDT", "BTCUSDPERP"]
TTL_S = 1.0


def _holder(client: redis.Redis, symbol: str) -> str | None:
    value = client.get(keys.feed_claim(symbol))
    return value.decode() if isinstance(value, bytes) else None


def _takeovers(client: redis.Redis, symbol: str) -> list[tuple[int, wire.Entry]]:
    stream = [e for _, e in entries(client, symbol)]
    return [
        (i, e)
        for i, e in enumerate(stream)
        if isinstance(e.payload, wire.StatusPayload) and "takeover" in e.payload.reason
    ]


def test_standby_takes_over_a_killed_then_a_paused_owner(tmp_path: Path) -> None:
    with RedisServer() as server, EmulatorProcess(files_of(*SYMBOLS), speed=15) as emu:
        client = redis.Redis.from_url(server.url)

        def ingest(node: str) -> object:
            return start_live_ingest(
                server.url,
                emu.venue_urls,
                SYMBOLS,
                tmp_path / f"{node}.log",
                node_id=node,
                ingest_claim_ttl_s=str(TTL_S),
            )

        a = ingest("ingest-a")
        procs = [a]
        try:
            poll(lambda: all(_holder(client, s) == "ingest-a" for s in SYMBOLS), 60, "a owns")
            poll(lambda: all(client.xlen(keys.stream(s)) > 50 for s in SYMBOLS), 60, "data")
            b = ingest("ingest-b")
            procs.append(b)
            poll(
                lambda: log_events(
                    tmp_path / "ingest-b.log", "standby for symbols another process writes"
                ),
                60,
            )
            # The standby is hot: connected and subscribed, writing nothing.
            poll(lambda: emu.market_stats("binance-usdm")["connections_open"] == 2, 30)

            # kill -9 the owner: the standby's first entry comes within the TTL + a tick.
            last = {s: client.xrevrange(keys.stream(s), count=1)[0][0] for s in SYMBOLS}
            a.kill()  # type: ignore[attr-defined]
            killed = time.monotonic()
            reply = client.xread({keys.stream("BTCUSDT"): last["BTCUSDT"]}, block=10_000, count=1)
            took = time.monotonic() - killed
            assert reply, "no entry after the kill"
            first = wire.decode(reply[0][1][0][1])
            assert isinstance(first.payload, wire.StatusPayload)
            assert (first.payload.state, first.payload.reason) == (
                "resync",
                "ingest takeover by ingest-b from ingest-a",
            )
            assert took < 2 * TTL_S + 0.5, took
            for sym in SYMBOLS:
                poll(lambda s=sym: _holder(client, s) == "ingest-b", 10, f"b owns {sym}")
                # Re-synced from a fresh venue snapshot (REST), then ok.
                poll(
                    lambda s=sym: (
                        _after_takeover(client, s, 1)[:3] in (["resync", "snap:venue", "ok"],)
                    ),
                    30,
                    f"{sym} re-synced",
                )

            # Pause the new owner past its TTL: the killed one, back as a standby, takes
            # over; the paused one wakes up and its queued entries are refused.
            a = ingest("ingest-a")
            procs.append(a)
            poll(
                lambda: (
                    len(
                        log_events(
                            tmp_path / "ingest-a.log", "standby for symbols another process writes"
                        )
                    )
                    >= 1
                ),
                60,
            )
            os.kill(b.pid, signal.SIGSTOP)  # type: ignore[attr-defined]
            poll(lambda: all(_holder(client, s) == "ingest-a" for s in SYMBOLS), 10, "a again")
            os.kill(b.pid, signal.SIGCONT)  # type: ignore[attr-defined]
            poll(lambda: log_events(tmp_path / "ingest-b.log", "feed claim lost; standing by"), 10)
            for sym in SYMBOLS:
                poll(
                    lambda s=sym: _after_takeover(client, s, 2)[:2] == ["resync", "snap:venue"], 30
                )
            assert client.get(keys.feed_claim("BTCUSDT")) == b"ingest-a"
            print(f"kill -9 -> first entry of the standby: {took:.2f} s")

            # One writer at a time all along: the books end as the venue's (compared
            # when the venue has gone quiet at the end of its recording).
            for sym in SYMBOLS:
                market, raw = ON_EMULATOR[sym]
                poll(lambda m=market, r=raw: emu.symbol_stats(m, r)["ended"], 120, "the end")
                truth = emu.book(market, raw, depth=100)
                u = truth["last_update_id"]
                poll(lambda s=sym, u=u: check_stream_consistency(entries(client, s)).u == u, 30)
                # One writer at a time: the consumer's contract holds across takeovers.
                book = check_stream_consistency(entries(client, sym))
                bids, asks = book.bids, book.asks
                pp, sp = (1, 3) if sym == "BTCUSDT" else (1, 0)
                assert dict(sorted(bids.items(), reverse=True)[:100]) == scaled_levels(
                    truth["bids"], pp, sp
                )
                assert dict(sorted(asks.items())[:100]) == scaled_levels(truth["asks"], pp, sp)
        finally:
            for proc in procs:
                if proc.poll() is None:  # type: ignore[attr-defined]
                    proc.terminate()  # type: ignore[attr-defined]
                    proc.wait(20)  # type: ignore[attr-defined]
            client.close()


def _after_takeover(client: redis.Redis, symbol: str, nth: int) -> list[str]:
    """Kinds of the book/status entries after the ``nth`` takeover (trades left out)."""
    found = _takeovers(client, symbol)
    if len(found) < nth:
        return []
    start = found[nth - 1][0]
    stream = [e for _, e in entries(client, symbol)][start:]
    out = []
    for e in stream:
        p = e.payload
        if isinstance(p, wire.StatusPayload):
            out.append(p.state)
        elif isinstance(p, wire.SnapPayload):
            out.append(f"snap:{p.src}")
        elif isinstance(p, wire.DeltaPayload):
            out.append("delta")
    return out
