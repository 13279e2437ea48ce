"""The whole fleet as real processes on the bundled data.

Reports for both symbols appear, pass schema 1.2, carry the symbol's current fencing
token, and their best bid/ask equal the exchange's recorded bookTicker at the report's
event time. Then every service stops with exit code 0 on SIGTERM.
"""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from context8.fleet import DEMO_SYMBOLS, Fleet, FleetConfig, wait_until
from services.ingest.settings import DEMO_FILES
from shared import acl, keys
from shared.report import ns_from_iso_utc, schema_errors
from tests.support.binance_truth import read_truth

pytestmark = pytest.mark.timeout(240)

SPEED = "20"  # 8 minutes of data in about 25 s


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    f = Fleet(FleetConfig(calc_workers=2, speed=SPEED))
    f.start()
    yield f
    f.stop()
    f.cleanup()


def _stored(client: redis.Redis, symbol: str) -> tuple[dict, int, int] | None:
    raw, token = client.hmget(keys.report(symbol), "json", "token")
    current = client.get(keys.token(symbol))
    if raw is None or current is None:
        return None
    return json.loads(raw), int(token), int(current)


def test_reports_match_bookticker_and_current_token(fleet: Fleet) -> None:
    client = redis.Redis.from_url(fleet.redis.url)
    truths = {
        sym: read_truth([f for f in DEMO_FILES if f.parent.name == sym]) for sym in DEMO_SYMBOLS
    }
    assert wait_until(lambda: all(_stored(client, s) for s in DEMO_SYMBOLS), timeout=90), (
        f"no reports; dead services: {[s.name for s in fleet.dead_services()]}"
    )

    compared = {s: 0 for s in DEMO_SYMBOLS}
    seen: dict[str, set[str]] = {s: set() for s in DEMO_SYMBOLS}
    cursors = {keys.audit(s): "0-0" for s in DEMO_SYMBOLS}
    deadline = time.monotonic() + 60
    # Every accepted write appends to the symbol's audit stream: block on it and look
    # at the stored report after each write (it may already be a newer one).
    while time.monotonic() < deadline and min(compared.values()) < 10:
        for stream, entries in client.xread(cursors, block=1000, count=1000):
            cursors[stream.decode()] = entries[-1][0].decode()
            sym = stream.decode().split("{")[1].rstrip("}")
            stored = _stored(client, sym)
            assert stored is not None
            report, token, current = stored
            if report["generated_at"] in seen[sym]:
                continue
            seen[sym].add(report["generated_at"])
            assert schema_errors(report) == [], report
            assert report["symbol"] == sym and report["venue"] == "BINANCE"
            assert report["writer"]["writerToken"] == token
            assert token <= current  # a newer grant may have happened since the write
            t_ms = ns_from_iso_utc(report["generated_at"]) // 1_000_000
            truth = truths[sym].comparable_ticker(t_ms)
            if truth is None or report["ingestion"]["status"] != "ok":
                continue
            assert report["best_bid"] == {"price": truth.bid, "qty": truth.bid_qty}, (
                sym,
                report["generated_at"],
            )
            assert report["best_ask"] == {"price": truth.ask, "qty": truth.ask_qty}, (
                sym,
                report["generated_at"],
            )
            compared[sym] += 1
    assert min(compared.values()) >= 10, compared
    assert not fleet.dead_services()

    # After settling, each symbol's stored report carries its current token.
    def settled() -> bool:
        states = [_stored(client, s) for s in DEMO_SYMBOLS]
        return all(st is not None and st[1] == st[2] for st in states)

    assert wait_until(settled, timeout=20)
    client.close()


def test_each_service_runs_under_its_own_acl_user(fleet: Fleet) -> None:
    # mcp connects on its first read.
    with urllib.request.urlopen(f"http://127.0.0.1:{fleet.mcp_port}/v1/symbols", timeout=5) as r:
        assert r.status == 200
    client = redis.Redis.from_url(fleet.redis.url)
    users = {c["user"] for c in client.client_list()}
    assert users == {*acl.SERVICES, acl.ADMIN_USER}, users
    assert "off" in client.acl_getuser("default")["flags"]
    with pytest.raises(redis.AuthenticationError):
        # No password: the default user (no retries, redis-py backs off on a refused login).
        redis.Redis(port=fleet.redis.port, retry=Retry(NoBackoff(), 0)).ping()
    client.close()


def test_every_service_exits_zero_on_sigterm(fleet: Fleet) -> None:
    assert not fleet.dead_services()
    codes = fleet.stop_services(timeout=8)
    assert codes and all(code == 0 for code in codes.values()), codes
    # Nothing any service did, start to stop (leave, lease/claim release), was refused.
    client = redis.Redis.from_url(fleet.redis.url)
    # (Redis >= 7.2 would log redis-py's optional CLIENT SETINFO, which it ignores.)
    refused = [e for e in client.acl_log() if e.get("object") != "client|setinfo"]
    assert refused == [], refused
    client.close()
