"""The calc worker's asset runner on a real redis-server: lease, reading the members'
streams, the watermark, the wall-time stall rule and fenced candidates."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
import structlog
from prometheus_client import CollectorRegistry

from services.calc.asset_runner import AssetRunner
from services.calc.metrics import CalcMetrics
from services.calc.settings import Settings
from services.calc.worker import CalcWorker
from shared import assets, keys
from shared.candidate import decode_candidate
from shared.redis_client import make_redis
from shared.wire import DeltaPayload, SnapPayload, encode
from tests.calc.calc_kit import running
from tests.support.polling import apoll

MS = 1_000_000
UNIT = "asset:BTC"
REGISTRY = {
    "SPOTBTC": {"venue": "BINANCE", "market": "spot", "raw_symbol": "BTCUSDT"},
    "PERPBTC": {"venue": "BINANCE", "market": "usdm", "raw_symbol": "BTCUSDT"},
}


def _runner(redis_url: str, node: str) -> AssetRunner:
    """An asset runner inside a (not running) calc worker of node ``node``."""
    settings = Settings(
        redis_url=redis_url,
        node_id=node,
        calc_stall_grace_ms=400,
        calc_asset_max_skew_ms=2000,
    )
    client = make_redis(settings)
    worker = CalcWorker(
        settings,
        structlog.get_logger().bind(test=True),
        client,
        client,
        CalcMetrics(CollectorRegistry()),
    )
    members = [assets.member(s, json.dumps(v)) for s, v in REGISTRY.items()]
    return AssetRunner(worker, "BTC", [m for m in members if m is not None])


@pytest.fixture
async def runner(redis_url: str) -> AsyncIterator[AssetRunner]:
    r = _runner(redis_url, "calc-a")
    r.start()
    yield r
    await r.stop()
    await r.worker.client.aclose()


async def _append(client: aioredis.Redis, symbol: str, t_ms: int, u: int, bid: int) -> None:
    payload: Any
    if u == 1:
        payload = SnapPayload(1, 1, 3, [(bid, 1000)], [(bid + 10, 1000)])
    else:
        payload = DeltaPayload(u, u, u - 1, 1, 3, [(bid, 1000)], [])
    await client.xadd(keys.stream(symbol), encode(payload, t_ms * MS, 0))  # type: ignore[arg-type]


async def _candidates(client: aioredis.Redis, runner: AssetRunner) -> dict[int, dict[str, Any]]:
    out = {}
    for _, fields in await client.xrange(runner.candidates):
        cand = decode_candidate(fields)
        if cand.symbol == UNIT:
            out[cand.event_ms] = orjson.loads(cand.report_json)
    return out


async def test_watermark_stall_and_fenced_candidates(
    aredis: aioredis.Redis, runner: AssetRunner
) -> None:
    await apoll(lambda: runner.lease is not None, what="the asset's writer lease")
    t0 = 1_723_161_300_000
    await _append(aredis, "SPOTBTC", t0, 1, 600000)
    await _append(aredis, "PERPBTC", t0, 1, 600100)
    for i in range(1, 9):  # both advance to t0 + 2 s
        await _append(aredis, "SPOTBTC", t0 + i * 250, 1 + i, 600000 + i % 5)
        await _append(aredis, "PERPBTC", t0 + i * 250, 1 + i, 600100 + i % 5)
    got = await apoll(
        lambda: _until(aredis, runner, t0 + 1750), what="asset candidates through t0 + 1.75 s"
    )
    assert sorted(got) == list(range(t0, t0 + 2000, 250))
    lease = runner.lease
    assert lease is not None
    assert all(
        r["writer"] == {"nodeId": "calc-a", "writerToken": lease.token} for r in got.values()
    )
    assert all(r["stalled"] == [] and r["status"] == "ok" for r in got.values())
    # PERP goes silent; SPOT runs 4 s ahead: after the stall grace (wall time) PERP is
    # stalled and the reports go on without it.
    for i in range(9, 25):
        await _append(aredis, "SPOTBTC", t0 + i * 250, 1 + i, 600000 + i % 5)
    got = await apoll(
        lambda: _until(aredis, runner, t0 + 5750), timeout=10, what="reports past the stall"
    )
    late = got[t0 + 5750]
    assert late["stalled"] == ["PERPBTC"] and late["status"] == "partial"
    perp = next(m for m in late["markets"] if m["symbol"] == "PERPBTC")
    assert perp["status"] == "stalled" and perp["data_age_ms"] == 5750 - 2000
    # Reports before the stall were never revised: one candidate per boundary.
    assert got[t0 + 1750]["stalled"] == []
    # PERP comes back: waited for again.
    await _append(aredis, "PERPBTC", t0 + 6100, 10, 600102)
    await _append(aredis, "SPOTBTC", t0 + 6600, 26, 600026)
    await _append(aredis, "PERPBTC", t0 + 6600, 11, 600103)
    got = await apoll(lambda: _until(aredis, runner, t0 + 6500), timeout=10, what="recovery")
    assert got[t0 + 6500]["stalled"] == [] and got[t0 + 6500]["status"] == "ok"
    stored = await aredis.get(keys.unit_key("token", UNIT))
    assert int(stored) == lease.token


async def _until(
    client: aioredis.Redis, runner: AssetRunner, t_ms: int
) -> dict[int, dict[str, Any]] | None:
    got = await _candidates(client, runner)
    return got if t_ms in got else None


async def test_a_takeover_gets_a_newer_token_and_skips_what_was_published(
    aredis: aioredis.Redis, redis_url: str, runner: AssetRunner
) -> None:
    await apoll(lambda: runner.lease is not None, what="the first writer's lease")
    first = runner.lease
    assert first is not None
    t0 = 1_723_161_300_000
    for i in range(9):
        for sym, base in (("SPOTBTC", 600000), ("PERPBTC", 600100)):
            await _append(aredis, sym, t0 + i * 250, 1 + i, base + i % 5)
    await apoll(lambda: _until(aredis, runner, t0 + 1750), what="the first writer's reports")
    # What the publisher would have stored from them.
    await aredis.hset(keys.asset_report("BTC"), mapping={"event_ms": t0 + 1750})
    second = _runner(redis_url, "calc-b")
    second.start()
    try:
        # It computes the same reports but may not send them: the lease is taken.
        await apoll(lambda: second.cycles_suppressed > 0, what="the standby's suppressed reports")
        assert second.lease is None
        await runner.stop()
        await apoll(lambda: second.lease is not None, what="the takeover")
        taken = second.lease
        assert taken is not None and taken.token > first.token
        for i in range(9, 13):
            for sym, base in (("SPOTBTC", 600000), ("PERPBTC", 600100)):
                await _append(aredis, sym, t0 + i * 250, 1 + i, base + i % 5)
        got = await apoll(lambda: _until(aredis, runner, t0 + 2750), what="the new writer's")
        by_b = {t for t, r in got.items() if r["writer"]["nodeId"] == "calc-b"}
        # Only boundaries after the published one, all under the new token.
        assert by_b == set(range(t0 + 2000, t0 + 3000, 250))
        assert {r["writer"]["writerToken"] for t, r in got.items() if t in by_b} == {taken.token}
        assert int(await aredis.get(keys.unit_key("token", UNIT))) == taken.token
    finally:
        await second.stop()
        await second.worker.client.aclose()


async def test_a_market_registered_later_joins_the_running_asset(
    aredis: aioredis.Redis, redis_url: str
) -> None:
    """The asset's runner follows the registry: a third market registered after the
    asset was assigned joins it (the runner restarts with it) within a poll interval."""
    await aredis.hset(keys.SYMBOLS, mapping={s: json.dumps(v) for s, v in REGISTRY.items()})
    await aredis.hset(keys.ASSIGNMENT, UNIT, "calc-a")
    settings = Settings(redis_url=redis_url, node_id="calc-a", calc_assignment_poll_ms=200)
    async with running(settings) as worker:

        def members() -> list[str] | None:
            runner = worker.asset_runners.get(UNIT)
            return None if runner is None else runner.members

        await apoll(lambda: members() == ["PERPBTC", "SPOTBTC"], what="the asset's two markets")
        coinm = {"venue": "BINANCE", "market": "coinm", "raw_symbol": "BTCUSD_PERP"}
        await aredis.hset(keys.SYMBOLS, "COINMBTC", json.dumps(coinm))
        await apoll(
            lambda: members() == ["COINMBTC", "PERPBTC", "SPOTBTC"], what="the third market"
        )
        await aredis.hdel(keys.SYMBOLS, "COINMBTC", "PERPBTC")  # one market left: no asset
        await apoll(lambda: members() is None, what="the asset runner stopped")
