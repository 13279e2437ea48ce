"""``python -m services.coordinator`` as a real process: leads, assigns, exits 0 on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import redis.asyncio as aioredis

from shared import keys
from tests.coordinator.helpers import Worker, assignment, leader, wait_for

REPO = Path(__file__).resolve().parents[2]


async def test_process_leads_assigns_and_exits_0_on_sigterm(
    aredis: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    await aredis.hset(keys.SYMBOLS, "BTCUSDT", '{"venue":"BINANCE"}')
    worker = await Worker(aredis, "calc-0").start()
    env = os.environ | {
        "C8_REDIS_URL": redis_url,
        "C8_NODE_ID": "coord-proc",
        "C8_METRICS_PORT": "0",
        "C8_COORDINATOR_SYMBOLS": "ETHUSDT",
    }
    log_path = tmp_path / "coordinator.log"
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.coordinator",
            cwd=REPO,
            env=env,
            stdout=log_file,
            stderr=log_file,
        )
    try:

        async def assigned() -> bool:
            return await assignment(aredis) == {"BTCUSDT": "calc-0", "ETHUSDT": "calc-0"}

        await wait_for(assigned, timeout=15.0, what="the process assigned both symbols")
        assert await leader(aredis) == "coord-proc"
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 5)
        assert code == 0
        assert time.monotonic() - sent < 5
        assert await leader(aredis) is None  # leadership released at once, not by TTL
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await worker.silence()
    assert "coordinator_stopped" in log_path.read_text()
