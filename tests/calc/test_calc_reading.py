"""The worker's stream reading: one XREAD for every symbol, sliced work, joins, stream lag.

Against a real Redis; no timing assertions (speed lives in bench/capacity.py): these
check who reads what, that work is cut into slices other tasks run between, and that
what a batched read delivers is exactly what a replay computes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import orjson
import redis
import redis.asyncio as aioredis

from services.calc.analytics import replay
from services.calc.settings import Settings
from services.calc.worker import CalcWorker, SymbolRunner
from shared import keys
from shared.candidate import decode_candidate
from shared.wire import Entry, encode
from tests.calc.calc_kit import new_worker, running, session_entries, wait_for
from tests.support.candidates import stream_of

SYMBOLS = ("AAAUSDT", "BBBUSDT", "CCCUSDT", "DDDUSDT", "EEEUSDT", "FFFUSDT")
MS = 1_000_000


async def _assign(r: aioredis.Redis, owners: dict[str, str]) -> None:
    await r.hset(keys.ASSIGNMENT, mapping=owners)  # type: ignore[arg-type]
    version = await r.incr(keys.ASSIGNMENT_VERSION)
    await r.publish(keys.ASSIGNMENT_CHANNEL, str(version))


def _fields(e: Entry) -> dict[bytes, bytes]:
    return encode(e.payload, e.event_ns, e.recv_ns)


def _applied(worker: CalcWorker, symbol: str, count: int) -> bool:
    """``symbol`` is assigned to ``worker``, which has applied ``count`` of its entries."""
    runner = worker.runners.get(symbol)
    return runner is not None and runner.core.counters.entries == count


def _pauses(worker: CalcWorker) -> float:
    """The worker's slice pauses so far (``context8_calc_slice_pauses_total``)."""
    return float(worker.m.slice_pauses._value.get())


async def _candidates(r: aioredis.Redis, symbol: str) -> list[Any]:
    return [
        c
        for c in (decode_candidate(f) for _, f in await r.xrange(stream_of(symbol)))
        if c.symbol == symbol
    ]


