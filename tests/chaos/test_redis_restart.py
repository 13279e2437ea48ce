"""kill -9 of Redis itself, restarted on the same port and data dir with AOF (fsync always).

The outage outlasts the lease TTL, so every lease has expired when Redis comes back:
every service must ride it out (no process dies), nothing acknowledged is lost (audit
entries, tokens, stored reports), tokens never go back, the owners re-acquire with fresh
tokens and reports are accepted again; the safety checks hold across the restart.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from context8.fleet import Fleet, FleetConfig
from context8.redis_server import RedisServer
from shared import keys
from tests.chaos.chaos_kit import (
    CHAOS_ENV,
    SUMMARY,
    SYMBOLS,
    FleetView,
    TokenTimeline,
    metric_sum,
    read_audit,
    record,
    server_ms,
)

pytestmark = pytest.mark.timeout(150)

#: How long Redis stays down: longer than the lease TTL (1.5 s), so leases lapse.
OUTAGE_S = 2.0


@pytest.fixture(scope="module")
def aof_fleet() -> Iterator[tuple[FleetView, TokenTimeline]]:
    fleet = Fleet(FleetConfig(calc_workers=2, speed="1", extra_env=CHAOS_ENV))
    fleet.redis = RedisServer(
        port=fleet.redis.port, data_dir=fleet.workdir / "redis", appendonly=True
    )
    fleet.start()
    timeline: TokenTimeline | None = None
    try:
        view = FleetView(fleet)
        timeline = TokenTimeline(fleet.redis.url, SYMBOLS).start()
        view.wait_settled(timeout=90)
        yield view, timeline
    finally:
        if timeline is not None:
            timeline.stop()
        fleet.stop(timeout=8)
        fleet.cleanup()


def test_redis_kill9_and_restart_with_aof(aof_fleet: tuple[FleetView, TokenTimeline]) -> None:
    v, timeline = aof_fleet
    fleet = v.fleet
    v.wait_settled()
    calcs = v.calcs()
    errors_before = {
        c.name: metric_sum(c.metrics_port, "context8_calc_redis_errors_total") for c in calcs
    }

    audit_before = {s: read_audit(v.client, s) for s in SYMBOLS}
    tokens_before = {s: v.token(s) for s in SYMBOLS}
    event_before = {s: int(v.client.hget(keys.report(s), "event_ms") or 0) for s in SYMBOLS}
    t0 = server_ms(v.client)
    segment = timeline.segment
    fleet.redis.kill()
    # The outage is the fault itself (its length is a parameter, not a synchronisation).
    threading.Event().wait(OUTAGE_S)
    fleet.redis = RedisServer(
        port=fleet.redis.port, data_dir=fleet.workdir / "redis", appendonly=True
    ).start()
    v.client.connection_pool.disconnect()

    # Every worker noticed the outage (and survived it).
    for c in calcs:
        assert (
            metric_sum(c.metrics_port, "context8_calc_redis_errors_total") > errors_before[c.name]
        )
    found = v.wait_failover("redis restart", None, SYMBOLS, t0, timeout=30)
    timeline.wait_marked(after_segment=segment)

    # Nothing acknowledged was lost, nothing went back.
    for s in SYMBOLS:
        after = read_audit(v.client, s)
        assert after[: len(audit_before[s])] == audit_before[s], f"{s}: audit entries lost"
        assert v.token(s) >= tokens_before[s]
        assert int(v.client.hget(keys.report(s), "event_ms") or 0) >= event_before[s]
    state = v.wait_settled(timeout=40)
    for s in SYMBOLS:
        # The leases lapsed during the outage: the owners hold fresh grants now.
        assert state[s][1] > tokens_before[s], (s, state[s], tokens_before[s])
    assert not v.unexpected_dead()
    stats = v.check_safety(timeline)
    record(v, "redis kill -9 + AOF restart", found, note=f"outage {OUTAGE_S:.1f} s")
    SUMMARY.append(
        f"redis restart: {stats['accepted']} writes accepted ({stats['timeline_checked']} checked "
        f"against the token timeline), stale writes accepted: 0, late candidates "
        f"{stats['late_candidates']}, stale_token rejections {stats['stale_rejected']}"
    )
