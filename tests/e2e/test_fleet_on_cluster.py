"""The whole fleet on a real Redis Cluster (3 primaries, a replica each, on loopback):
every service connects with ``C8_REDIS_URL=redis+cluster://...``; the fleet publishes
fresh reports for every symbol; kill -9 of a primary mid-run: its replica takes over and
the fleet carries on by itself (fresh reports again, no service died)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.cluster import RedisCluster

from context8.fleet import DEMO_SYMBOLS, Fleet, FleetConfig
from shared import keys
from tests.support.polling import poll
from tests.support.redis_cluster import LocalCluster

pytestmark = pytest.mark.timeout(240)

#: A report is fresh when the publisher wrote it this recently (wall ms).
FRESH_MS = 1500


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    local = LocalCluster(masters=3, replicas=1, node_timeout_ms=1000).start()
    try:
        yield local
    finally:
        local.stop()


def _fresh(client: Any, symbol: str) -> dict[str, Any] | None:
    """The symbol's stored report if the publisher wrote it within ``FRESH_MS``."""
    try:
        row = client.hmget(keys.report(symbol), ["json", "updated_at"])
    except Exception:  # a slot mid-failover: not fresh (yet)
        return None
    if row[0] is None or row[1] is None:
        return None
    if time.time() * 1000 - int(row[1]) > FRESH_MS:
        return None
    report: dict[str, Any] = json.loads(row[0])
    return report


def test_fleet_runs_on_a_cluster_and_rides_out_a_primary_failover(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    url = "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in cluster.primary_ports())
    fleet = Fleet(
        FleetConfig(calc_workers=2, redis_url=url, extra_env={"C8_LOG_LEVEL": "INFO"}),
        workdir=tmp_path / "fleet",
    )
    client = RedisCluster(host="127.0.0.1", port=cluster.primary_ports()[0])
    try:
        fleet.start()
        for symbol in DEMO_SYMBOLS:
            poll(lambda s=symbol: _fresh(client, s), 60, f"a fresh {symbol} report")
        # The fleet's keys really are spread: the symbols' and the candidate partitions'
        # slots live on more than one primary.
        owners = {cluster.primary_of(keys.report(s)) for s in DEMO_SYMBOLS}
        owners |= {cluster.primary_of(keys.candidates(p)) for p in range(8)}
        assert len(owners) > 1

        # kill -9 the primary holding BTCUSDT's keys; its replica takes the slots over.
        victim = keys.report("BTCUSDT")
        killed_at = time.monotonic()
        old, replicas = cluster.kill_primary_of(victim)
        assert replicas, "the primary had a replica"
        promotion = cluster.wait_promoted(victim, old, killed_at)
        # The fleet carries on by itself: fresh reports for every symbol again, newer
        # than the failover, and every service still running.
        after_ms = time.time() * 1000
        for symbol in DEMO_SYMBOLS:

            def fresh_after(s: str = symbol) -> bool:
                report = _fresh(client, s)
                return report is not None and report["updatedAt"] > after_ms

            poll(fresh_after, 60, f"{symbol} fresh again after the failover")
        recovered_s = time.monotonic() - killed_at
        assert fleet.dead_services() == [], [s.name for s in fleet.dead_services()]
        print(
            f"cluster failover: replica promoted after {promotion.seconds:.2f} s, "
            f"every symbol fresh again {recovered_s:.2f} s after the kill"
        )
    finally:
        codes = fleet.stop()
        client.close()
    assert all(code == 0 for code in codes.values()), codes
