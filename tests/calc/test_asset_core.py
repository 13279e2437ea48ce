"""The asset report (BTC on Binance spot, USDⓈ-M and COIN-M) vs an independent reading.

The asset core gets the entries ingest writes for the three 2024-08-08 recordings; the
expected values come from plain dict books of the raw files (tests/calc/calc_kit.py)
and plain float arithmetic, nothing of the project's analytics.
"""

from __future__ import annotations

import functools
import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from services.calc.analytics import with_writer
from services.calc.analytics.asset import AssetCore, AssetParams
from shared import assets
from shared.asset_report import asset_schema_errors
from shared.report import iso_utc_from_ns
from shared.wire import DeltaPayload, Entry, SnapPayload, StatusPayload
from tests.calc.calc_kit import COINM_BTC, DATA, SPOT_BTC, PlainState, plain_states_at

MS = 1_000_000
USDM_BTC_0808 = [DATA / "binance-usdm/BTCUSDT/btcusdt_20240808.gz"]
SYMBOL_MAP = "binance-spot:BTCUSDT=BTCUSDTSPOT"
#: report symbol -> (files, base units per size unit at price p)
SESSIONS: dict[str, list[Path]] = {
    "BTCUSDTSPOT": SPOT_BTC,
    "BTCUSDT": USDM_BTC_0808,
    "BTCUSDPERP": COINM_BTC,
}
#: 24 boundaries over the minutes every book exists (23:54:20 -> 23:59:56 UTC).
T0_MS = 1723161260000
BOUNDARIES_MS = [T0_MS + i * 14_000 for i in range(24)]


@functools.cache
def recorded() -> tuple[list[assets.Member], dict[str, tuple[Entry, ...]]]:
    from services.ingest.offline import IngestOptions, offline_feeds

    feeds = offline_feeds(
        [p for files in SESSIONS.values() for p in files], IngestOptions(symbol_map=SYMBOL_MAP)
    )
    members = []
    entries = {}
    for fr in feeds:
        m = assets.member(fr.feed.symbol, json.dumps(fr.feed.registration()))
        assert m is not None
        members.append(m)
        entries[fr.feed.symbol] = tuple(fr.entries())
    return members, entries


def run_core(order: str, silent: frozenset[str] = frozenset()) -> list[tuple[int, dict[str, Any]]]:
    """Every report of the core fed in one of several interleavings of the members."""
    members, entries = recorded()
    core = AssetCore("BTC", members, AssetParams())
    out: list[tuple[int, dict[str, Any]]] = []
    if order == "one_after_another":
        for symbol, es in entries.items():
            for e in es:
                core.apply(symbol, e)
                out += core.advance(silent)
    else:  # pages of different sizes per member, round robin (as XRANGE pages arrive)
        sizes = {"BTCUSDTSPOT": 500, "BTCUSDT": 137, "BTCUSDPERP": 61}
        cursors = {s: 0 for s in entries}
        while any(cursors[s] < len(es) for s, es in entries.items()):
            for symbol, es in entries.items():
                i = cursors[symbol]
                for e in es[i : i + sizes[symbol]]:
                    core.apply(symbol, e)
                cursors[symbol] = i + sizes[symbol]
                out += core.advance(silent)
    return out


def _top(st: PlainState) -> tuple[float, float, float, float, int] | None:
    if not st.bids or not st.asks:
        return None
    b, a = max(st.bids), min(st.asks)
    return b, st.bids[b], a, st.asks[a], st.max_event_ms


