"""The coordinator assigns one ``asset:<BASE>`` unit per base with >= 2 registered markets."""

from __future__ import annotations

import json

import redis.asyncio as aioredis

from shared import keys
from tests.coordinator.helpers import RunningCoordinator, Worker, assignment, wait_for
from tests.support.asset_reports import BTC_MARKETS


async def test_asset_units_are_assigned_like_symbols(
    aredis: aioredis.Redis, redis_url: str
) -> None:
    await aredis.hset(
        keys.SYMBOLS,
        mapping={
            "BTCUSDT": '{"venue":"BINANCE","market":"usdm","raw_symbol":"BTCUSDT"}',
            "ETHUSDT": '{"venue":"BINANCE","market":"usdm","raw_symbol":"ETHUSDT"}',
        },
    )
    workers = [await Worker(aredis, f"calc-{i}").start() for i in range(2)]
    coord = RunningCoordinator(redis_url, "coord-a").start()
    try:
        live = {w.node_id for w in workers}

        async def only_symbols() -> bool:
            return set(await assignment(aredis)) == {"BTCUSDT", "ETHUSDT"}

        await wait_for(only_symbols, what="symbols assigned, no asset with one market")
        # Two more BTC markets: the BTC asset appears; ETH (one market) still has none.
        await aredis.hset(keys.SYMBOLS, mapping={s: json.dumps(v) for s, v in BTC_MARKETS.items()})
        wanted = {"BTCUSDT", "ETHUSDT", "BTCUSDTSPOT", "BTCUSDPERP", "asset:BTC"}

        async def with_asset() -> bool:
            a = await assignment(aredis)
            return set(a) == wanted and set(a.values()) <= live

        await wait_for(with_asset, what="asset:BTC assigned")
        # The unit is gone once its markets are (fewer than two registered).
        await aredis.hdel(keys.SYMBOLS, "BTCUSDTSPOT", "BTCUSDPERP")
        await wait_for(only_symbols, what="asset:BTC unassigned")
    finally:
        await coord.stop()
        for w in workers:
            await w.silence()
