"""Two publishers share the candidate partitions; kill -9 of one: the other takes its
partitions over (with their pending entries) within about the partition lease TTL, and
no report is written twice or lost (each symbol's audit stream has strictly increasing
event times, and the reports keep flowing)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import redis

from context8.fleet import DEMO_SYMBOLS, Fleet, FleetConfig
from shared import keys
from tests.support.candidates import partition_of
from tests.support.polling import poll

pytestmark = pytest.mark.timeout(180)

TTL_MS = 1000


def _last_write_ms(client: redis.Redis, symbol: str) -> int:
    tail = client.xrevrange(keys.audit(symbol), count=1)
    return int(tail[0][0].split(b"-")[0]) if tail else 0


def test_a_killed_publishers_partitions_are_taken_over(tmp_path: Path) -> None:
    env = {"C8_PUBLISHER_PARTITION_TTL_MS": str(TTL_MS)}
    fleet = Fleet(FleetConfig(calc_workers=1, extra_env=env), workdir=tmp_path / "fleet")
    try:
        fleet.start()
        second = fleet.start_service("publisher", instance="publisher-2")
        client = redis.Redis.from_url(fleet.redis_url)
        owners = {s: keys.candidates_owner(partition_of(s)) for s in DEMO_SYMBOLS}
        # Both publishers hold partitions (an even split of 8), and reports flow.
        poll(lambda: len({client.get(k) for k in map(keys.candidates_owner, range(8))}) == 2, 30)
        for s in DEMO_SYMBOLS:
            poll(lambda s=s: _last_write_ms(client, s) > 0, 60, f"{s} published")
        # Kill the publisher that reads BTCUSDT's partition.
        holder = client.get(owners["BTCUSDT"])
        victim = (
            second if holder == second.env["C8_NODE_ID"].encode() else fleet.service("publisher")
        )
        victim.signal(signal.SIGKILL)
        killed = time.monotonic()
        assert victim.wait(5) == -signal.SIGKILL  # gone: every later write is the survivor's
        seconds, micros = client.time()
        dead_ms = seconds * 1000 + micros // 1000
        poll(lambda: _last_write_ms(client, "BTCUSDT") > dead_ms, 15, "BTCUSDT written again")
        took = time.monotonic() - killed
        assert took < TTL_MS / 1000 + 1.5, took
        survivor = fleet.service("publisher") if victim is second else second
        poll(
            lambda: all(
                client.get(keys.candidates_owner(p)) == survivor.env["C8_NODE_ID"].encode()
                for p in range(8)
            ),
            10,
            "every partition on the survivor",
        )
        # Exactly once: every symbol's accepted writes have strictly increasing event times.
        for s in DEMO_SYMBOLS:
            events = [int(f[b"event_ms"]) for _, f in client.xrange(keys.audit(s))]
            assert events == sorted(set(events)), s
        print(f"publisher kill -9 -> BTCUSDT written again by the survivor: {took:.2f} s")
        client.close()
    finally:
        fleet.stop()
        fleet.cleanup()
