"""Asset report candidates (unit ``asset:BTC``): checked against the asset contract and
written fenced by the same script as symbol reports, into the asset's own keys."""

from __future__ import annotations

import orjson
import redis.asyncio as aioredis

from services.publisher.core import Ready, Rejected, prepare, write_args, write_keys
from shared import keys
from shared.candidate import Candidate, encode_candidate
from shared.scripts import Scripts
from tests.support.asset_reports import btc_asset_report

UNIT = "asset:BTC"


def _fields(report: dict, unit: str = UNIT, token: int = 7) -> dict[bytes, bytes]:
    return encode_candidate(Candidate(unit, token, "calc-1", 1_000, orjson.dumps(report)))


def test_asset_candidates_are_checked_against_the_asset_contract() -> None:
    report = btc_asset_report()
    ok = prepare(b"1-0", _fields(report), validate=True, now_ms=123)
    assert isinstance(ok, Ready), ok
    assert orjson.loads(ok.report_json)["updatedAt"] == 123
    assert ok.candidate.symbol == UNIT
    wrong_asset = prepare(b"2-0", _fields({**report, "asset": "ETH"}), validate=True, now_ms=1)
    assert isinstance(wrong_asset, Rejected) and wrong_asset.reason == "invalid"
    assert "asset 'ETH' != candidate unit 'asset:BTC'" in wrong_asset.detail
    broken = prepare(b"3-0", _fields({**report, "crossed": "yes"}), validate=True, now_ms=1)
    assert isinstance(broken, Rejected) and broken.reason == "invalid"
    # An asset report under a symbol's name is not a symbol report.
    as_symbol = prepare(b"4-0", _fields(report, unit="BTCUSDT"), validate=True, now_ms=1)
    assert isinstance(as_symbol, Rejected) and as_symbol.reason == "invalid"
    bad_unit = prepare(b"5-0", _fields(report, unit="asset:bt-c"), validate=True, now_ms=1)
    assert isinstance(bad_unit, Rejected) and bad_unit.reason == "malformed"


def test_asset_keys_share_one_slot_and_never_collide_with_a_symbol() -> None:
    got = write_keys(UNIT)
    assert got[:2] == ["c8:token:{asset:BTC}", "c8:report:{asset:BTC}"]
    assert len({k.split("{", 1)[1] for k in got}) == 1
    assert keys.asset_report("BTC") == got[1] != keys.report("BTC")
    assert write_keys("BTCUSDT") == [
        keys.token("BTCUSDT"),
        keys.report("BTCUSDT"),
        keys.audit("BTCUSDT"),
        keys.history("BTCUSDT"),
        keys.history_coarse("BTCUSDT"),
        keys.report_updates("BTCUSDT"),
    ]
    assert keys.candidate_partition(UNIT, 16) == keys.candidate_partition(UNIT, 16)
    for bad in ("asset:", "asset:btc", "asset:" + "X" * 21, "asset:B-C"):
        try:
            keys.check_unit(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} accepted")


async def test_fenced_write_of_an_asset_report(aredis: aioredis.Redis) -> None:
    scripts = Scripts(aredis)
    report = btc_asset_report()
    await aredis.set(keys.unit_key("token", UNIT), 7)

    async def write(token: int, event_ms: int) -> list[int]:
        args = write_args(token, event_ms, "calc-1", orjson.dumps(report), 5, 100)
        return list(await scripts("fenced_publish", keys=write_keys(UNIT), args=args))

    assert (await write(7, 1_000))[:2] == [1, 7]
    stored = await aredis.hgetall(keys.asset_report("BTC"))
    assert orjson.loads(stored[b"json"])["asset"] == "BTC" and stored[b"event_ms"] == b"1000"
    assert (await write(6, 2_000))[:2] == [0, 7]  # a stale token is refused
    assert (await write(7, 1_000))[:2] == [-1, 7]  # not newer
    assert await aredis.exists(keys.unit_key("hist", UNIT)) == 0  # no history rows
