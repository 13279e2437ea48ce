"""Derivatives data in live mode over real sockets, end to end: venue emulator ->
NautilusTrader's Binance / Bybit clients in ingest -> Redis -> calc -> publisher.

No recording of the venues' derivatives streams exists: the emulator synthesises them
from the recorded frames in the venues' documented shapes (Binance USDⓈ-M
``<sym>@markPrice@1s``, ``<sym>@forceOrder`` and REST ``/fapi/v1/openInterest``; Bybit
linear ``tickers.<SYM>`` and ``allLiquidation.<SYM>``; context8/emulator/derivatives.py)
and lists what it served (``GET /_emulator/derivatives``). Every derivatives section the
calc worker emitted must equal what a plain recount of those served frames gives at the
report's event time; the published report carries the section and passes the schema.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from context8.emulator.process import EmulatorProcess
from context8.fleet import wait_until
from shared import keys
from shared.report import schema_errors
from tests.support.candidates import CandidateReader
from tests.support.live_ingest import LIVE_SYMBOLS, files_of, live_fleet

pytestmark = pytest.mark.timeout(300)

SYMBOLS = ["BTCUSDT", "XRPUSDT"]
SPEED = 3
#: Exchange time followed on Binance, from its first report with derivatives.
FOLLOW_S = 20
WINDOW_MS = 300_000


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{ms % 1000:03d}Z"
    )


def _ms(iso: str) -> int:
    return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


class Served:
    """What the emulator served for one symbol, read with plain json (no project code)."""

    def __init__(self, frames: list[dict[str, Any]]) -> None:
        #: (event ms, mark, index, funding, next funding ms, oi, oi value)
        self.marks: list[tuple[int, float, float, float, int, float | None, float | None]] = []
        #: (event ms, trigger frame ms, side, price, size)
        self.liqs: list[tuple[int, int, str, float, float]] = []
        #: (event ms, open interest) of the REST answers
        self.rest_oi: dict[int, float] = {}
        for f in frames:
            if f.get("rest") == "openInterest":
                self.rest_oi[f["time"]] = float(f["openInterest"])
            elif f.get("stream", "").endswith("@markPrice@1s"):
                d = f["data"]
                self.marks.append(
                    (d["E"], float(d["p"]), float(d["i"]), float(d["r"]), d["T"], None, None)
                )
            elif f.get("stream", "").endswith("@forceOrder"):
                d = f["data"]
                o = d["o"]
                side = "long" if o["S"] == "SELL" else "short"
                self.liqs.append((o["T"], d["E"], side, float(o["ap"]), float(o["z"])))
            elif f.get("topic", "").startswith("tickers."):
                d = f["data"]
                self.marks.append(
                    (
                        f["ts"],
                        float(d["markPrice"]),
                        float(d["indexPrice"]),
                        float(d["fundingRate"]),
                        int(d["nextFundingTime"]),
                        float(d["openInterest"]),
                        float(d["openInterestValue"]),
                    )
                )
            elif f.get("topic", "").startswith("allLiquidation."):
                for item in f["data"]:
                    side = "long" if item["S"] == "Buy" else "short"
                    self.liqs.append((item["T"], f["ts"], side, float(item["p"]), float(item["v"])))

    def check(self, t: int, d: dict[str, Any]) -> bool:
        """Assert the section at boundary ``t`` (ms); False if liquidations were not
        comparable there (a liquidation at or before ``t`` whose frame came after it)."""
        before = [m for m in self.marks if m[0] <= t]
        if not before:
            assert d["mark_price"] is None
        else:
            at, mark, index, funding, nft, oi, oi_value = max(before, key=lambda m: m[0])
            assert d["mark_price"] == {"value": mark, "at": _iso(at), "age_ms": t - at}
            assert d["index_price"] == {"value": index, "at": _iso(at), "age_ms": t - at}
            assert d["premium_bps"]["value"] == round((mark - index) / index * 10_000, 4)
            assert d["funding_rate"]["value"] == funding
            assert d["funding_rate"]["next_funding_time"] == _iso(nft)
            if oi is not None:  # Bybit: the tickers carry it
                assert d["open_interest"]["value"] == oi
                assert d["open_interest"]["value_quote"] == oi_value
                assert d["open_interest"]["at"] == _iso(at)
        if self.rest_oi and d["open_interest"] is not None:  # Binance: polled
            at = _ms(d["open_interest"]["at"])
            assert at <= t and d["open_interest"]["value"] == self.rest_oi[at]
        if any(when <= t < frame for when, frame, *_ in self.liqs):
            return False
        lq = d["liquidations_5m"]
        assert 0 <= lq["window_sec"] <= 300
        for side in ("long", "short"):
            inside = [
                (p, s)
                for when, _, sd, p, s in self.liqs
                if sd == side and t - WINDOW_MS < when <= t
            ]
            assert lq[side] == {
                "count": len(inside),
                "qty": math.fsum(s for _, s in inside),
                "notional": math.fsum(p * s for p, s in inside),
            }, (side, t)
        return True


def test_live_derivatives_equal_what_the_venue_served(tmp_path: Path) -> None:
    with EmulatorProcess(files_of(*SYMBOLS), speed=SPEED, start="manual") as emu:
        live: dict[str, dict[int, dict[str, Any]]] = {s: {} for s in SYMBOLS}
        # depth + trade + mark + liquidations per symbol (Bybit: orderbook, publicTrade,
        # tickers, allLiquidation)
        with live_fleet(
            emu, SYMBOLS, tmp_path / "fleet", streams=4, C8_INGEST_OPEN_INTEREST_POLL_S="1"
        ) as running:
            client = running.client
            reader = CandidateReader(client, SYMBOLS)

            def derived(sym: str) -> list[tuple[int, dict[str, Any]]]:
                return [
                    (t, r["derivatives"])
                    for t, r in sorted(live[sym].items())
                    if r.get("derivatives")
                ]

            def done() -> bool:
                for cand in reader.read():
                    live[cand.symbol].setdefault(cand.event_ms, json.loads(cand.report_json))
                btc, xrp = derived("BTCUSDT"), derived("XRPUSDT")
                return (
                    bool(btc)
                    and btc[-1][0] - btc[0][0] >= FOLLOW_S * 1000
                    and btc[-1][1]["open_interest"] is not None
                    and btc[-1][1]["liquidations_5m"]["long"]["count"]
                    + btc[-1][1]["liquidations_5m"]["short"]["count"]
                    > 0
                    and len(xrp) >= 15
                )

            assert wait_until(done, timeout=120, interval=0.0), {
                s: len(derived(s)) for s in SYMBOLS
            }
            published = {s: json.loads(client.hget(keys.report(s), "json")) for s in SYMBOLS}
            served = {s: Served(emu.derivatives(*LIVE_SYMBOLS[s].split(":"))) for s in SYMBOLS}
        assert all(code == 0 for code in running.codes.values()), running.codes
        stats = emu.stats()["markets"]
    compared = {}
    for sym in SYMBOLS:
        sections = derived(sym)
        checked = sum(served[sym].check(t, d) for t, d in sections)
        compared[sym] = (len(sections), checked)
        assert checked >= len(sections) * 3 // 4, (sym, compared[sym])
        assert published[sym].get("derivatives") is not None, sym
        assert schema_errors(published[sym]) == []
        for t, _ in sections[::5]:
            assert schema_errors(live[sym][t]) == [], (sym, t)
    # Something of every kind was served and reached the reports.
    btc = served["BTCUSDT"]
    assert btc.marks and btc.liqs and btc.rest_oi
    xrp_last = derived("XRPUSDT")[-1][1]["liquidations_5m"]
    assert xrp_last["long"]["count"] > 0 and xrp_last["short"]["count"] > 0
    # The open interest polls were spent from the REST weight budget, within the limits.
    usdm = stats["binance-usdm"]
    assert usdm["violations"] == {} and stats["bybit-linear"]["violations"] == {}
    assert sum(usdm["rest_requests"].values()) >= len(btc.rest_oi) + 1  # + the depth snapshot
    assert usdm["weight_per_minute_max"] <= usdm["limits"]["weight_per_minute"] / 2
    print(f"derivatives sections (emitted, liquidations comparable): {compared}")
