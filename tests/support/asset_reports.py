"""A real asset report for read-API tests: built by the asset core from hand-made entries
and stored the way the publisher's fenced_publish.lua stores a report."""

from __future__ import annotations

import json
from typing import Any

import orjson
import redis

from services.calc.analytics import with_writer
from services.calc.analytics.asset import AssetCore, AssetParams
from shared import assets, keys
from shared.asset_report import asset_schema_errors
from shared.wire import DeltaPayload, Entry, SnapPayload

MS = 1_000_000
#: symbol -> registry JSON, as ingest registers BTC on spot, USDⓈ-M and COIN-M.
BTC_MARKETS: dict[str, dict[str, Any]] = {
    "BTCUSDTSPOT": {"venue": "BINANCE", "market": "spot", "raw_symbol": "BTCUSDT"},
    "BTCUSDT": {"venue": "BINANCE", "market": "usdm", "raw_symbol": "BTCUSDT"},
    "BTCUSDPERP": {
        "venue": "BINANCE",
        "market": "coinm",
        "raw_symbol": "BTCUSD_PERP",
        "size_unit": "contracts",
    },
}


def register_btc(client: redis.Redis) -> None:
    client.hset(keys.SYMBOLS, mapping={s: json.dumps(v) for s, v in BTC_MARKETS.items()})


def btc_asset_report(t_ms: int = 1_723_161_300_000) -> dict[str, Any]:
    """The BTC asset report at ``t_ms`` of three small books (spot, USDⓈ-M, COIN-M)."""
    members = [assets.member(s, json.dumps(v)) for s, v in BTC_MARKETS.items()]
    core = AssetCore("BTC", [m for m in members if m is not None], AssetParams())
    books = {
        "BTCUSDTSPOT": (600000, 600010),
        "BTCUSDT": (600050, 600060),
        "BTCUSDPERP": (600020, 600030),
    }
    for symbol, (bid, ask) in books.items():
        core.apply(
            symbol,
            Entry("snap", (t_ms - 100) * MS, 0, SnapPayload(1, 1, 3, [(bid, 2000)], [(ask, 3000)])),
        )
        core.apply(symbol, Entry("delta", (t_ms + 1) * MS, 0, DeltaPayload(2, 2, 1, 1, 3, [], [])))
    (report,) = [r for t, r in core.advance() if t == t_ms * MS]
    report = with_writer(report, "calc-1", 7)
    assert asset_schema_errors(report) == []
    return report


def put_asset_report(client: redis.Redis, report: dict[str, Any], written_ms: int) -> None:
    report = {**report, "updatedAt": written_ms}
    client.hset(
        keys.asset_report(report["asset"]),
        mapping={
            "json": orjson.dumps(report),
            "token": report["writer"]["writerToken"],
            "event_ms": 0,
            "node": report["writer"]["nodeId"],
            "updated_at": written_ms,
        },
    )
