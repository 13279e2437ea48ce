"""``python -m services.calc`` as a process: follows the assignment, exits 0 on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

import redis.asyncio as aioredis

from shared import keys
from tests.calc.calc_kit import REPO, wait_for


async def test_process_exits_zero_on_sigterm_and_releases_leases(
    aredis: aioredis.Redis, redis_url: str
) -> None:
    node = "calc-proc"
    env = {
        **os.environ,
        "C8_REDIS_URL": redis_url,
        "C8_NODE_ID": node,
        "C8_LOG_LEVEL": "WARNING",
        "C8_CALC_LEASE_TTL_MS": "30000",
        "C8_CALC_LEASE_MARGIN_MS": "500",
    }
    await aredis.hset(
        keys.ASSIGNMENT, mapping={"BTCUSDT": node, "ETHUSDT": node, "XRPUSDT": "other"}
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.calc",
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        for symbol in ("BTCUSDT", "ETHUSDT"):
            await wait_for(lambda s=symbol: _held(aredis, s, node), timeout=20, what="leases")
        assert await aredis.zscore(keys.NODES, node) is not None
        assert not await aredis.exists(keys.lease("XRPUSDT"))
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(proc.wait(), 5)
        assert rc == 0, (await proc.stderr.read()).decode() if proc.stderr else ""
        assert time.monotonic() - started < 5
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    # Leases released (the TTL was 30 s, so they did not just expire) and membership left.
    assert not await aredis.exists(keys.lease("BTCUSDT"))
    assert not await aredis.exists(keys.lease("ETHUSDT"))
    assert await aredis.zscore(keys.NODES, node) is None


async def _held(r: aioredis.Redis, symbol: str, node: str) -> bool:
    return await r.get(keys.lease(symbol)) == node.encode()
