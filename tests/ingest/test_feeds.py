"""Feeds from recorded file paths: venue/market/symbol inference and start-up errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from ingest_support import BYBIT, DATA, SESSIONS

from services.ingest.feeds import parse_precisions, parse_symbol_map, replay_feeds
from services.ingest.instruments import make_instrument
from shared.errors import ConfigError


def test_kit_layout_gives_venue_market_symbol_and_date_order() -> None:
    files = [*reversed(SESSIONS["usdm-btc-2024-07"]), *SESSIONS["coinm-btc-2024-08"], BYBIT]
    feeds = {f.symbol: f for f in replay_feeds(files)}
    usdm = feeds["BTCUSDT"]
    assert [p.name for p in usdm.files] == ["btcusdt_20240718.gz", "btcusdt_20240719.gz"]
    coinm = feeds["BTCUSDPERP"]
    assert (coinm.venue, coinm.market, coinm.raw_symbol) == ("BINANCE", "coinm", "BTCUSD_PERP")
    assert coinm.instrument_id == "BTCUSD_PERP.BINANCE"
    assert coinm.registration()["size_unit"] == "contracts"
    xrp = feeds["XRPUSDT"]
    assert (xrp.venue, xrp.market, xrp.price_precision, xrp.size_precision) == (
        "BYBIT",
        "linear",
        4,
        0,
    )
    assert xrp.instrument_id == "XRPUSDT-LINEAR.BYBIT"
    assert make_instrument(coinm).is_inverse and make_instrument(xrp).price_precision == 4


def test_two_feeds_with_one_symbol_is_a_config_error() -> None:
    spot = DATA / "binance-spot/BTCUSDT/btcusdt_20240808.gz"
    usdm = DATA / "binance-usdm/BTCUSDT/btcusdt_20240808.gz"
    with pytest.raises(ConfigError, match="two feeds publish symbol 'BTCUSDT'"):
        replay_feeds([spot, usdm])
    rename = parse_symbol_map("binance-spot:BTCUSDT=BTCSPOT")
    renamed = replay_feeds([spot, usdm], symbol_map=rename)
    assert sorted(f.symbol for f in renamed) == ["BTCSPOT", "BTCUSDT"]


def test_path_outside_the_kit_layout_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "somewhere" / "btcusdt.gz"
    path.parent.mkdir()
    path.write_bytes(gzip.compress(b""))
    with pytest.raises(ConfigError, match="cannot infer venue/market/symbol"):
        replay_feeds([path])
    with pytest.raises(ConfigError, match="not found"):
        replay_feeds([tmp_path / "binance-usdm" / "BTCUSDT" / "missing.gz"])
    with pytest.raises(ConfigError, match="empty"):
        replay_feeds([])


def test_unknown_symbol_precision_is_read_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "binance-usdm" / "DOGEUSDT" / "dogeusdt_20240101.gz"
    path.parent.mkdir(parents=True)
    body = (
        b'1 {"stream":"dogeusdt@depth@0ms",'
        b'"data":{"b":[["0.12345","100"]],"a":[["0.1235","7.5"]]}}\n'
    )
    path.write_bytes(gzip.compress(body))
    (feed,) = replay_feeds([path])
    assert (feed.price_precision, feed.size_precision) == (5, 1)
    (forced,) = replay_feeds([path], precisions=parse_precisions("DOGEUSDT=6:2"))
    assert (forced.price_precision, forced.size_precision) == (6, 2)


def test_bad_override_specs_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        parse_precisions("BTCUSDT=one:two")
    with pytest.raises(ConfigError):
        parse_symbol_map("nowhere:BTCUSDT=X")
    with pytest.raises(ConfigError):
        parse_symbol_map("binance-spot:BTCUSDT=bad-symbol")
