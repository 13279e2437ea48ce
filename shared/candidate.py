"""Report candidates: what a calc worker sends the publishers (``keys.candidates_of(symbol)``).

Fields of one entry: ``s`` symbol (or asset unit, ``asset:BTC``), ``t`` fencing token,
``n`` node id, ``e`` the report's event time (ms since epoch), ``r`` the report JSON
(``updatedAt`` = 0; the publisher stamps the wall-clock write time).
"""

from __future__ import annotations

import msgspec

from shared.errors import WireFormatError
from shared.keys import check_unit


class Candidate(msgspec.Struct, frozen=True):
    symbol: str
    token: int
    node_id: str
    event_ms: int
    report_json: bytes


def encode_candidate(c: Candidate) -> dict[bytes, bytes]:
    """Field map for ``XADD``."""
    return {
        b"s": c.symbol.encode(),
        b"t": str(c.token).encode(),
        b"n": c.node_id.encode(),
        b"e": str(c.event_ms).encode(),
        b"r": c.report_json,
    }


def decode_candidate(fields: dict[bytes, bytes]) -> Candidate:
    """Decode one entry; raise ``WireFormatError`` if it is malformed."""
    try:
        symbol = check_unit(fields[b"s"].decode())
        token = int(fields[b"t"])
        node_id = fields[b"n"].decode()
        event_ms = int(fields[b"e"])
        report_json = fields[b"r"]
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        raise WireFormatError(f"malformed candidate: {exc!r}") from exc
    if token < 1 or not node_id:
        raise WireFormatError("candidate needs a token >= 1 and a node id")
    return Candidate(symbol, token, node_id, event_ms, report_json)