def expected_at(
    t_ms: int, tops: dict[str, tuple[float, float, float, float, int]]
) -> dict[str, Any]:
    """The asset fields at ``t_ms`` from the plain tops: floats, written out by hand."""

    def base(symbol: str, price: float, qty: float) -> float:
        return qty * 100 / price if symbol == "BTCUSDPERP" else qty

    markets = {}
    for s, (b, bq, a, aq, ev) in tops.items():
        markets[s] = {
            "bid": b,
            "bid_qty": base(s, b, bq),
            "ask": a,
            "ask_qty": base(s, a, aq),
            "mid": (b + a) / 2,
            "age": t_ms - ev,
        }
    spot_mid = markets["BTCUSDTSPOT"]["mid"]
    basis = {
        s: (markets[s]["mid"] - spot_mid) / spot_mid * 10_000 for s in ("BTCUSDT", "BTCUSDPERP")
    }
    best_bid = max(m["bid"] for m in markets.values())
    best_ask = min(m["ask"] for m in markets.values())
    crosses = sorted(
        (sb, sa, min(mb["bid_qty"], ma["ask_qty"]))
        for (sb, mb), (sa, ma) in itertools.permutations(markets.items(), 2)
        if mb["bid"] > ma["ask"]
    )
    return {
        "markets": markets,
        "basis": basis,
        "best_bid": (best_bid, sum(m["bid_qty"] for m in markets.values() if m["bid"] == best_bid)),
        "best_ask": (best_ask, sum(m["ask_qty"] for m in markets.values() if m["ask"] == best_ask)),
        "crosses": crosses,
    }


def test_asset_report_matches_plain_books_on_recorded_btc() -> None:
    reports = dict(run_core("pages"))
    truth = {s: plain_states_at(files, BOUNDARIES_MS, _top) for s, files in SESSIONS.items()}
    compared = crossed_reports = pairs_crossed = fields = 0
    for t_ms in BOUNDARIES_MS:
        report = reports[t_ms * MS]
        tops = {s: truth[s][t_ms] for s in SESSIONS}
        assert all(v is not None for v in tops.values()), t_ms
        exp = expected_at(t_ms, tops)  # type: ignore[arg-type]
        assert asset_schema_errors(with_writer(report, "calc-1", 1)) == []
        assert report["asset"] == "BTC"
        assert report["generated_at"] == iso_utc_from_ns(t_ms * MS)
        assert report["status"] == "ok"
        assert report["stalled"] == []
        assert report["basis_reference"] == "BTCUSDTSPOT"
        by_symbol = {m["symbol"]: m for m in report["markets"]}
        assert sorted(by_symbol) == sorted(SESSIONS)
        for s, m in exp["markets"].items():
            got = by_symbol[s]
            assert got["status"] == "ok"
            assert got["best_bid"]["price"] == m["bid"]
            assert got["best_ask"]["price"] == m["ask"]
            assert got["best_bid"]["qty"] == pytest.approx(m["bid_qty"], rel=1e-9, abs=1e-8)
            assert got["best_ask"]["qty"] == pytest.approx(m["ask_qty"], rel=1e-9, abs=1e-8)
            assert got["mid"] == pytest.approx(m["mid"], rel=1e-15)
            assert got["data_age_ms"] == m["age"]
            fields += 6
        assert by_symbol["BTCUSDTSPOT"]["basis_bps"] is None
        for s, bps in exp["basis"].items():
            assert by_symbol[s]["basis_bps"] == pytest.approx(bps, abs=1.01e-4)
            fields += 1
        cons = report["consolidated"]
        assert cons["quotes"] == ["USD", "USDT"]
        assert cons["best_bid"]["price"] == exp["best_bid"][0]
        assert cons["best_bid"]["qty"] == pytest.approx(exp["best_bid"][1], rel=1e-9, abs=1e-8)
        assert cons["best_ask"]["price"] == exp["best_ask"][0]
        assert cons["best_ask"]["qty"] == pytest.approx(exp["best_ask"][1], rel=1e-9, abs=1e-8)
        got_crosses = sorted(
            (c["bid_symbol"], c["ask_symbol"], c["qty"]) for c in report["crosses"]
        )
        assert [c[:2] for c in got_crosses] == [c[:2] for c in exp["crosses"]]
        for g, e in zip(got_crosses, exp["crosses"], strict=True):
            assert g[2] == pytest.approx(e[2], rel=1e-9, abs=1e-8)
        assert report["crossed"] == bool(exp["crosses"])
        fields += 5 + len(got_crosses)
        crossed_reports += bool(exp["crosses"])
        pairs_crossed += len(exp["crosses"])
        compared += 1
    assert compared == len(BOUNDARIES_MS) == 24
    # The check can fail both ways: of the 6 ordered market pairs of each boundary, some
    # are crossed (the perpetuals trade at a premium to spot), most are not.
    assert 0 < pairs_crossed < 6 * compared, pairs_crossed
    print(
        f"asset check: {compared} boundaries, {fields} fields equal, "
        f"{crossed_reports} with a cross-market cross, {pairs_crossed} crossed pairs"
    )


