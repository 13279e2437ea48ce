"""The offline ingest path (services.ingest.offline, used by ``context8 report-at``)
writes exactly what the ingest service writes to Redis for the same files.

The service runs as a real process (unpaced, exit at the end) on the whole bundled
recording (both symbols, both day files, checkpoints every 30 s of exchange time);
every stream entry, decoded, must equal the offline entry at the same position.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import redis

from services.ingest.offline import offline_entries
from services.ingest.settings import DEMO_FILES
from shared import keys
from shared.wire import decode

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parents[2]


def test_offline_entries_equal_the_ingest_service_stream(redis_url: str, tmp_path: Path) -> None:
    files = list(DEMO_FILES)
    env = {k: v for k, v in os.environ.items() if not k.startswith("C8_")}
    env.update(
        C8_REDIS_URL=redis_url,
        C8_METRICS_PORT="0",
        C8_INGEST_SPEED="max",
        C8_INGEST_EXIT_AT_END="true",
        C8_INGEST_REPLAY_FILES=",".join(map(str, files)),
        C8_INGEST_NAUTILUS_LOG_LEVEL="ERROR",
    )
    log = tmp_path / "ingest.log"
    with log.open("wb") as fh:
        proc = subprocess.run(
            [sys.executable, "-m", "services.ingest"],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=fh,
            timeout=150,
        )
    assert proc.returncode == 0, log.read_text()[-2000:]

    offline = offline_entries(files)
    client = redis.Redis.from_url(redis_url)
    try:
        assert sorted(offline) == ["BTCUSDT", "ETHUSDT"]
        for symbol, expected in offline.items():
            written = [decode(fields) for _id, fields in client.xrange(keys.stream(symbol))]
            kinds = Counter(e.kind for e in written)
            # The whole session: venue snapshot + 30 s checkpoints, every diff and trade.
            assert kinds["snap"] >= 15 and kinds["delta"] > 8_000 and kinds["trade"] > 10_000
            assert written[-1].kind == "status" and written[-1].payload.state == "down"
            assert len(written) == len(expected), symbol
            for i, (got, want) in enumerate(zip(written, expected, strict=True)):
                assert got == want, (symbol, i, got.kind, want.kind)
    finally:
        client.close()
