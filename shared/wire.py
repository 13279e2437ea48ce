"""Wire format of market-data stream entries (version 1).

One Redis Stream per symbol (``shared.keys.stream``). Every entry has four fields:

=====  =====================================================================
field  meaning
=====  =====================================================================
``v``  wire version, ``1``
``k``  kind: ``snap`` | ``delta`` | ``trade`` | ``ticker`` | ``status``; live
       futures also ``mark`` | ``oi`` | ``liq`` (derivatives)
``et`` exchange event time, integer nanoseconds since the Unix epoch
``rt`` receive time (ingest's wall clock), integer nanoseconds
``p``  payload: a msgpack map, one schema per kind (the ``*Payload`` structs)
=====  =====================================================================

Prices and sizes are integers scaled by ``10**pp`` and ``10**sp`` (the instrument's
price and size precision, carried in every book/trade payload), so book levels are
exact dictionary keys and the encoding stays compact. A size of ``0`` in a delta
removes the level. Book sides are lists of ``[price, size]`` pairs; in snapshots they
are ordered best first. The derivative payloads (``mark``, ``oi``, ``liq``) carry the
venue's decimals as floats instead: mark and index prices need not be on the tick grid.

Sequence ids are the venue's own: ``u`` is the last update id covered by an entry,
``U`` the first, ``pu`` the update id the entry follows (Binance futures ``pu``;
Binance spot ``U - 1``; Bybit ``u - 1``), so a consumer can check ``pu == previous u``
by itself. A ``status`` entry with state ``resync`` tells consumers to drop their book
until the next ``snap``; ``unbuildable`` means no snapshot exists and no book can be
built. See docs/stream-contract.md for the full contract.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from shared.errors import WireFormatError

WIRE_VERSION = 1

Kind = Literal["snap", "delta", "trade", "ticker", "status", "mark", "oi", "liq"]
FeedState = Literal["ok", "degraded", "down", "resync", "unbuildable"]


class SnapPayload(msgspec.Struct, forbid_unknown_fields=False):
    """Full book: replaces everything the consumer held."""

    u: int
    pp: int
    sp: int
    b: list[tuple[int, int]]
    a: list[tuple[int, int]]
    #: ``venue`` for a venue snapshot, ``checkpoint`` for one ingest re-emits from its book.
    src: str = "venue"


class DeltaPayload(msgspec.Struct, forbid_unknown_fields=False):
    """Changed levels of one venue update (absolute sizes; 0 removes the level)."""

    U: int
    u: int
    pu: int
    pp: int
    sp: int
    b: list[tuple[int, int]]
    a: list[tuple[int, int]]


class TradePayload(msgspec.Struct, forbid_unknown_fields=False):
    """One trade. ``side`` is the aggressor: ``B`` taker bought, ``S`` taker sold."""

    id: str
    px: int
    sz: int
    pp: int
    sp: int
    side: Literal["B", "S", ""]
    #: True for a liquidation / insurance-fund fill (Binance futures ``X`` != MARKET).
    liq: bool = False


class TickerPayload(msgspec.Struct, forbid_unknown_fields=False):
    """The venue's rolling 24 h statistics (live mode, where the venue publishes them)."""

    last: float
    open: float
    high: float
    low: float
    volume: float
    change_pct: float


class StatusPayload(msgspec.Struct, forbid_unknown_fields=False):
    """Feed state change. ``resync`` and ``unbuildable`` invalidate the consumer's book."""

    state: FeedState
    reason: str = ""


class MarkPayload(msgspec.Struct, forbid_unknown_fields=False):
    """Derivatives: the venue's mark price, index price and funding (live mode).

    Every field is optional (a Bybit ``tickers`` delta carries only what changed);
    prices are the venue's decimals as floats (a mark or index price need not be on the
    tick grid); ``funding`` is the rate per funding interval (0.0001 = 0.01 %);
    ``nft`` the next funding time, ms since the epoch.
    """

    mark: float | None = None
    index: float | None = None
    funding: float | None = None
    nft: int | None = None


class OpenInterestPayload(msgspec.Struct, forbid_unknown_fields=False):
    """Derivatives: open interest in contracts/base units (``oi``) and, where the venue
    gives it, its value in the quote currency (``value``; Bybit ``openInterestValue``)."""

    oi: float
    value: float | None = None


class LiquidationPayload(msgspec.Struct, forbid_unknown_fields=False):
    """Derivatives: one forced liquidation. ``side`` is the side of the position that
    was liquidated: ``long`` (closed by a forced sell: Binance ``S=SELL``, Bybit
    ``S=Buy``) or ``short`` (closed by a forced buy). ``px`` the price, ``sz`` the size
    (base units; COIN-M: contracts)."""

    side: Literal["long", "short"]
    px: float
    sz: float


Payload = (
    SnapPayload
    | DeltaPayload
    | TradePayload
    | TickerPayload
    | StatusPayload
    | MarkPayload
    | OpenInterestPayload
    | LiquidationPayload
)

_PAYLOAD_TYPES: dict[str, type[Payload]] = {
    "snap": SnapPayload,
    "delta": DeltaPayload,
    "trade": TradePayload,
    "ticker": TickerPayload,
    "status": StatusPayload,
    "mark": MarkPayload,
    "oi": OpenInterestPayload,
    "liq": LiquidationPayload,
}
_KIND_OF: dict[type, str] = {t: k for k, t in _PAYLOAD_TYPES.items()}
_KIND_BYTES: dict[type, bytes] = {t: k.encode() for t, k in _KIND_OF.items()}
_DECODERS = {k: msgspec.msgpack.Decoder(t) for k, t in _PAYLOAD_TYPES.items()}
_ENCODER = msgspec.msgpack.Encoder()
_VERSION_BYTES = str(WIRE_VERSION).encode()


class Entry(msgspec.Struct, frozen=True):
    """A decoded stream entry."""

    kind: str
    event_ns: int
    recv_ns: int
    payload: Payload


def encode(payload: Payload, event_ns: int, recv_ns: int) -> dict[bytes, bytes]:
    """Encode one entry as the field map for ``XADD``."""
    return {
        b"v": _VERSION_BYTES,
        b"k": _KIND_BYTES[type(payload)],
        b"et": b"%d" % event_ns,
        b"rt": b"%d" % recv_ns,
        b"p": _ENCODER.encode(payload),
    }


def decode(fields: dict[bytes, bytes]) -> Entry:
    """Decode the field map of one ``XREAD`` entry; raise ``WireFormatError`` if malformed."""
    try:
        version = fields[b"v"]
        kind = fields[b"k"].decode()
        event_ns = int(fields[b"et"])
        recv_ns = int(fields[b"rt"])
        raw = fields[b"p"]
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        raise WireFormatError(f"missing or malformed header field: {exc!r}") from exc
    if version != _VERSION_BYTES:
        raise WireFormatError(f"unsupported wire version {version!r}")
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise WireFormatError(f"unknown entry kind {kind!r}")
    try:
        payload = decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise WireFormatError(f"bad {kind} payload: {exc}") from exc
    return Entry(kind=kind, event_ns=event_ns, recv_ns=recv_ns, payload=payload)
