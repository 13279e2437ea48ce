"""The calc worker against a real Redis: assignment, leases, candidates, stall, takeover."""

from __future__ import annotations

import json
import time
from typing import Any

import orjson
import redis.asyncio as aioredis

from services.calc.analytics import replay
from services.calc.settings import Settings
from shared import keys
from shared.candidate import decode_candidate
from shared.report import ns_from_iso_utc, schema_errors
from shared.wire import Entry, SnapPayload, TradePayload, encode
from tests.calc.calc_kit import running, session_entries, wait_for
from tests.support.candidates import stream_of

SYMBOL = "BTCUSDT"
MS = 1_000_000


#: A worker stops within this (SIGTERM path: lease releases, leave).
STOP_WITHIN_S = 5.0


def _settings(redis_url: str, node: str, **extra: Any) -> Settings:
    return Settings(redis_url=redis_url, node_id=node, **extra)


async def _write(r: aioredis.Redis, entries: list[Entry], symbol: str = SYMBOL) -> list[bytes]:
    pipe = r.pipeline(transaction=False)
    for e in entries:
        pipe.xadd(keys.stream(symbol), encode(e.payload, e.event_ns, e.recv_ns))  # type: ignore[arg-type]
    return list(await pipe.execute())


async def _assign(r: aioredis.Redis, symbol: str, node: str | None) -> None:
    if node is None:
        await r.hdel(keys.ASSIGNMENT, symbol)
    else:
        await r.hset(keys.ASSIGNMENT, symbol, node)
    version = await r.incr(keys.ASSIGNMENT_VERSION)
    await r.publish(keys.ASSIGNMENT_CHANNEL, str(version))


async def _candidates(r: aioredis.Redis) -> list[Any]:
    return [decode_candidate(fields) for _, fields in await r.xrange(stream_of(SYMBOL))]