async def test_one_xread_serves_every_symbol_and_gives_the_replay_reports(
    aredis: aioredis.Redis, redis_url: str
) -> None:
    entries = session_entries("usdm-btc")[:1500]
    settings = Settings(redis_url=redis_url, node_id="calc-a", calc_stall_grace_ms=600_000)
    xreads_before = await _xread_calls(aredis)
    async with running(settings) as worker:
        await _assign(aredis, dict.fromkeys(SYMBOLS, "calc-a"))
        await wait_for(lambda: len(worker.runners) == len(SYMBOLS), timeout=10, what="runners")
        runners = list(worker.runners.values())
        # Leases held and every stream followed by XREAD (empty streams: caught up at once).
        await wait_for(
            lambda: all(r.lease is not None and not r.catching_up for r in runners),
            timeout=10,
            what="leases and streaming",
        )
        assert len(worker.readers) == 1, "one reader for every symbol on one Redis"
        (reader,) = worker.readers.values()
        # Every symbol's entries land in one transaction: the next read returns them all.
        # Written from a thread, so the writer's CPU does not stall the worker's loop.
        await asyncio.to_thread(_write_in_transactions, redis_url, entries, 250)
        await wait_for(
            lambda: all(r.core.counters.entries == len(entries) for r in runners),
            timeout=30,
            what="every entry applied",
        )
        assert reader.widest == len(SYMBOLS), "one XREAD reply carried every stream"
        xreads = await _xread_calls(aredis) - xreads_before
        # The worker's only XREAD caller (a read cut short by a join may never reach Redis).
        assert 0 < xreads <= reader.reads
        for symbol in SYMBOLS:
            token = int(await aredis.get(keys.token(symbol)))
            # In a thread: seconds of CPU that must not stall the worker's loop (its
            # lease renewals) in this same process.
            expected = await asyncio.to_thread(
                lambda s=symbol, t=token: list(
                    replay(entries, s, "BINANCE", node_id="calc-a", token=t)
                )
            )
            got = await _wait_candidates(aredis, symbol, len(expected))
            assert [c.event_ms for c in got] == [t // MS for t, _ in expected]
            assert [orjson.loads(c.report_json) for c in got] == [r for _, r in expected]


def _write_in_transactions(url: str, entries: list[Entry], step: int) -> None:
    with redis.Redis.from_url(url) as r:
        for start in range(0, len(entries), step):
            pipe = r.pipeline(transaction=True)
            for symbol in SYMBOLS:
                for e in entries[start : start + step]:
                    pipe.xadd(keys.stream(symbol), _fields(e))  # type: ignore[arg-type]
            pipe.execute()


async def _xread_calls(r: aioredis.Redis) -> int:
    info = await r.info("commandstats")
    return int(info.get("cmdstat_xread", {}).get("calls", 0))


async def _wait_candidates(r: aioredis.Redis, symbol: str, n: int) -> list[Any]:
    async def at_least() -> list[Any] | None:
        got = await _candidates(r, symbol)
        return got if len(got) >= n else None

    return await wait_for(at_least, timeout=20, what=f"{symbol} candidates")  # type: ignore[no-any-return]


async def test_a_join_interrupts_a_blocking_read(aredis: aioredis.Redis, redis_url: str) -> None:
    """A symbol assigned while the reader blocks on quiet streams is read at once, not
    after the block timeout (an hour here)."""
    entries = session_entries("usdm-eth")[:300]
    settings = Settings(
        redis_url=redis_url,
        node_id="calc-a",
        calc_xread_block_ms=3_600_000,
        calc_stall_grace_ms=600_000,
    )
    for e in entries:
        await aredis.xadd(keys.stream("BBBUSDT"), _fields(e))  # type: ignore[arg-type]
    async with running(settings) as worker:
        await _assign(aredis, {"AAAUSDT": "calc-a"})
        await wait_for(
            lambda: "AAAUSDT" in worker.runners and not worker.runners["AAAUSDT"].catching_up,
            timeout=10,
            what="the quiet symbol streaming",
        )
        reader = next(iter(worker.readers.values()))
        await wait_for(lambda: reader.reads >= 1, timeout=10, what="a blocking read")
        await _assign(aredis, {"BBBUSDT": "calc-a"})
        await wait_for(
            lambda: _applied(worker, "BBBUSDT", len(entries)),
            timeout=20,
            what="the joining symbol's backlog applied",
        )
        # New entries of the joined symbol arrive through the shared XREAD as well.
        more = session_entries("usdm-eth")[300:400]
        for e in more:
            await aredis.xadd(keys.stream("BBBUSDT"), _fields(e))  # type: ignore[arg-type]
        await wait_for(
            lambda: worker.runners["BBBUSDT"].core.counters.entries == len(entries) + len(more),
            timeout=20,
            what="the joined symbol streaming",
        )
        assert len(worker.readers) == 1


async def test_work_is_cut_into_slices_that_let_other_tasks_run(redis_url: str) -> None:
    """A burst far longer than a slice: the loop is handed back between slices, so a
    heartbeat (here: a probe task) runs while the burst is applied; nothing is lost."""
    entries = session_entries("usdm-btc")[:3000]
    batch = [(f"{i + 1}-0".encode(), _fields(e)) for i, e in enumerate(entries)]

    async def burst(slice_ms: int) -> tuple[int, int, SymbolRunner]:
        settings = Settings(redis_url=redis_url, node_id="calc-a", calc_slice_ms=slice_ms)
        worker = new_worker(settings)
        runner = SymbolRunner(worker, "BTCUSDT", "BINANCE")
        worker.runners["BTCUSDT"] = runner
        turns = 0

        async def probe() -> None:
            nonlocal turns
            while True:
                turns += 1
                await asyncio.sleep(0)

        spin = asyncio.create_task(probe())
        await asyncio.sleep(0)
        before, pauses_before = turns, _pauses(worker)
        await worker.apply([(runner, batch)], [runner])
        during, pauses = turns - before, _pauses(worker) - pauses_before
        spin.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await spin
        await worker.client.aclose()
        await worker.blocking.aclose()
        return during, int(pauses), runner

    during, pauses, runner = await burst(slice_ms=1)
    assert runner.core.counters.entries == len(entries)
    assert pauses > 0 and during >= pauses, (during, pauses)
    # No lease: every cycle computed was counted as suppressed, none emitted.
    assert runner.cycles_suppressed > 0 and runner.candidates_emitted == 0
    # One slice longer than the whole burst: applied in one go, the probe never ran.
    during, pauses, runner = await burst(slice_ms=60_000)
    assert runner.core.counters.entries == len(entries)
    assert (during, pauses) == (0, 0)


async def test_stream_lag_is_the_age_of_the_newest_entry_read(
    aredis: aioredis.Redis, redis_url: str
) -> None:
    """``context8_calc_stream_lag_seconds``: wall time since the newest entry read was
    appended, by its id (Redis's clock), whatever the entries' own receive times."""
    entries = session_entries("usdm-btc")[:50]  # recorded in 2024: receive times years old
    now_ms = time.time_ns() // MS
    for i, e in enumerate(entries):
        await aredis.xadd(  # type: ignore[misc]
            keys.stream("BTCUSDT"), _fields(e), id=f"{now_ms - 30_000}-{i + 1}"
        )
    await aredis.hset(keys.SYMBOLS, "BTCUSDT", json.dumps({"venue": "BINANCE"}))
    settings = Settings(redis_url=redis_url, node_id="calc-a", calc_stall_grace_ms=600_000)
    async with running(settings) as worker:
        await _assign(aredis, {"BTCUSDT": "calc-a"})
        await wait_for(
            lambda: _applied(worker, "BTCUSDT", len(entries)),
            timeout=10,
            what="entries applied",
        )
        lag = worker.m.stream_lag.labels(symbol="BTCUSDT")._value.get()
    # Appended 30 s before the read (by id); not the ~2 years since they were recorded.
    assert 30 <= lag < 300, lag


async def test_a_busy_worker_keeps_beating(aredis: aioredis.Redis, redis_url: str) -> None:
    """Liveness does not depend on load: while a large backlog of many symbols is caught
    up (every slice of work yields the loop), the membership heartbeat keeps going."""
    entries = session_entries("usdm-btc")[:3000]
    pipe = aredis.pipeline(transaction=False)
    for symbol in SYMBOLS:
        for e in entries:
            pipe.xadd(keys.stream(symbol), _fields(e))  # type: ignore[arg-type]
    await pipe.execute()
    settings = Settings(
        redis_url=redis_url,
        node_id="calc-a",
        calc_heartbeat_ms=20,
        calc_heartbeat_jitter_ms=0,
        calc_stall_grace_ms=600_000,
    )
    async with running(settings) as worker:
        await wait_for(
            lambda: aredis.zscore(keys.NODES, "calc-a"), timeout=10, what="the first heartbeat"
        )
        beats, pauses = worker.m.heartbeats._value.get(), _pauses(worker)
        await _assign(aredis, dict.fromkeys(SYMBOLS, "calc-a"))
        await wait_for(lambda: len(worker.runners) == len(SYMBOLS), timeout=10, what="runners")
        runners = list(worker.runners.values())
        beats_during: list[float] = []

        def caught_up() -> bool:
            done = all(r.core.counters.entries == len(entries) for r in runners)
            if not done:
                beats_during.append(worker.m.heartbeats._value.get() - beats)
            return done

        await wait_for(caught_up, timeout=60, interval=0.005, what="the backlog applied")
        assert _pauses(worker) > pauses
        # Heartbeats went out while the backlog (18,000 entries) was being applied.
        assert beats_during and beats_during[-1] >= 2, beats_during[-5:]
