"""``context8 report-at``: the report the fleet would publish at an exchange time, offline.

Recorded files go through ingest's own code (``services.ingest.offline``: the
NautilusTrader venue schemas, the ingest sequencer and the Actor's wire entries) and
then through calc's own analytics (``services.calc.analytics.report_at``): no Redis,
no network. One JSON line per symbol of the files (sorted by symbol): the report of
the last fast cycle at or before ``--at``; then one line per asset with two or more
markets among the files (``asset:BTC``, docs/analytics.md "Asset report"): its report of
the last boundary at or before ``--at`` (none before its first boundary).

* ``writer`` = ``{"nodeId": "report-at", "writerToken": 1}``.
* ``updatedAt`` = 0: the report was never published (the publisher stamps its write's
  wall-clock time there), and 0 keeps the output a pure function of files and ``--at``.
* Settings that change reports are read from the same environment variables as the
  services: ``C8_CALC_FAST_CYCLE_MS`` / ``C8_CALC_SLOW_CYCLE_MS`` and
  ``C8_INGEST_CHECKPOINT_INTERVAL_S`` / ``_SNAPSHOT_WAIT_S`` / ``_PRECISIONS`` /
  ``_SYMBOL_MAP``.
* After a symbol's data ends the clock is carried to ``--at`` as the calc worker's stall
  watchdog would, so the report shows how old the data is (``data_age_ms``, status).

Errors (exit 2, one message on stderr, nothing on stdout): an unparseable ``--at``, a
missing file, a path whose venue/market/symbol cannot be inferred from the kit layout
``<venue>-<market>/<SYMBOL>/<file>``, a time before the first cycle of any symbol.
"""

from __future__ import annotations

import heapq
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from shared.errors import ConfigError
from shared.report import iso_utc_from_ns

NODE_ID = "report-at"
TOKEN = 1
EXIT_USAGE = 2


class ReportAtError(Exception):
    """A user error: printed on stderr, exit code 2."""


