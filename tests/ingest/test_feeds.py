"""Feeds from recorded file paths and live specs, venue URLs: inference and start-up errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from ingest_support import BYBIT, DATA, SESSIONS

from services.ingest.feeds import live_feeds, parse_precisions, parse_symbol_map, replay_feeds
from services.ingest.instruments import make_instrument
from services.ingest.venues import DEFAULT_URLS, VenueUrls, parse_venue_urls
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


def test_live_symbols_spec_errors_are_config_errors() -> None:
    none: dict[str, tuple[int, int]] = {}
    with pytest.raises(ConfigError, match="want <venue>-<market>:<SYMBOL>"):
        live_feeds("BTCUSDT", none, {})
    with pytest.raises(ConfigError, match="unknown live symbol DOGEUSDT on binance-usdm"):
        live_feeds("binance-usdm:DOGEUSDT", none, {})
    with pytest.raises(ConfigError, match="two feeds publish"):
        live_feeds("binance-usdm:BTCUSDT,binance-spot:BTCUSDT", none, {})
    with pytest.raises(ConfigError, match="needs C8_INGEST_LIVE_SYMBOLS"):
        live_feeds("", none, {})
    (feed,) = live_feeds("binance-coinm:btcusd_perp", none, {})
    assert (feed.feed_dir, feed.raw_symbol, feed.symbol) == (
        "binance-coinm",
        "BTCUSD_PERP",
        "BTCUSDPERP",
    )


def test_venue_urls_override_the_real_endpoints_and_bad_ones_are_config_errors() -> None:
    urls = parse_venue_urls(
        "binance-usdm=http://127.0.0.1:9000/binance-usdm|ws://127.0.0.1:9000/binance-usdm/, "
        "bybit-linear=http://127.0.0.1:9000/b|ws://127.0.0.1:9000/b/v5/public/linear"
    )
    assert urls["binance-usdm"] == VenueUrls(
        "http://127.0.0.1:9000/binance-usdm", "ws://127.0.0.1:9000/binance-usdm"
    )
    assert urls["bybit-linear"].ws == "ws://127.0.0.1:9000/b/v5/public/linear"
    assert urls["binance-spot"] == VenueUrls(
        "https://api.binance.com", "wss://stream.binance.com:9443"
    )
    assert parse_venue_urls("") == DEFAULT_URLS
    for bad, match in (
        ("binance-usdm=http://x", "want <venue>-<market>="),
        ("kraken-spot=http://x|ws://x", "want <venue>-<market>="),
        ("binance-usdm=ws://x|ws://x", "is not a http or https URL"),
        ("binance-usdm=http://x|http://x", "is not a ws or wss URL"),
        ("binance-usdm=http://|ws://x", "is not a http or https URL"),
    ):
        with pytest.raises(ConfigError, match=match):
            parse_venue_urls(bad)


def test_public_binance_http_client_sends_no_key_header() -> None:
    from nautilus_trader.common.component import LiveClock

    from services.ingest.venues.binance.client import PublicBinanceHttpClient

    http = PublicBinanceHttpClient(LiveClock(), "https://fapi.binance.com")
    assert "X-MBX-APIKEY" not in http.headers
