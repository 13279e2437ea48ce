"""The publisher's pure core: one stream entry in, a write to attempt or a rejection out.

No Redis here. ``prepare`` decodes a candidate (shared.candidate), parses its report
JSON, optionally validates it against schema 1.2 and that it names the same symbol and
writer as the candidate, and stamps ``updatedAt`` with the wall-clock write time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

import orjson

from services.publisher.schema_check import Check, compile_schema
from shared import keys
from shared.asset_report import asset_schema_errors
from shared.candidate import Candidate, decode_candidate
from shared.errors import WireFormatError
from shared.history import HISTORY_COARSE_MAXLEN, HISTORY_MAXLEN
from shared.report import SCHEMA_VERSION, report_schema, schema_errors

#: Why a candidate was not written (the ``reason`` label of rejected_total).
Reason = Literal["stale_token", "not_newer", "invalid", "malformed"]
REASONS: tuple[Reason, ...] = ("stale_token", "not_newer", "invalid", "malformed")

#: fenced_publish.lua status -> outcome.
ACCEPTED = 1
SCRIPT_REASONS: dict[int, Reason] = {0: "stale_token", -1: "not_newer"}


@dataclass(frozen=True)
class Ready:
    """A candidate to write: its stamped report JSON."""

    entry_id: bytes
    candidate: Candidate
    report_json: bytes
    #: The parsed report (the history row is projected from it: shared/history.py).
    report: dict[str, Any] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Rejected:
    """A candidate refused before any write; acked so it is never retried."""

    entry_id: bytes
    reason: Reason
    detail: str
    symbol: str | None = None


@cache
def _fast_check() -> Check:
    return compile_schema(report_schema())


def report_errors(report: dict[str, Any]) -> list[str]:
    """Schema 1.2 violations of ``report``: the fast check first, jsonschema for details.

    When the two disagree, jsonschema (the reference implementation) decides.
    """
    if _fast_check()(report):
        return []
    return schema_errors(report)


def _consistency_errors(report: dict[str, Any], c: Candidate) -> list[str]:
    errors = []
    asset = keys.unit_asset(c.symbol)
    if asset is not None:
        if report.get("asset") != asset:
            errors.append(f"asset {report.get('asset')!r} != candidate unit {c.symbol!r}")
    elif report.get("symbol") != c.symbol:
        errors.append(f"symbol {report.get('symbol')!r} != candidate symbol {c.symbol!r}")
    writer = report.get("writer")
    if isinstance(writer, dict):
        if writer.get("writerToken") != c.token:
            errors.append(f"writerToken {writer.get('writerToken')!r} != token {c.token}")
        if writer.get("nodeId") != c.node_id:
            errors.append(f"writer nodeId {writer.get('nodeId')!r} != node {c.node_id!r}")
    return errors


def prepare(
    entry_id: bytes, fields: dict[bytes, bytes] | None, *, validate: bool, now_ms: int
) -> Ready | Rejected:
    """Decode, check and stamp one candidate entry."""
    if not fields:
        return Rejected(entry_id, "malformed", "entry has no fields (deleted or empty)")
    try:
        candidate = decode_candidate(fields)
    except WireFormatError as exc:
        return Rejected(entry_id, "malformed", str(exc))
    try:
        report = orjson.loads(candidate.report_json)
    except orjson.JSONDecodeError as exc:
        return Rejected(entry_id, "malformed", f"report is not JSON: {exc}", candidate.symbol)
    if not isinstance(report, dict):
        return Rejected(entry_id, "malformed", "report JSON is not an object", candidate.symbol)
    report["updatedAt"] = now_ms
    if validate:
        # An asset unit's report (``asset:BTC``) has its own contract (asset-1.2.json).
        is_asset = keys.unit_asset(candidate.symbol) is not None
        schema = asset_schema_errors(report) if is_asset else report_errors(report)
        errors = schema + _consistency_errors(report, candidate)
        if errors:
            return Rejected(entry_id, "invalid", "; ".join(errors[:5]), candidate.symbol)
    return Ready(entry_id, candidate, stamped(candidate.report_json, now_ms, report), report)


#: How calc's report JSON starts (``updatedAt`` is the second key, 0 until published).
_HEAD = b'{"schemaVersion":"' + SCHEMA_VERSION.encode() + b'","updatedAt":0,'
_STAMPED_HEAD = b'{"schemaVersion":"' + SCHEMA_VERSION.encode() + b'","updatedAt":%d,'


def stamped(raw: bytes, now_ms: int, report: dict[str, Any]) -> bytes:
    """The report JSON with ``updatedAt`` = ``now_ms``: the candidate's own bytes with
    the value spliced in when they start as calc writes them (orjson, ``updatedAt`` 0),
    which is byte for byte what re-encoding ``report`` gives; else ``report`` encoded."""
    if raw.startswith(_HEAD):
        return _STAMPED_HEAD % now_ms + raw[len(_HEAD) :]
    return orjson.dumps(report)


def write_keys(symbol: str) -> list[str]:
    """The keys of one ``fenced_publish.lua`` call, all in ``symbol``'s slot: token, report,
    audit, 1 s history, 1 min history, update channel. ``symbol`` may be an asset unit
    (``asset:BTC``: ``c8:report:{asset:BTC}``...; its reports get no history rows)."""
    return [
        keys.unit_key(kind, symbol)
        for kind in ("token", "report", "audit", "hist", "hist1m", "updated")
    ]


def write_args(
    token: int,
    event_ms: int,
    node: str,
    report_json: bytes | str,
    write_ms: int,
    audit_maxlen: int,
    history_row: bytes = b"",
) -> list[Any]:
    """The arguments of one ``fenced_publish.lua`` call (``history_row`` b"": no row)."""
    return [
        token,
        event_ms,
        node,
        report_json,
        write_ms,
        audit_maxlen,
        history_row,
        HISTORY_MAXLEN,
        HISTORY_COARSE_MAXLEN,
    ]
