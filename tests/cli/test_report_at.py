"""``context8 report-at`` as a subprocess, on real recorded data.

Top of book is checked against the exchange's own recorded bookTicker
(tests/support/binance_truth.py, a plain json reading of the files) at a time where a
bookTicker is comparable; every line must pass schema 1.2.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from context8.report_at import parse_at, run
from shared.asset_report import asset_schema_errors
from shared.report import iso_utc_from_ns, schema_errors
from tests.calc.calc_kit import plain_states_at
from tests.conftest import DATA
from tests.support.binance_truth import Truth, read_truth

pytestmark = pytest.mark.timeout(240)

REPO = Path(__file__).resolve().parents[2]
MS = 1_000_000

DEMO = {
    "BTCUSDT": sorted((DATA / "binance-usdm/BTCUSDT").glob("*.gz")),
    "ETHUSDT": sorted((DATA / "binance-usdm/ETHUSDT").glob("*.gz")),
}
#: Two venues' markets of the 2024-08-08/09 kit session in one invocation.
KIT = {
    "BTCUSDPERP": sorted((DATA / "binance-coinm/BTCUSD_PERP").glob("*.gz")),
    "BTCUSDT": [
        DATA / "binance-spot/BTCUSDT/btcusdt_20240808.gz",
    ],
}
BYBIT = DATA / "bybit-linear/XRPUSDT/2024-12-01_XRPUSDT_ob500.data.zip"


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "context8", "report-at", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=180)
    return proc.returncode, out, err


def _comparable_time(truths: dict[str, Truth], start_ms: int) -> int:
    """The first 250 ms boundary at or after ``start_ms`` comparable for every symbol."""
    t = start_ms
    while any(truth.comparable_ticker(t) is None for truth in truths.values()):
        t += 250
    return t


def _symbol_lines(out: str) -> list[dict[str, Any]]:
    return [r for r in map(json.loads, out.splitlines()) if "symbol" in r]


def _check_lines(out: str, truths: dict[str, Truth], t_ms: int, venue: str) -> None:
    reports = _symbol_lines(out)
    assert [r["symbol"] for r in reports] == sorted(truths)
    for report in reports:
        sym = report["symbol"]
        assert schema_errors(report) == [], (sym, schema_errors(report))
        assert report["generated_at"] == iso_utc_from_ns(t_ms * MS)
        assert report["venue"] == venue
        assert report["writer"] == {"nodeId": "report-at", "writerToken": 1}
        assert report["updatedAt"] == 0
        assert report["ingestion"]["status"] == "ok", report["ingestion"]
        truth = truths[sym].comparable_ticker(t_ms)
        assert truth is not None
        assert report["best_bid"] == {"price": truth.bid, "qty": truth.bid_qty}, sym
        assert report["best_ask"] == {"price": truth.ask, "qty": truth.ask_qty}, sym


def _check_flow(report: dict[str, Any], files: list[Path], t_ms: int) -> int:
    """Schema 1.2 flow fields vs plain sums over the recorded trade lines (json, floats)
    as of ``t_ms`` (the entries before the first one later than it). Returns the checks."""
    (st,) = plain_states_at(files, [t_ms]).values()
    flow = report["flow"]

    def last(w_ms: int) -> list[tuple[int, float, float, bool, bool]]:
        return [tr for tr in st.trades if t_ms - w_ms < tr[0] <= t_ms and not tr[4]]

    m30, m5, s30 = last(1_800_000), last(300_000), last(30_000)
    assert flow["cvd_30m"] == pytest.approx(sum(q if b else -q for _, _, q, b, _ in m30), abs=1e-9)
    for key, trades in (("vwap_5m", m5), ("vwap_30m", m30)):
        vwap = sum(p * q for _, p, q, _, _ in trades) / sum(q for _, _, q, _, _ in trades)
        assert flow[key] == pytest.approx(vwap, rel=1e-10), key
    buys = sum(q for _, _, q, b, _ in s30 if b) / sum(q for _, _, q, _, _ in s30)
    assert flow["aggressor_buy_ratio_30s"] == pytest.approx(buys, abs=1e-8)
    top = sorted(m5, key=lambda tr: (round(tr[1] * tr[2], 6), tr[0]), reverse=True)[:5]
    got = [(x["price"], x["qty"]) for x in flow["large_trades_5m"]]
    if report["symbol"] == "BTCUSDPERP":  # inverse: ranked by contracts
        top = sorted(m5, key=lambda tr: (tr[2], tr[0]), reverse=True)[:5]
    assert got == [(p, q) for _, p, q, _, _ in top]
    assert st.first_ms is not None
    assert flow["vwap_5m_window_sec"] == min(300, (t_ms - st.first_ms) / 1000)
    assert report["volatility"]["rv_5m_bps"] >= 0
    return 5


def test_report_at_matches_recorded_bookticker() -> None:
    """Bundled data (two symbols) and the kit's COIN-M + spot session, run side by side."""
    demo_truth = {sym: read_truth(files) for sym, files in DEMO.items()}
    kit_truth = {sym: read_truth(files) for sym, files in KIT.items()}
    # 2024-07-19T00:03:10Z and 2024-08-08T23:58:20Z, moved to a comparable boundary.
    demo_ms = _comparable_time(demo_truth, 1_721_347_390_000)
    kit_ms = _comparable_time(kit_truth, 1_723_161_500_000)
    demo = _start(
        "--at", iso_utc_from_ns(demo_ms * MS), *(str(p) for f in DEMO.values() for p in f)
    )
    kit = _start("--at", iso_utc_from_ns(kit_ms * MS), *(str(p) for f in KIT.values() for p in f))
    for proc, truths, t_ms in ((demo, demo_truth, demo_ms), (kit, kit_truth, kit_ms)):
        code, out, err = _finish(proc)
        assert code == 0, err
        _check_lines(out, truths, t_ms, "BINANCE")
        files = DEMO if proc is demo else KIT
        checked = sum(
            _check_flow(report, files[report["symbol"]], t_ms) for report in _symbol_lines(out)
        )
        assert checked == 5 * len(files)
        assets = [r for r in map(json.loads, out.splitlines()) if "asset" in r]
        if proc is demo:
            assert assets == []  # BTC and ETH: one market each, no asset report
        else:
            (asset,) = assets
            _check_asset(asset, truths, t_ms)


