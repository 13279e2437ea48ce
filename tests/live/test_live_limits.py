"""Many symbols on one venue, over real sockets: ingest stays within Binance's documented
limits per connection and per IP (the emulator enforces them as the venue does and
counts every breach), and its REST snapshots within its own weight budget."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from context8.emulator.copies import copy_names
from context8.emulator.process import EmulatorProcess
from context8.redis_server import RedisServer
from services.ingest.venues.binance.client import WEIGHT_LIMIT, WEIGHT_SHARE, depth_weight
from shared import keys
from tests.support.live_ingest import FILES, start_live_ingest
from tests.support.polling import poll

pytestmark = pytest.mark.timeout(180)

COPIES = 100


def test_a_hundred_symbols_stay_within_the_venue_limits(tmp_path: Path) -> None:
    names = ["BTCUSDT", *copy_names("BTCUSDT", COPIES)]
    with (
        RedisServer() as server,
        EmulatorProcess(
            FILES["BTCUSDT"], speed=1, copies=[f"binance-usdm:BTCUSDT={COPIES}"]
        ) as emu,
    ):
        proc = start_live_ingest(
            server.url,
            emu.venue_urls,
            [],
            tmp_path / "ingest.log",
            ingest_live_symbols=",".join(f"binance-usdm:{n}" for n in names),
            ingest_precisions=",".join(f"{n}=1:3" for n in names),
            # The minute's 60 snapshots arrive together and Nautilus's data engine
            # handles them without yielding: on a slow machine that holds ingest's loop
            # past the default 2 s claim TTL and the process loses (and retakes, and
            # re-snapshots) its own feeds. This test is about the venue limits.
            ingest_claim_ttl_s="10",
            # Depth snapshots only in the weight budget: the count below is exact.
            ingest_open_interest_poll_s="0",
        )
        client = redis.Redis.from_url(server.url)
        try:
            budget = int(WEIGHT_LIMIT["binance-usdm"] * WEIGHT_SHARE)
            per_minute = budget // depth_weight("binance-usdm", 1000)

            def synced() -> int:
                return sum(1 for n in names if client.get(keys.checkpoint(n)) is not None)

            started = time.monotonic()
            poll(lambda: synced() >= per_minute, 60, f"{per_minute} books")
            took = time.monotonic() - started
            stats = emu.market_stats("binance-usdm")
            # Every stream subscribed (depth, trade, markPrice@1s, forceOrder), on as few
            # connections as the per-connection cap allows; every subscription paced.
            assert stats["subscriptions"] == 4 * len(names)
            assert stats["streams_per_connection_max"] <= stats["limits"]["streams_per_connection"]
            assert stats["connections_total"] == -(-4 * len(names) // 200)
            assert stats["messages_per_second_max"] <= 5
            # The REST budget: exactly a minute's worth of snapshots, then the rest wait.
            assert stats["weight_per_minute_max"] <= budget
            assert synced() == per_minute
            assert stats["violations"] == {}, stats["violations"]
            print(
                f"{len(names)} symbols: {per_minute} books in {took:.1f} s, "
                f"{stats['connections_total']} connections, max "
                f"{stats['streams_per_connection_max']} streams/connection, max "
                f"{stats['messages_per_second_max']} messages/s, max "
                f"{stats['weight_per_minute_max']} weight/min"
            )
        finally:
            proc.terminate()
            assert proc.wait(timeout=30) == 0
            client.close()