def test_reports_do_not_depend_on_the_read_interleaving() -> None:
    paged = run_core("pages")
    serial = run_core("one_after_another")
    assert len(paged) > 1000
    assert paged == serial
    times = [t for t, _ in paged]
    assert times == sorted(set(times))
    assert all(t % (250 * MS) == 0 for t in times)
    # Every report, including the first (markets without data) and the last (down).
    statuses = {m["status"] for _, r in paged for m in r["markets"]}
    assert statuses >= {"ok", "down"}, statuses
    for _, r in paged[:: max(1, len(paged) // 200)] + paged[-3:] + paged[:3]:
        assert asset_schema_errors(with_writer(r, "calc-1", 1)) == []
    assert asset_schema_errors({**with_writer(paged[0][1], "calc-1", 1), "status": "bad"})


# --- the watermark and the stall rule on hand-made entries ---------------------------


def _member(symbol: str, market: str, raw: str) -> assets.Member:
    m = assets.member(symbol, f'{{"venue":"BINANCE","market":"{market}","raw_symbol":"{raw}"}}')
    assert m is not None
    return m


def _snap(t_ms: int, bid: int, ask: int, u: int = 1) -> Entry:
    return Entry("snap", t_ms * MS, 0, SnapPayload(u, 1, 3, [(bid, 1000)], [(ask, 2000)]))


def _delta(t_ms: int, u: int, bid: int) -> Entry:
    return Entry("delta", t_ms * MS, 0, DeltaPayload(u, u, u - 1, 1, 3, [(bid, 500)], []))


def _core() -> AssetCore:
    members = [_member("SPOT", "spot", "BTCUSDT"), _member("PERP", "usdm", "BTCUSDT")]
    return AssetCore("BTC", members, AssetParams())


def test_watermark_waits_for_every_live_member() -> None:
    core = _core()
    core.apply("SPOT", _snap(1000, 600000, 600010))
    core.apply("SPOT", _delta(3000, 2, 600001))
    assert core.advance() == []  # PERP has no data yet: nothing can be known of it
    core.apply("PERP", _snap(1100, 600100, 600110))
    # Boundaries start at or after every member's first entry (1100 -> 1250): not passed.
    assert core.advance() == []
    core.apply("PERP", _delta(1600, 2, 600105))
    out = core.advance()
    # Then up to before PERP's head (1600).
    assert [t // MS for t, _ in out] == [1250, 1500]
    assert core.watermark_lag_ns() == (3000 - 1500) * MS  # SPOT is ahead
    first = out[0][1]
    spot, perp = first["markets"][1], first["markets"][0]
    assert (spot["symbol"], perp["symbol"]) == ("SPOT", "PERP")
    assert perp["status"] == "ok" and spot["status"] == "ok"
    assert perp["data_age_ms"] == 150 and spot["data_age_ms"] == 250
    last = out[-1][1]
    perp = last["markets"][0]
    assert perp["status"] == "ok" and perp["best_bid"] == {"price": 60010.0, "qty": 1.0}
    assert perp["data_age_ms"] == 400
    assert perp["basis_bps"] == round((60010.5 - 60000.5) / 60000.5 * 10_000, 4)
    # PERP's bid 60010.0 is above SPOT's ask 60001.0: a cross of min(1.0, 2.0) BTC.
    assert last["crossed"] is True
    assert last["crosses"] == [
        {
            "bid_symbol": "PERP",
            "bid": 60010.0,
            "ask_symbol": "SPOT",
            "ask": 60001.0,
            "qty": 1.0,
            "bps": round(9 / 60001 * 10_000, 4),
        }
    ]
    # SPOT's state at 1500 is its snapshot: its 3000 ms delta is later.
    assert last["markets"][1]["best_bid"]["price"] == 60000.0


def test_a_silent_member_far_behind_is_stalled_not_waited_for() -> None:
    core = _core()
    core.apply("SPOT", _snap(1000, 600000, 600010))
    core.apply("PERP", _snap(1000, 600100, 600110))
    core.apply("SPOT", _delta(1300, 2, 600001))
    core.apply("PERP", _delta(1300, 2, 600101))
    assert [t // MS for t, _ in core.advance()] == [1000, 1250]
    core.apply("SPOT", _delta(5000, 3, 600002))
    # PERP is behind by 3.7 s of event time, but not silent: still waited for.
    assert core.advance() == []
    out = core.advance(silent={"PERP"})
    assert [t // MS for t, _ in out] == list(range(1500, 5000, 250))
    assert all(r["stalled"] == ["PERP"] for _, r in out)
    perp = out[-1][1]["markets"][0]
    assert perp["status"] == "stalled" and perp["data_age_ms"] == 4750 - 1300
    assert out[-1][1]["status"] == "partial"
    # A stalled member's quotes stay visible but join no consolidated figure.
    assert out[-1][1]["consolidated"]["best_bid"]["symbols"] == ["SPOT"]
    # SPOT silent within the skew of PERP: not stalled.
    core2 = _core()
    core2.apply("SPOT", _snap(1000, 600000, 600010))
    core2.apply("PERP", _snap(1000, 600100, 600110))
    core2.apply("PERP", _delta(2900, 2, 600101))
    assert core2.advance(silent={"SPOT"}) == []


def test_a_down_member_is_not_waited_for() -> None:
    core = _core()
    core.apply("SPOT", _snap(1000, 600000, 600010))
    core.apply("PERP", _snap(1000, 600100, 600110))
    core.apply("PERP", Entry("status", 9_999 * MS, 0, StatusPayload("down", "gone")))
    core.apply("SPOT", _delta(2100, 2, 600001))
    out = core.advance()
    assert [t // MS for t, _ in out] == [1000, 1250, 1500, 1750, 2000]
    # The down status takes effect from PERP's last exchange time (1000) on.
    assert [r["markets"][0]["status"] for _, r in out] == ["down"] * 5
    assert out[0][1]["consolidated"]["best_bid"]["symbols"] == ["SPOT"]
    assert out[0][1]["basis_reference"] == "SPOT"
    assert out[0][1]["markets"][0]["basis_bps"] is None


def test_a_member_unbuildable_from_the_start_is_not_waited_for() -> None:
    core = _core()
    core.apply("PERP", Entry("status", 1 * MS, 0, StatusPayload("unbuildable", "no snapshot")))
    core.apply("SPOT", _snap(1000, 600000, 600010))
    core.apply("SPOT", _delta(1300, 2, 600001))
    out = core.advance()
    assert [t // MS for t, _ in out] == [1000, 1250]
    assert [r["markets"][0]["status"] for _, r in out] == ["no_data", "no_data"]


def test_members_of_the_registry() -> None:
    def reg(venue: str, market: str, raw: str, unit: str = "base") -> str:
        return json.dumps({"venue": venue, "market": market, "raw_symbol": raw, "size_unit": unit})

    registry = {
        "BTCUSDT": reg("BINANCE", "usdm", "BTCUSDT"),
        "BTCUSDPERP": reg("BINANCE", "coinm", "BTCUSD_PERP", "contracts"),
        "ETHUSDPERP": reg("BINANCE", "coinm", "ETHUSD_PERP", "contracts"),
        "ETHUSDT": reg("BINANCE", "usdm", "ETHUSDT"),
        "XRPUSDT": reg("BYBIT", "linear", "XRPUSDT"),
        "BAD": "not json",
    }
    got = assets.assets(registry)  # type: ignore[arg-type]
    assert sorted(got) == ["BTC", "ETH"]
    assert [m.symbol for m in got["BTC"]] == ["BTCUSDPERP", "BTCUSDT"]
    assert got["BTC"][0].contract_usd == 100 and got["ETH"][0].contract_usd == 10
    assert got["BTC"][1].contract_usd == 0 and got["BTC"][1].kind == "perp"
    assert assets.split_currencies("BTCUSD_240927") == ("BTC", "USD")
    assert assets.kind_of("coinm", "BTCUSD_240927") == "future"