async def test_worker_emits_fenced_candidates_like_replay_and_stops_without_lease(
    aredis: aioredis.Redis, redis_url: str
) -> None:
    entries = list(session_entries("usdm-btc")[:2500])
    await aredis.hset(keys.SYMBOLS, SYMBOL, json.dumps({"venue": "binance", "market": "usdm"}))
    expected = list(replay(entries, SYMBOL, "BINANCE", node_id="calc-a", token=1))
    assert len(expected) > 50
    # A long stall grace: this test wants exactly the event-driven cycles.
    async with running(
        _settings(redis_url, "calc-a", calc_stall_grace_ms=600_000), STOP_WITHIN_S
    ) as worker:
        await _assign(aredis, SYMBOL, "calc-a")
        # Lease first, data second: every cycle is then emitted (none suppressed). The
        # runner's own view of the lease, not the key: it is set one round trip later.
        await wait_for(lambda: SYMBOL in worker.runners, timeout=5, what="runner")
        await wait_for(lambda: worker.runners[SYMBOL].lease is not None, timeout=5, what="lease")
        await _write(aredis, entries)
        got = await wait_for(
            lambda: _until(aredis, len(expected)), timeout=20, what="all candidates"
        )
        token = int(await aredis.get(keys.token(SYMBOL)))
        assert await aredis.get(keys.lease(SYMBOL)) == b"calc-a"
        assert await aredis.zscore(keys.NODES, "calc-a") is not None
        assert {(c.symbol, c.token, c.node_id) for c in got} == {(SYMBOL, token, "calc-a")}
        reports = [orjson.loads(c.report_json) for c in got]
        assert [c.event_ms for c in got] == [t // MS for t, _ in expected]
        for report, (t, exp) in zip(reports, expected, strict=True):
            assert report == {**exp, "writer": {"nodeId": "calc-a", "writerToken": token}}
            assert ns_from_iso_utc(report["generated_at"]) == t
        for report in reports[::25]:
            assert schema_errors(report) == []

        # Another node takes the lease over: this worker must stop emitting.
        await aredis.set(keys.lease(SYMBOL), "calc-b", px=60_000)
        await aredis.incr(keys.token(SYMBOL))
        runner = worker.runners[SYMBOL]
        await wait_for(lambda: runner.lease is None, timeout=5, what="lease loss")
        before = await aredis.xlen(stream_of(SYMBOL))
        more = list(session_entries("usdm-btc")[2500:3000])
        await _write(aredis, more)
        await wait_for(
            lambda: (
                runner.core.last_event_ns == max(e.event_ns for e in entries + more)
                and runner.cycles_suppressed > 0
            ),
            timeout=10,
            what="suppressed cycles",
        )
        assert await aredis.xlen(stream_of(SYMBOL)) == before
        assert await aredis.get(keys.lease(SYMBOL)) == b"calc-b"
    # Shut down: left the membership; did not touch the other node's lease.
    assert await aredis.zscore(keys.NODES, "calc-a") is None
    assert await aredis.get(keys.lease(SYMBOL)) == b"calc-b"


async def _until(r: aioredis.Redis, n: int) -> list[Any] | None:
    got = await _candidates(r)
    return got if len(got) >= n else None


async def test_unassigned_symbol_releases_its_lease_at_once(
    aredis: aioredis.Redis, redis_url: str
) -> None:
    await _write(aredis, list(session_entries("usdm-btc")[:200]))
    async with running(
        _settings(redis_url, "calc-a", calc_lease_ttl_ms=30_000), STOP_WITHIN_S
    ) as worker:
        await _assign(aredis, SYMBOL, "calc-a")
        await wait_for(lambda: aredis.get(keys.lease(SYMBOL)), timeout=5, what="lease")
        started = time.monotonic()
        await _assign(aredis, SYMBOL, None)
        await wait_for(lambda: _gone(aredis, keys.lease(SYMBOL)), timeout=5, what="lease release")
        # Far sooner than the 30 s TTL: released, not expired.
        assert time.monotonic() - started < 5
        assert SYMBOL not in worker.runners


async def _gone(r: aioredis.Redis, key: str) -> bool:
    return not await r.exists(key)


async def test_malformed_entries_are_counted_and_skipped(
    aredis: aioredis.Redis, redis_url: str
) -> None:
    entries = list(session_entries("usdm-btc")[:400])
    async with running(
        _settings(redis_url, "calc-a", calc_stall_grace_ms=600_000), STOP_WITHIN_S
    ) as worker:
        await _assign(aredis, SYMBOL, "calc-a")
        # The entries arrive once the worker holds the lease: cycles computed before it
        # are (rightly) not emitted, and the lease and the reader start concurrently.
        await wait_for(lambda: SYMBOL in worker.runners, timeout=5, what="runner")
        runner = worker.runners[SYMBOL]
        await wait_for(lambda: runner.lease is not None, timeout=5, what="lease")
        await _write(aredis, entries[:200])
        await aredis.xadd(
            keys.stream(SYMBOL), {"v": "1", "k": "delta", "et": "1", "rt": "1", "p": b"\xc1"}
        )
        await aredis.xadd(keys.stream(SYMBOL), {"junk": "yes"})
        await aredis.xadd(
            keys.stream(SYMBOL), {"v": "9", "k": "trade", "et": "x", "rt": "1", "p": b""}
        )
        await _write(aredis, entries[200:])
        await wait_for(
            lambda: runner.core.counters.entries == len(entries), timeout=10, what="all entries"
        )
        assert runner.decode_errors == 3
        expected = list(replay(entries, SYMBOL, "BINANCE"))
        got = await wait_for(lambda: _until(aredis, len(expected)), timeout=10, what="candidates")
        assert [c.event_ms for c in got] == [t // MS for t, _ in expected]


async def test_takeover_starts_at_the_checkpoint(aredis: aioredis.Redis, redis_url: str) -> None:
    entries = list(session_entries("usdm-eth")[:1200])
    await _write(aredis, entries[:700], "ETHUSDT")
    # A checkpoint snapshot re-emitted by ingest (its book as of that point).
    last = entries[699]
    snap = SnapPayload(
        u=0, pp=2, sp=3, b=[(300_000, 1_000)], a=[(300_100, 2_000)], src="checkpoint"
    )
    (ckpt_id,) = await _write(aredis, [Entry("snap", last.event_ns, last.recv_ns, snap)], "ETHUSDT")
    await aredis.set(keys.checkpoint("ETHUSDT"), ckpt_id)
    trades = [e for e in entries[700:] if isinstance(e.payload, TradePayload)]
    await _write(aredis, trades, "ETHUSDT")
    async with running(
        _settings(redis_url, "calc-a", calc_stall_grace_ms=600_000), STOP_WITHIN_S
    ) as worker:
        await _assign(aredis, "ETHUSDT", "calc-a")
        await wait_for(lambda: "ETHUSDT" in worker.runners, timeout=5, what="runner")
        runner = worker.runners["ETHUSDT"]
        await wait_for(
            lambda: runner.core.counters.entries == 1 + len(trades), timeout=10, what="entries"
        )
        # Nothing before the checkpoint was read: the book is the checkpoint's.
        assert runner.core.book.best_bid() == (300_000, 1_000)
        assert runner.core.trades.trades_seen == len(trades)
        assert runner.core.venue == "BINANCE"  # no registry entry: the default venue


async def test_stalled_feed_keeps_reporting_with_growing_age(
    aredis: aioredis.Redis, redis_url: str
) -> None:
    now_ms = time.time_ns() // MS
    snap = SnapPayload(u=5, pp=1, sp=3, b=[(1000, 5_000)], a=[(1001, 2_000)])
    trade = TradePayload(id="1", px=1000, sz=3, pp=1, sp=3, side="S")
    await _write(
        aredis,
        [
            Entry("snap", now_ms * MS, now_ms * MS, snap),
            Entry("trade", now_ms * MS, now_ms * MS, trade),
        ],
    )
    settings = _settings(redis_url, "calc-a", calc_stall_grace_ms=200)
    async with running(settings, STOP_WITHIN_S):
        await _assign(aredis, SYMBOL, "calc-a")
        got = await wait_for(lambda: _aged(aredis, 1_200), timeout=10, what="aged reports")
        wall_ms = time.time_ns() // MS
    reports = [orjson.loads(c.report_json) for c in got]
    ages = [r["data_age_ms"] for r in reports]
    assert ages == sorted(ages) and ages[-1] >= 1_200
    # Never a boundary past the estimate (last event + wall time since - grace).
    assert ns_from_iso_utc(reports[-1]["generated_at"]) // MS <= wall_ms - 200
    assert all(
        r["ingestion"]["last_update"] == reports[0]["ingestion"]["last_update"] for r in reports
    )


async def _aged(r: aioredis.Redis, age_ms: int) -> list[Any] | None:
    got = await _candidates(r)
    if got and orjson.loads(got[-1].report_json)["data_age_ms"] >= age_ms:
        return got
    return None


def test_symbol_registry_gives_venue_and_size_unit() -> None:
    from services.calc.worker import parse_symbol_info

    assert parse_symbol_info(b'{"venue": "bybit", "size_unit": "base"}', "BINANCE") == (
        "BYBIT",
        "base",
    )
    assert parse_symbol_info(b'{"venue":"BINANCE","size_unit":"contracts"}', "BYBIT") == (
        "BINANCE",
        "contracts",
    )
    assert parse_symbol_info(None, "BINANCE") == ("BINANCE", "base")
    assert parse_symbol_info(b"not json", "BYBIT") == ("BYBIT", "base")
    assert parse_symbol_info(b'{"venue": "okx"}', "BINANCE") == ("BINANCE", "base")
