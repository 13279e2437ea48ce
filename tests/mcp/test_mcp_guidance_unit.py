"""Pure parts of the LLM guidance: prompt texts, argument parsing, completions, cache TTLs."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from mcp_types import PromptReference, ResourceTemplateReference

from services.mcp.cache_hints import report_ttl_ms, with_report_ttl
from services.mcp.errors import InvalidArgumentError
from services.mcp.history import HISTORY_FIELDS, MAX_MINUTES, MIN_MINUTES
from services.mcp.prompts import (
    BRIEF_HISTORY_FIELDS,
    BRIEF_SECTIONS,
    COMPARE_HISTORY_FIELDS,
    HISTORY_MINUTES,
    LIQUIDITY_SECTIONS,
    MAX_COMPLETIONS,
    GuideLimits,
    compare_symbols_text,
    complete_symbol,
    complete_symbol_list,
    format_amount,
    liquidity_check_text,
    market_brief_text,
    missing_prompt_arguments,
    parse_notional,
    parse_side,
    parse_symbol_list,
    symbol_argument_kind,
)
from services.mcp.sections import HEADER, SECTIONS
from shared.errors import InvalidSymbolError
from shared.report import report_schema

LIMITS = GuideLimits(stale_after_ms=2500, down_after_ms=12000, max_batch=3)


def test_every_report_field_is_in_the_header_or_a_section() -> None:
    """A field added to the contract must be reachable with ``sections``."""
    sectioned = {field for fields in SECTIONS.values() for field in fields}
    top_level = set(report_schema()["properties"])
    assert top_level - set(HEADER) - sectioned == set()


def test_recipes_use_the_real_section_and_history_field_names() -> None:
    assert set(BRIEF_SECTIONS) == set(SECTIONS)  # a brief reads every section
    assert set(LIQUIDITY_SECTIONS) <= set(SECTIONS)
    assert set(BRIEF_HISTORY_FIELDS) | set(COMPARE_HISTORY_FIELDS) <= set(HISTORY_FIELDS)
    assert MIN_MINUTES <= HISTORY_MINUTES <= MAX_MINUTES


def test_market_brief_names_the_tools_sections_and_freshness_rules() -> None:
    text = market_brief_text("BTCUSDT", LIMITS)
    assert 'get_report with {"symbol": "BTCUSDT", "sections": ["l1", "stats_24h", "depth", ' in text
    assert '"flow", "liquidity", "anomalies", "health", "derivatives"]}' in text
    assert 'get_history with {"symbol": "BTCUSDT", "minutes": 15, "fields": ["mid_price"' in text
    # units and the freshness rules, with this server's thresholds
    for phrase in (
        "quote currency",
        "base-asset units",
        "basis points",
        "[-1, 1]",
        "more than 2500 ms",
        "more than 12000 ms",
        'ingestion.status is "down"',
        "data_age_ms",
        "null means unknown",
    ):
        assert phrase in text, phrase


@pytest.mark.parametrize(
    ("side", "book", "slippage"),
    [
        (
            "buy",
            "Walk depth.asks from the best (lowest) price up",
            "(VWAP - mid_price) / mid_price",
        ),
        ("sell", "Walk depth.bids from the best (highest) price down", "(mid_price - VWAP)"),
    ],
)
def test_liquidity_check_explains_the_sweep_for_the_side(
    side: Any, book: str, slippage: str
) -> None:
    text = liquidity_check_text("ETHUSDT", Decimal("25000"), side, LIMITS)
    assert f"a market {side} of 25000 (quote currency" in text
    assert 'get_report with {"symbol": "ETHUSDT", "sections": ["l1", "depth", "liquidity"' in text
    assert book in text
    assert slippage in text and "x 10000" in text
    assert "at most 20 levels a side" in text
    assert "visible book is not enough" in text and "lower bound" in text
    other = "depth.bids" if side == "buy" else "depth.asks"
    assert f"Walk {other}" not in text


def test_compare_symbols_uses_one_get_reports_call() -> None:
    text = compare_symbols_text(["BTCUSDT", "ETHUSDT"], LIMITS)
    assert 'get_reports once with {"symbols": ["BTCUSDT", "ETHUSDT"]}' in text
    assert "quote notional" in text
    assert "errors" in text and '"down"' in text


@pytest.mark.parametrize(
    ("raw", "value"),
    [("25000", "25000"), (" 1e5 ", "100000"), ("25,000.50", "25000.5"), ("0.001", "0.001")],
)
def test_parse_notional_accepts_positive_numbers(raw: str, value: str) -> None:
    assert format_amount(parse_notional(raw)) == value


@pytest.mark.parametrize("raw", ["", "abc", "0", "-5", "nan", "inf", "1e16", "12 USDT"])
def test_parse_notional_rejects_the_rest_with_a_clear_error(raw: str) -> None:
    with pytest.raises(InvalidArgumentError, match="expected a positive number in the quote"):
        parse_notional(raw)


def test_parse_side() -> None:
    assert parse_side(" BUY ") == "buy"
    assert parse_side("Sell") == "sell"
    with pytest.raises(InvalidArgumentError, match="invalid side 'long': expected buy or sell"):
        parse_side("long")


def test_parse_symbol_list() -> None:
    assert parse_symbol_list("btcusdt, ETHUSDT ethusdt", 3) == ["BTCUSDT", "ETHUSDT"]
    with pytest.raises(InvalidArgumentError, match="at least 2 distinct symbols"):
        parse_symbol_list("BTCUSDT,btcusdt", 3)
    with pytest.raises(InvalidArgumentError, match=r"4 symbols given; .* at most 3"):
        parse_symbol_list("A,B,C,D", 3)
    with pytest.raises(InvalidSymbolError, match="invalid symbol 'BTC-USDT'"):
        parse_symbol_list("BTC-USDT,ETHUSDT", 3)


def test_complete_symbol_is_a_case_insensitive_prefix_match() -> None:
    known = ["ETHUSDT", "BTCUSDT", "BTCUSDC", "ETHBTC"]
    done = complete_symbol(known, "bt")
    assert (done.values, done.total, done.has_more) == (["BTCUSDC", "BTCUSDT"], 2, False)
    assert complete_symbol(known, "").values == sorted(known)
    assert complete_symbol(known, "x").values == []


def test_complete_symbol_caps_at_100_values() -> None:
    known = [f"S{i:03d}USDT" for i in range(150)]
    done = complete_symbol(known, "s")
    assert len(done.values) == MAX_COMPLETIONS
    assert (done.total, done.has_more) == (150, True)
    assert complete_symbol(known, "S1").total == 50


def test_complete_symbol_list_completes_the_last_item() -> None:
    known = ["ETHUSDT", "BTCUSDT", "ETHBTC"]
    done = complete_symbol_list(known, "btcusdt, et")
    assert done.values == ["BTCUSDT,ETHBTC", "BTCUSDT,ETHUSDT"]
    # symbols already listed are not offered again
    assert complete_symbol_list(known, "ETHUSDT,").values == ["ETHUSDT,BTCUSDT", "ETHUSDT,ETHBTC"]
    assert complete_symbol_list(known, "b").values == ["BTCUSDT"]
    assert complete_symbol_list(known, "ethbtc btc").values == ["ETHBTC,BTCUSDT"]


def test_symbol_argument_kind() -> None:
    prompt = PromptReference(name="market_brief")
    assert symbol_argument_kind(prompt, "symbol") == "symbol"
    assert symbol_argument_kind(PromptReference(name="compare_symbols"), "symbols") == "symbols"
    assert symbol_argument_kind(prompt, "side") is None
    template = ResourceTemplateReference(uri="report://{symbol}")
    assert symbol_argument_kind(template, "symbol") == "symbol"
    assert symbol_argument_kind(ResourceTemplateReference(uri="x://{id}"), "id") is None


def test_missing_prompt_arguments() -> None:
    message = missing_prompt_arguments(
        {"name": "liquidity_check", "arguments": {"symbol": "BTCUSDT"}}
    )
    assert message == (
        "prompt 'liquidity_check' needs argument(s) notional, side "
        "(required: symbol, notional, side)"
    )
    assert missing_prompt_arguments({"name": "market_brief"}) is not None
    assert missing_prompt_arguments({"name": "market_brief", "arguments": {"symbol": "X"}}) is None
    assert missing_prompt_arguments({"name": "someone_elses"}) is None


def _served(status: str, write_age: int | None) -> dict[str, Any]:
    return {"ingestion": {"status": status}, "report_write_age_ms": write_age}


def test_report_ttl_is_the_rest_of_the_cycle_when_fresh() -> None:
    assert report_ttl_ms(_served("ok", 40), 250) == 210
    assert report_ttl_ms(_served("ok", 0), 250) == 250
    assert report_ttl_ms(_served("ok", 400), 250) == 0  # late: the next report is due
    assert report_ttl_ms(_served("degraded", 10), 250) == 0
    assert report_ttl_ms(_served("down", 10), 250) == 0
    assert report_ttl_ms(_served("ok", None), 250) == 0
    assert report_ttl_ms({}, 250) == 0


def test_with_report_ttl_only_touches_report_reads_that_carry_ttl() -> None:
    text = '{"ingestion": {"status": "ok"}, "report_write_age_ms": 50}'
    item = {"uri": "report://BTCUSDT", "mimeType": "application/json", "text": text}
    result = {"contents": [item], "ttlMs": 0, "cacheScope": "private"}
    assert with_report_ttl(result, 250) == {**result, "ttlMs": 200}
    legacy = {"contents": [item]}  # older protocol: no ttlMs on the wire
    assert with_report_ttl(legacy, 250) is legacy
    other = {"contents": [{**item, "uri": "history://BTCUSDT"}], "ttlMs": 0}
    assert with_report_ttl(other, 250) is other
    broken = {"contents": [{**item, "text": "{nope"}], "ttlMs": 5}
    assert with_report_ttl(broken, 250)["ttlMs"] == 0
