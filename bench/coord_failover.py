"""Coordinator timings against real processes: leader failover and assignment repair.

    uv run python bench/coord_failover.py [--rounds 5]

Runs two ``python -m services.coordinator`` processes on a private redis-server, then
measures (polling Redis every 2 ms):
  * failover after SIGTERM of the leader (it resigns: the standby takes over on its
    next tick) and after SIGKILL (the lease must expire: ~ leader TTL + one tick);
  * assignment repair after a worker's leave() (pub/sub: immediate) and after a worker
    goes silent (node TTL + one tick).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import time
from pathlib import Path

import redis.asyncio as aioredis

from context8.redis_server import RedisServer
from shared import keys
from shared.membership import Membership
from shared.scripts import Scripts

REPO = Path(__file__).resolve().parent.parent


async def spawn(url: str, node_id: str) -> asyncio.subprocess.Process:
    env = os.environ | {
        "C8_REDIS_URL": url,
        "C8_NODE_ID": node_id,
        "C8_METRICS_PORT": "0",
        "C8_LOG_LEVEL": "WARNING",
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.coordinator",
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def until(predicate: object, timeout: float = 15.0) -> float:
    """Seconds until ``await predicate()`` holds (polled every 2 ms)."""
    t0 = time.perf_counter()
    while not await predicate():  # type: ignore[operator]
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.002)
    return time.perf_counter() - t0


def summary(name: str, xs: list[float]) -> None:
    print(
        f"{name}: median {statistics.median(xs) * 1e3:.0f} ms, "
        f"min {min(xs) * 1e3:.0f} ms, max {max(xs) * 1e3:.0f} ms (n={len(xs)})"
    )


async def bench(url: str, rounds: int) -> None:
    r = aioredis.Redis.from_url(url)
    scripts = Scripts(r)
    await r.hset(keys.SYMBOLS, mapping={f"S{i}USDT": "{}" for i in range(200)})
    procs = {n: await spawn(url, n) for n in ("coord-a", "coord-b")}

    async def leader() -> str | None:
        raw = await r.get(keys.COORDINATOR_LEADER)
        return raw.decode() if raw else None

    async def has_leader() -> bool:
        return await leader() is not None

    await until(has_leader)
    results: dict[str, list[float]] = {"SIGTERM": [], "SIGKILL": []}
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for _ in range(rounds):
            # Let a freshly restarted standby finish starting (imports take ~1-2 s).
            await asyncio.sleep(3.0)
            old = await leader()
            assert old is not None
            procs[old].send_signal(sig)

            async def other_leads(old: str = old) -> bool:
                now = await leader()
                return now is not None and now != old

            results[sig.name].append(await until(other_leads))
            await procs[old].wait()
            procs[old] = await spawn(url, old)
    for name, xs in results.items():
        summary(f"leader failover after {name}", xs)

    # Assignment repair with 3 heartbeating workers.
    workers = [Membership(r, scripts, f"calc-{i}") for i in range(3)]
    silent: set[str] = set()

    async def beat() -> None:
        while True:
            for w in workers:
                if w.node_id not in silent:
                    await w.heartbeat()
            await asyncio.sleep(0.1)

    beater = asyncio.create_task(beat())

    async def owners() -> set[str]:
        return {v.decode() for v in (await r.hgetall(keys.ASSIGNMENT)).values()}

    leave_times, ttl_times = [], []
    for i in range(rounds):
        for w in workers:
            await w.heartbeat()
        silent.clear()

        async def all_three() -> bool:
            return await owners() == {"calc-0", "calc-1", "calc-2"}

        await until(all_three)
        await asyncio.sleep(2.5)  # past the default 2 s min hold
        victim = workers[i % 3]
        silent.add(victim.node_id)
        if i % 2 == 0:
            await victim.leave()
        t = await until(lambda v=victim.node_id: _gone(owners, v))
        (leave_times if i % 2 == 0 else ttl_times).append(t)
    beater.cancel()
    summary("assignment repair after leave()", leave_times)
    summary("assignment repair after silence (node TTL 1500 ms)", ttl_times)
    for p in procs.values():
        p.send_signal(signal.SIGTERM)
        await p.wait()
    await r.aclose()


async def _gone(owners: object, node: str) -> bool:
    return node not in await owners()  # type: ignore[operator]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    with RedisServer() as server:
        asyncio.run(bench(server.url, a.rounds))


if __name__ == "__main__":
    main()
