"""``python -m services.publisher`` as a real process: publishes, exits 0 on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import redis.asyncio as aioredis

from shared import keys
from shared.lease import LeaseClient
from shared.scripts import Scripts
from tests.publisher.helpers import add_candidate, pending_count, wait_for

REPO = Path(__file__).resolve().parents[2]


async def test_process_publishes_and_exits_0_on_sigterm(
    aredis: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    lease = await LeaseClient(Scripts(aredis), "calc-1", 60_000, 100).acquire("BTCUSDT")
    assert lease is not None
    env = os.environ | {
        "C8_REDIS_URL": redis_url,
        "C8_NODE_ID": "pub-proc",
        "C8_METRICS_PORT": "0",
    }
    log_path = tmp_path / "publisher.log"
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.publisher",
            cwd=REPO,
            env=env,
            stdout=log_file,
            stderr=log_file,
        )
    try:
        await add_candidate(aredis, "BTCUSDT", lease.token, "calc-1", 1_000)

        async def written() -> bool:
            return await aredis.hget(keys.report("BTCUSDT"), "event_ms") == b"1000"

        await wait_for(written, timeout=15.0, what="the process published the candidate")
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 5)
        assert code == 0
        assert time.monotonic() - sent < 5
        assert await pending_count(aredis) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert "publisher_stopped" in log_path.read_text()