def parse_at(text: str) -> int:
    """ISO-8601 time -> ns since the epoch (UTC).

    Accepts ``Z`` or an explicit offset; a time without an offset is taken as UTC.
    """
    raw = text.strip()
    try:
        dt = datetime.fromisoformat(raw.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError as exc:
        raise ReportAtError(
            f"--at {text!r} is not an ISO-8601 time (e.g. 2024-07-19T00:05:00.250Z)"
        ) from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


@dataclass(frozen=True)
class SymbolReport:
    #: The symbol, or the asset unit (``asset:BTC``) of an asset report.
    symbol: str
    cycle_ns: int
    report: dict[str, Any]


def reports_at(paths: list[Path], t_ns: int) -> list[SymbolReport]:
    """Every symbol's report at ``t_ns`` (sorted by symbol), or ``ReportAtError``."""
    # Imported here: the Nautilus import takes seconds, argument errors should not.
    from services.calc.analytics import report_at
    from services.calc.settings import Settings as CalcSettings
    from services.calc.worker import core_params
    from services.ingest.offline import IngestOptions, offline_feeds
    from services.ingest.settings import Settings as IngestSettings

    try:
        params = core_params(CalcSettings())
        options = IngestOptions.from_settings(IngestSettings())
        replays = offline_feeds(paths, options)
    except (ConfigError, ValidationError, ValueError) as exc:
        raise ReportAtError(str(exc)) from exc
    out: list[SymbolReport] = []
    too_early: list[str] = []
    for fr in replays:
        found = report_at(
            fr.entries(),
            fr.feed.symbol,
            fr.feed.venue,
            t_ns,
            params,
            node_id=NODE_ID,
            token=TOKEN,
            size_unit=fr.size_unit,
        )
        if found is None:
            too_early.append(f"{fr.feed.symbol} (first cycle {_first_cycle(fr, params)})")
            continue
        cycle_ns, report = found
        out.append(SymbolReport(fr.feed.symbol, cycle_ns, report))
    if too_early:
        raise ReportAtError(
            f"--at {iso_utc_from_ns(t_ns)} is before any data of: " + ", ".join(too_early)
        )
    return out + asset_reports_at(replays, t_ns)


def asset_reports_at(replays: list[Any], t_ns: int) -> list[SymbolReport]:
    """The asset report (``asset:<BASE>``, bases with >= 2 markets among the files) of the
    last boundary at or before ``t_ns``, as the asset's calc owner would publish it.

    Every member's entries are applied, then every member counts as silent (its data has
    ended), so boundaries up to the newest member event time are released and a member
    that ended early shows as stalled, as it would live.
    """
    from services.calc.analytics import with_writer
    from services.calc.analytics.asset import AssetCore
    from services.calc.asset_runner import asset_params
    from services.calc.settings import Settings as CalcSettings
    from shared import assets, keys

    registry: dict[str, bytes | str] = {
        fr.feed.symbol: json.dumps(fr.feed.registration()) for fr in replays
    }
    settings = CalcSettings()
    params = asset_params(settings.calc_fast_cycle_ms, settings.calc_asset_max_skew_ms)
    out: list[SymbolReport] = []
    for asset, members in assets.assets(registry).items():
        core = AssetCore(asset, members, params)
        wanted = {m.symbol for m in members}
        # The members' entries merged by event time (each member's in stream order), the
        # watermark advanced as they come, as the owner reads them live: releases stay small.
        merged = heapq.merge(
            *(_tagged(fr.feed.symbol, fr.entries()) for fr in replays if fr.feed.symbol in wanted),
            key=lambda item: item[0],
        )
        last: tuple[int, dict[str, Any]] | None = None
        done = False
        for n, (_, symbol, entry) in enumerate(merged, start=1):
            core.apply(symbol, entry)
            if n % ASSET_ADVANCE_EVERY == 0:
                last, done = _latest(core.advance(), t_ns, last)
                if done:
                    break
        while not done:  # the data has ended: every member is silent from here
            released = core.advance(silent=wanted)
            if not released:
                break
            last, done = _latest(released, t_ns, last)
        if last is not None:
            t, report = last
            out.append(SymbolReport(keys.asset_unit(asset), t, with_writer(report, NODE_ID, TOKEN)))
    return out


def _tagged(symbol: str, entries: Iterable[Any]) -> Iterator[tuple[int, str, Any]]:
    for entry in entries:
        yield entry.event_ns, symbol, entry


#: Entries applied between two watermark advances in ``asset_reports_at``.
ASSET_ADVANCE_EVERY = 256


def _latest(
    released: list[tuple[int, dict[str, Any]]],
    t_ns: int,
    last: tuple[int, dict[str, Any]] | None,
) -> tuple[tuple[int, dict[str, Any]] | None, bool]:
    """The newest released report at or before ``t_ns`` so far; True once past it."""
    for t, report in released:
        if t > t_ns:
            return last, True
        last = (t, report)
    return last, False


def _first_cycle(fr: Any, params: Any) -> str:
    """ISO time of the symbol's first fast-cycle boundary (for the error message)."""
    for entry in fr.entries():
        if entry.kind != "status":
            period = params.fast_cycle_ns
            return iso_utc_from_ns(-(-entry.event_ns // period) * period)
    return "none: the files hold no market data"


def run(at: str, files: list[str], out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """The command: print one JSON line per symbol; 0, or 2 with a message on stderr."""
    try:
        t_ns = parse_at(at)
        paths = [Path(f) for f in files]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise ReportAtError("recorded file not found: " + ", ".join(missing))
        results = reports_at(paths, t_ns)
    except ReportAtError as exc:
        print(f"context8 report-at: error: {exc}", file=err)
        return EXIT_USAGE
    for result in results:
        out.write(json.dumps(result.report, separators=(",", ":")) + "\n")
    out.flush()
    return 0
