"""services.publisher.core.prepare: pure decoding, validation and stamping."""

from __future__ import annotations

import orjson

from services.publisher.core import Ready, Rejected, prepare
from shared.report import schema_errors
from tests.publisher.helpers import candidate_fields, report_dict

NOW = 1_721_300_000_123


def test_valid_candidate_is_stamped_and_passes_the_model() -> None:
    fields = candidate_fields("BTCUSDT", 3, "calc-1", 1_721_300_000_000)
    out = prepare(b"1-0", fields, validate=True, now_ms=NOW)
    assert isinstance(out, Ready)
    assert out.candidate.token == 3 and out.candidate.event_ms == 1_721_300_000_000
    stored = orjson.loads(out.report_json)
    assert stored["updatedAt"] == NOW
    expected = report_dict("BTCUSDT", 3, "calc-1", 1_721_300_000_000) | {"updatedAt": NOW}
    assert stored == expected
    assert schema_errors(stored) == []  # the stored JSON is a valid report


def test_malformed_entries() -> None:
    good = candidate_fields("BTCUSDT", 1, "calc-1", 1000)
    cases: dict[str, dict[bytes, bytes] | None] = {
        "no fields": None,
        "missing token": {k: v for k, v in good.items() if k != b"t"},
        "token not an int": good | {b"t": b"abc"},
        "token zero": good | {b"t": b"0"},
        "bad symbol": good | {b"s": b"btc-usdt"},
        "event not an int": good | {b"e": b"1.5e3"},
        "report not JSON": good | {b"r": b"{nope"},
        "report not an object": good | {b"r": b"[1, 2]"},
        "node not utf-8": good | {b"n": b"\xff\xfe"},
    }
    for name, fields in cases.items():
        out = prepare(b"9-0", fields, validate=True, now_ms=NOW)
        assert isinstance(out, Rejected), name
        assert out.reason == "malformed", name
        assert out.entry_id == b"9-0"


def test_schema_and_consistency_violations_are_invalid() -> None:
    base = report_dict("BTCUSDT", 2, "calc-1", 1000)
    cases = {
        "venue": base | {"venue": "FTX"},
        "missing depth": {k: v for k, v in base.items() if k != "depth"},
        "symbol mismatch": base | {"symbol": "ETHUSDT"},
        "token mismatch": base | {"writer": {"nodeId": "calc-1", "writerToken": 1}},
        "node mismatch": base | {"writer": {"nodeId": "calc-9", "writerToken": 2}},
    }
    for name, body in cases.items():
        fields = candidate_fields("BTCUSDT", 2, "calc-1", 1000, body)
        out = prepare(b"1-0", fields, validate=True, now_ms=NOW)
        assert isinstance(out, Rejected), name
        assert out.reason == "invalid", name
        assert out.symbol == "BTCUSDT"
        # With validation off the same candidate is written (only decoding is required).
        assert isinstance(prepare(b"1-0", fields, validate=False, now_ms=NOW), Ready), name


def test_the_stored_json_is_the_candidates_with_updated_at_spliced_in() -> None:
    """Calc's report JSON is stamped in place, never re-encoded: byte for byte what
    re-encoding the stamped report gives (real reports: floats, nulls, nesting)."""
    from services.calc.analytics import replay
    from shared.candidate import Candidate, encode_candidate
    from tests.calc.calc_kit import session_entries

    reports = list(replay(session_entries("usdm-btc")[:1500], "BTCUSDT", "BINANCE", token=7))
    assert len(reports) > 100
    for t_ns, report in reports[::7]:
        body = orjson.dumps(report)
        fields = encode_candidate(Candidate("BTCUSDT", 7, "replay", t_ns // 1_000_000, body))
        out = prepare(b"1-0", fields, validate=True, now_ms=NOW)
        assert isinstance(out, Ready)
        assert out.report_json == orjson.dumps(orjson.loads(body) | {"updatedAt": NOW})
        assert out.report_json.startswith(b'{"schemaVersion":"1.2","updatedAt":%d,' % NOW)


def test_a_report_written_otherwise_is_re_encoded() -> None:
    import json

    body = report_dict("BTCUSDT", 3, "calc-1", 1_721_300_000_000)
    fields = candidate_fields("BTCUSDT", 3, "calc-1", 1_721_300_000_000) | {
        b"r": json.dumps(body, indent=1).encode()  # spaces: not calc's encoding
    }
    out = prepare(b"1-0", fields, validate=True, now_ms=NOW)
    assert isinstance(out, Ready)
    assert out.report_json == orjson.dumps(body | {"updatedAt": NOW})
