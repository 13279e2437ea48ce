"""The whole fleet on a real Redis Cluster (3 primaries, a replica each, on loopback):
every service connects with ``C8_REDIS_URL=redis+cluster://...``; the fleet publishes
fresh reports for every symbol; kill -9 of a primary mid-run: its replica takes over and
the fleet carries on by itself (fresh reports again, no service died). Then kill -9 of the
primary serving the fleet-wide keys and pub/sub channels: no symbol moves, every subscriber
resubscribes, and a membership change still reaches the coordinator and the workers."""

from __future__ import annotations

import json
import signal
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

#: A report is fresh when the publisher wrote it this recently (wall ms), from data this
#: recent (exchange time) with ingestion ok: market data flows again, not just reports.
FRESH_MS = 1500


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    local = LocalCluster(masters=3, replicas=1, node_timeout_ms=1000).start()
    try:
        yield local
    finally:
        local.stop()


def _fresh(client: Any, symbol: str) -> dict[str, Any] | None:
    """The symbol's stored report if it is fresh (see ``FRESH_MS``)."""
    try:
        row = client.hmget(keys.report(symbol), ["json", "updated_at"])
    except Exception:  # a slot mid-failover: not fresh (yet)
        return None
    if row[0] is None or row[1] is None:
        return None
    if time.time() * 1000 - int(row[1]) > FRESH_MS:
        return None
    report: dict[str, Any] = json.loads(row[0])
    if report["ingestion"]["status"] != "ok" or report["data_age_ms"] > FRESH_MS:
        return None
    return report


def _subscribers(cluster: LocalCluster, channel: str) -> int:
    """Subscribers of a (classic) channel summed over the live nodes: in a cluster each
    subscriber holds its subscription on one node and PUBLISH reaches every node."""
    total = 0
    for port in cluster.alive():
        node = cluster.client(port)
        try:
            total += int(dict(node.pubsub_numsub(channel))[channel.encode()])
        finally:
            node.close()
    return total


def _fresh_from(client: Any, symbols: list[str], writer: str, after_ms: float) -> bool:
    for s in symbols:
        report = _fresh(client, s)
        if report is None or report["updatedAt"] <= after_ms:
            return False
        if report["writer"]["nodeId"] != writer:
            return False
    return True


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

        # kill -9 the primary serving the fleet-wide channels' slot ({fleet}); give it a
        # replica first if it is the one promoted above (whose old primary is dead).
        channel_key = keys.ASSIGNMENT_CHANNEL
        if not cluster.replicas_of(cluster.primary_of(channel_key)):
            cluster.add_replica(cluster.primary_of(channel_key))
        owners = client.hgetall(keys.ASSIGNMENT)
        killed_at = time.monotonic()
        old, _ = cluster.kill_primary_of(channel_key)
        channels_promotion = cluster.wait_promoted(channel_key, old, killed_at)
        # Both calc workers resubscribe to the assignment channel, the coordinator to the
        # membership channel, on whichever nodes now serve them.
        poll(lambda: _subscribers(cluster, keys.ASSIGNMENT_CHANNEL) == 2, 30, "2 resubscribed")
        poll(lambda: _subscribers(cluster, keys.MEMBERSHIP_CHANNEL) >= 1, 30, "coordinator")
        resubscribed_s = time.monotonic() - killed_at
        # The fleet keys were out for longer than the node TTL, for the workers' heartbeats
        # as for the coordinator: that is no reason to drop a worker or move a symbol.
        assert client.hgetall(keys.ASSIGNMENT) == owners
        after_ms = (time.time() - (time.monotonic() - killed_at)) * 1000
        for symbol in DEMO_SYMBOLS:
            poll(
                lambda s=symbol: _fresh_from(client, [s], owners[s.encode()].decode(), after_ms),
                60,
                f"{symbol} fresh again after the second failover",
            )
        channels_recovered_s = time.monotonic() - killed_at
        # A membership change still goes through: calc-2 leaves (SIGTERM), the coordinator
        # hands its symbols to calc-1, which takes them over and writes all of them.
        left_at = time.monotonic()
        after_ms = time.time() * 1000
        fleet.service("calc-2").signal(signal.SIGTERM)
        assert fleet.service("calc-2").wait(15) == 0
        poll(
            lambda: _fresh_from(client, list(DEMO_SYMBOLS), "calc-1", after_ms),
            60,
            "calc-1 writing every symbol after calc-2 left",
        )
        handover_s = time.monotonic() - left_at
        print(
            f"cluster failover: replica promoted after {promotion.seconds:.2f} s, "
            f"every symbol fresh again {recovered_s:.2f} s after the kill; "
            f"channels' primary killed: promoted {channels_promotion.seconds:.2f} s, "
            f"all subscribers back {resubscribed_s:.2f} s, every symbol fresh again "
            f"{channels_recovered_s:.2f} s after the kill; then calc-2 left and calc-1 "
            f"wrote every symbol {handover_s:.2f} s later"
        )
    finally:
        codes = fleet.stop()
        client.close()
    assert all(code == 0 for code in codes.values()), codes
