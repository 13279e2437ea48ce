"""The report model, schema 1.2 (contract: shared/schema/report-1.2.json).

Calc workers build ``Report`` objects; the publisher stamps ``updatedAt`` and stores
the JSON. Unknown values are ``None`` (JSON null), never a placeholder number.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache, lru_cache
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION: Literal["1.2"] = "1.2"

Venue = Literal["BINANCE", "BYBIT"]
IngestionStatus = Literal["ok", "degraded", "down"]
Severity = Literal["low", "medium", "high"]


class _Model(BaseModel):
    # Extra, documented fields are allowed (the schema permits them; the 1.2 flow and
    # volatility fields travel as such extras).
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Writer(_Model):
    nodeId: str = Field(min_length=1)
    writerToken: int = Field(ge=1)


class Ingestion(_Model):
    status: IngestionStatus
    last_update: str | None


class Level(_Model):
    price: float
    qty: float


class Depth(_Model):
    bids: list[Level]
    asks: list[Level]
    total_bid_qty: float
    total_ask_qty: float
    imbalance: float | None


class Flow(_Model):
    orders_per_sec: float
    net_flow: float


class Wall(_Model):
    side: Literal["bid", "ask"]
    price: float
    qty: float
    severity: Severity


class Vacuum(_Model):
    from_: float = Field(alias="from")
    to: float
    severity: Severity


class VolumeProfile(_Model):
    POC: float
    VAH: float
    VAL: float
    window_sec: float
    trade_count: int = Field(ge=10)


class Liquidity(_Model):
    walls: list[Wall] = Field(default_factory=list)
    vacuums: list[Vacuum] = Field(default_factory=list)
    volume_profile: VolumeProfile | None = None


class Anomaly(_Model):
    type: Literal["spoofing", "iceberg", "flash_crash_risk"]
    severity: Severity
    note: str


class HealthComponent(_Model):
    metric: str
    score: int = Field(ge=0, le=100)


class Health(_Model):
    score: int = Field(ge=0, le=100)
    components: list[HealthComponent]


class Report(_Model):
    schemaVersion: Literal["1.2"] = SCHEMA_VERSION
    writer: Writer
    #: Wall-clock ms of the write; the calc sends 0 and the publisher stamps it.
    updatedAt: int = 0
    symbol: str
    venue: Venue
    generated_at: str
    data_age_ms: int = Field(ge=0)
    ingestion: Ingestion
    last_price: float | None
    change_24h_pct: float | None
    high_24h: float | None
    low_24h: float | None
    volume_24h: float | None
    best_bid: Level | None
    best_ask: Level | None
    spread_bps: float | None
    mid_price: float | None
    micro_price: float | None
    depth: Depth
    flow: Flow
    liquidity: Liquidity | None = None
    anomalies: list[Anomaly] | None = None
    health: Health

    def to_json_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (aliases applied, absent optional blocks omitted)."""
        data = self.model_dump(mode="json", by_alias=True)
        for optional in ("liquidity", "anomalies"):
            if data.get(optional) is None:
                data.pop(optional, None)
        liquidity = data.get("liquidity")
        if liquidity is not None and liquidity.get("volume_profile") is None:
            liquidity.pop("volume_profile", None)
        return data


def iso_utc_from_ns(ns: int) -> str:
    """ISO-8601 UTC with millisecond precision and a ``Z`` suffix."""
    seconds, rest = divmod(ns, 1_000_000_000)
    if rest % 1_000_000 == 0:
        # A whole millisecond (every cycle boundary, every exchange timestamp): the
        # date part is the second's, memoised; the same text as the general path.
        return _iso_second(seconds) + f"{rest // 1_000_000:03d}Z"
    dt = datetime.fromtimestamp(ns / 1e9, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


@lru_cache(maxsize=4096)
def _iso_second(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.")


def ns_from_iso_utc(text: str) -> int:
    """Inverse of ``iso_utc_from_ns`` (millisecond precision)."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return round(dt.timestamp() * 1000) * 1_000_000


@cache
def report_schema() -> dict[str, Any]:
    """The JSON Schema of report 1.2, loaded from the package."""
    text = resources.files("shared").joinpath("schema/report-1.2.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _validator() -> Any:
    import jsonschema

    return jsonschema.Draft202012Validator(report_schema())


def schema_errors(report: dict[str, Any]) -> list[str]:
    """Every way ``report`` violates the schema (empty when valid)."""
    return [
        f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in _validator().iter_errors(report)
    ]
