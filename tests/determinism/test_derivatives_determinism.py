"""The derivatives section is the same whatever the pace: offline replay, ``report_at``
and a real calc worker reading the same stream written at once or in small paced
chunks all give identical sections at every boundary.

No recording of the venues' derivatives streams exists: the derivative entries are the
venue emulator's synthetic frames (context8/emulator/derivatives.py: mark / funding per
exchange second, liquidations from every 20th trade, open interest polled every 3 s),
parsed by ingest's own Binance parser, interleaved with the market-data entries of
ingest's offline replay of the same recording in the order the emulator sends them.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from context8.emulator.book import BookKeeper
from context8.emulator.derivatives import Synthesiser, binance_open_interest_body
from context8.emulator.recording import Kind, load_symbol
from services.calc.analytics import replay, report_at
from services.calc.settings import Settings
from services.ingest.feeds import Feed
from services.ingest.recorded import RawLine
from services.ingest.records import wire_fields
from services.ingest.venues.binance.parsing import BinanceParser
from shared import keys, wire
from shared.candidate import decode_candidate
from shared.report import schema_errors
from tests.calc.calc_kit import USDM_BTC, running, session_entries, wait_for
from tests.support.candidates import stream_of

pytestmark = pytest.mark.timeout(120)

SYMBOL = "BTCUSDT"
MS = 1_000_000
MARKET_ENTRIES = 4000
OI_EVERY_MS = 3000


def _derivative_entries(until_ns: int) -> list[wire.Entry]:
    """The emulator's synthetic frames for the recording, through ingest's parser."""
    feed = Feed("BINANCE", "usdm", SYMBOL, SYMBOL, 1, 3)
    parser = BinanceParser(feed)
    rec = load_symbol("binance-usdm", SYMBOL, USDM_BTC[:1])
    keeper = BookKeeper("binance", True)
    synth = Synthesiser("binance", SYMBOL, True)
    out: list[wire.Entry] = []
    next_oi: int | None = None
    for ev in rec.events:
        keeper.apply(ev)
        t_ms = ev.t + ev.offset
        if t_ms * MS > until_ns:
            break
        records = [
            parser.parse(RawLine(t_ms * MS, f.text.encode(), 0))
            for f in synth.observe(ev, keeper)
            if f.kind in (Kind.MARK, Kind.LIQUIDATION)
        ]
        if next_oi is None or t_ms >= next_oi:
            body = orjson.dumps(binance_open_interest_body(SYMBOL, None, t_ms))
            records.append(parser.open_interest(body, t_ms * MS))
            next_oi = t_ms + OI_EVERY_MS
        for record in records:
            _, fields = wire_fields(record, 1, 3)  # type: ignore[arg-type]
            out.append(wire.decode(fields))
    return out


def _interleave(market: list[wire.Entry], derived: list[wire.Entry]) -> list[wire.Entry]:
    """Each derivative entry before the first market entry with a later event time."""
    out: list[wire.Entry] = []
    i = 0
    for entry in market:
        while i < len(derived) and derived[i].event_ns <= entry.event_ns:
            out.append(derived[i])
            i += 1
        out.append(entry)
    return out


@pytest.fixture(scope="module")
def entries() -> list[wire.Entry]:
    market = list(session_entries("usdm-btc")[:MARKET_ENTRIES])
    derived = _derivative_entries(max(e.event_ns for e in market))
    kinds = {e.kind for e in derived}
    assert kinds == {"mark", "oi", "liq"}, kinds
    return _interleave(market, derived)


async def _assign(r: aioredis.Redis, node: str) -> None:
    await r.hset(keys.SYMBOLS, SYMBOL, json.dumps({"venue": "binance", "market": "usdm"}))
    await r.hset(keys.ASSIGNMENT, SYMBOL, node)
    version = await r.incr(keys.ASSIGNMENT_VERSION)
    await r.publish(keys.ASSIGNMENT_CHANNEL, str(version))


async def _worker_sections(
    r: aioredis.Redis, redis_url: str, entries: list[wire.Entry], chunk: int | None, n: int
) -> dict[int, Any]:
    """Every cycle's derivatives section from a worker fed ``entries`` (``chunk`` at a
    time, each consumed before the next is written; None: all at once)."""
    settings = Settings(redis_url=redis_url, node_id="calc-d", calc_stall_grace_ms=600_000)
    async with running(settings) as worker:
        await _assign(r, "calc-d")
        await wait_for(lambda: SYMBOL in worker.runners, timeout=5, what="runner")
        await wait_for(lambda: worker.runners[SYMBOL].lease is not None, timeout=5, what="lease")
        step = chunk or len(entries)
        for start in range(0, len(entries), step):
            pipe = r.pipeline(transaction=False)
            for e in entries[start : start + step]:
                pipe.xadd(keys.stream(SYMBOL), wire.encode(e.payload, e.event_ns, e.recv_ns))  # type: ignore[arg-type]
            last = (await pipe.execute())[-1]
            runner = worker.runners[SYMBOL]
            await wait_for(
                lambda r=runner, i=last: r.last_id == i, timeout=20, what="chunk consumed"
            )

        async def all_cycles() -> list[Any] | None:
            got = [decode_candidate(f) for _, f in await r.xrange(stream_of(SYMBOL))]
            return got if len(got) >= n else None

        got = await wait_for(all_cycles, timeout=30, what="every cycle")
    await r.flushall()
    return {c.event_ms: orjson.loads(c.report_json).get("derivatives") for c in got}


async def test_derivatives_are_the_same_at_any_pace(
    aredis: aioredis.Redis, redis_url: str, entries: list[wire.Entry]
) -> None:
    expected = list(replay(entries, SYMBOL, "BINANCE"))
    offline = {t // MS: r.get("derivatives") for t, r in expected}
    with_section = [t for t, d in offline.items() if d is not None]
    assert len(with_section) > 100
    # Liquidations in the window at some boundary, and open interest everywhere after it.
    assert any(offline[t]["liquidations_5m"]["long"]["count"] for t in with_section)
    assert any(offline[t]["liquidations_5m"]["short"]["count"] for t in with_section)
    assert offline[with_section[-1]]["open_interest"] is not None
    for t, report in expected[:: max(1, len(expected) // 20)]:
        assert schema_errors({**report}) == [], t
    burst = await _worker_sections(aredis, redis_url, entries, None, len(expected))
    paced = await _worker_sections(aredis, redis_url, entries, 97, len(expected))
    assert burst == offline
    assert paced == offline
    # report_at at a few times: the same section as the cycle it returns.
    for t in with_section[:: max(1, len(with_section) // 5)]:
        found = report_at(entries, SYMBOL, "BINANCE", t * MS)
        assert found is not None and found[0] == t * MS
        assert found[1].get("derivatives") == offline[t]