def _check_asset(asset: dict[str, Any], truths: dict[str, Truth], t_ms: int) -> None:
    """The asset line of spot BTCUSDT + COIN-M BTCUSD_PERP vs the exchange's bookTickers."""
    assert asset_schema_errors(asset) == [], asset_schema_errors(asset)
    assert asset["asset"] == "BTC" and asset["generated_at"] == iso_utc_from_ns(t_ms * MS)
    assert asset["writer"] == {"nodeId": "report-at", "writerToken": 1}
    markets = {m["symbol"]: m for m in asset["markets"]}
    assert set(markets) == set(truths)
    mids = {}
    for sym, market in markets.items():
        truth = truths[sym].comparable_ticker(t_ms)
        assert truth is not None and market["status"] == "ok"
        # COIN-M sizes are contracts of 100 USD: base units = contracts x 100 / price.
        to_base = (lambda q, p: q * 100 / p) if sym == "BTCUSDPERP" else (lambda q, p: q)
        assert market["best_bid"]["price"] == truth.bid
        assert market["best_ask"]["price"] == truth.ask
        assert market["best_bid"]["qty"] == pytest.approx(to_base(truth.bid_qty, truth.bid))
        assert market["best_ask"]["qty"] == pytest.approx(to_base(truth.ask_qty, truth.ask))
        mids[sym] = (truth.bid + truth.ask) / 2
        assert market["mid"] == pytest.approx(mids[sym], rel=1e-12)
    basis = (mids["BTCUSDPERP"] - mids["BTCUSDT"]) / mids["BTCUSDT"] * 1e4
    assert markets["BTCUSDPERP"]["basis_bps"] == pytest.approx(basis, abs=1e-4)
    best_bid = max(truths[s].comparable_ticker(t_ms).bid for s in truths)  # type: ignore[union-attr]
    assert asset["consolidated"]["best_bid"]["price"] == best_bid


def test_errors_exit_2_with_a_message(tmp_path: Path) -> None:
    btc = str(DEMO["BTCUSDT"][0])
    stray = tmp_path / "somewhere" / "btcusdt_20240718.gz"  # not <venue>-<market>/<SYM>/
    stray.parent.mkdir()
    stray.write_bytes(DEMO["BTCUSDT"][0].read_bytes())
    cases = {
        "unparseable --at": (("--at", "yesterday noon", btc), "not an ISO-8601 time"),
        "missing file": (
            ("--at", "2024-07-19T00:00:00Z", str(tmp_path / "nope.gz")),
            "recorded file not found",
        ),
        "layout": (
            ("--at", "2024-07-19T00:00:00Z", str(stray)),
            "cannot infer venue/market/symbol",
        ),
        # Bybit data begins 2024-12-01: before any of it (the Binance file is fine).
        "before any data": (
            ("--at", "2024-07-19T00:00:00Z", btc, str(BYBIT)),
            "before any data of: XRPUSDT",
        ),
    }
    procs = {name: _start(*args) for name, (args, _) in cases.items()}
    for name, proc in procs.items():
        code, out, err = _finish(proc)
        assert code == 2, (name, code, err)
        assert out == "", name
        assert cases[name][1] in err, (name, err)
        assert err.startswith("context8 report-at: error:"), (name, err)


def test_missing_at_is_a_usage_error() -> None:
    code, _out, err = _finish(_start(str(DEMO["BTCUSDT"][0])))
    assert code == 2 and "--at" in err


def test_after_the_data_ends_the_report_shows_its_age() -> None:
    """In-process (same function the command runs): Bybit, within and after its 4.8 s."""
    out, err = io.StringIO(), io.StringIO()
    assert run("2024-12-01T00:00:04Z", [str(BYBIT)], out, err) == 0, err.getvalue()
    during = json.loads(out.getvalue())
    assert schema_errors(during) == []
    assert during["symbol"] == "XRPUSDT" and during["venue"] == "BYBIT"
    assert during["ingestion"]["status"] == "ok" and during["data_age_ms"] < 1000
    bid, ask = during["best_bid"]["price"], during["best_ask"]["price"]
    assert 0 < bid < ask

    out = io.StringIO()
    assert run("2024-12-01T00:01:00Z", [str(BYBIT)], out, err) == 0, err.getvalue()
    after = json.loads(out.getvalue())
    assert schema_errors(after) == []
    assert after["generated_at"] == "2024-12-01T00:01:00.000Z"
    # The last data is at 00:00:05.490: 54.5 s old, the feed ended.
    assert after["data_age_ms"] == 60_000 - 5_490
    assert after["ingestion"]["status"] == "down" and after["ingestion"]["feed"] == "down"


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("2024-07-19T00:05:00Z", "2024-07-19T00:05:00.000Z"),
        ("2024-07-19T00:05:00.250+00:00", "2024-07-19T00:05:00.250Z"),
        ("2024-07-19T02:05:00+02:00", "2024-07-19T00:05:00.000Z"),
        ("2024-07-19T00:05:00", "2024-07-19T00:05:00.000Z"),  # no offset: UTC
    ],
)
def test_parse_at(text: str, iso: str) -> None:
    assert iso_utc_from_ns(parse_at(text)) == iso
