"""Asset reports over the read API: ``get_asset`` / ``list_assets``, ``GET /v1/assets[/{asset}]``.

An asset report (``c8:report:{asset:BTC}``, written by the publisher like a symbol report;
contract: shared/schema/asset-1.2.json) joins one base currency's books on every market
(docs/analytics.md, "Asset report"). Served like reports: freshness is recomputed at read
time (``serve_asset``, pure). Assets are known from the symbol registry (a base with at
least two markets, ``shared.assets``) and from the published asset report keys.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

import orjson

from services.mcp.errors import CorruptReportError
from services.mcp.freshness import FreshnessPolicy, worse, write_age_ms, write_age_status
from services.mcp.service import MAX_SYMBOL_INPUT, ReportService, wall_ms
from shared import assets, keys
from shared.asset_report import asset_schema
from shared.errors import MAX_SUGGESTIONS, InvalidSymbolError, UnknownSymbolError, suggest
from shared.report import iso_utc_from_ns

#: SCAN pattern of the published asset reports: ``c8:report:{asset:*}``.
ASSET_KEY_HEAD, _TAIL = keys.asset_report("XYZ").split("XYZ")
ASSET_KEY_PATTERN = f"{ASSET_KEY_HEAD}*{_TAIL}"
#: The stored status as a freshness status.
_STATUS_FRESHNESS = {"ok": "ok", "partial": "degraded", "down": "down"}

ASSET_JSON_SCHEMA: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": 26,
    "pattern": "^([Aa][Ss][Ss][Ee][Tt]:)?[A-Za-z0-9]{1,20}$",
    "examples": ["BTC"],
}


class UnknownAssetError(UnknownSymbolError):
    """A valid asset name with no asset report (the message names close matches)."""

    def __init__(self, asset: str, known: list[str], published: bool = False) -> None:
        super().__init__(asset, known)
        self.suggestions = suggest(asset, known)[:MAX_SUGGESTIONS]
        if published:
            text = (
                f"no report for asset {asset!r} yet: its markets are registered but no asset "
                "report has been published (service starting, or calc/publisher not running)"
            )
        elif not known:
            text = f"unknown asset {asset!r}; no assets are known yet"
        else:
            head = f"did you mean {', '.join(self.suggestions)}? " if self.suggestions else ""
            text = (
                f"unknown asset {asset!r}; {head}{len(known)} assets are known "
                "(list_assets or GET /v1/assets lists them)"
            )
        self.args = (text,)


def normalize_asset(raw: object) -> str:
    """Case-insensitive asset input: ' btc ', 'asset:BTC' -> 'BTC'; InvalidSymbolError if
    not 1-20 ASCII letters/digits (ASCII checked before upper-casing, as for symbols)."""
    text = raw.strip() if isinstance(raw, str) else None
    if text is not None and text.isascii():
        upper = text.upper()
        if upper.startswith("ASSET:"):
            upper = upper[len("ASSET:") :]
        try:
            return keys.check_asset(upper)
        except InvalidSymbolError:
            pass
    shown = repr(raw[:MAX_SYMBOL_INPUT]) if isinstance(raw, str) else type(raw).__name__
    raise InvalidSymbolError(
        f"invalid asset {shown}: expected 1-20 ASCII letters A-Z and digits 0-9 "
        "(case-insensitive), e.g. 'BTC'"
    )


def serve_asset(
    report: dict[str, Any], write_ms: int | None, now_ms: int, policy: FreshnessPolicy
) -> dict[str, Any]:
    """A copy of a stored asset report as served at ``now_ms``: every ``data_age_ms`` (the
    report's and each market's) grows by the time since the write; ``freshness`` is the
    worse of the report's status (ok -> ok, partial -> degraded, down -> down) and the
    write-age status; plus ``served_at`` and ``report_write_age_ms``."""
    age = write_age_ms(write_ms, now_ms)
    served = dict(report)

    def aged(value: Any) -> Any:
        return value + (age or 0) if isinstance(value, int) and value >= 0 else value

    served["data_age_ms"] = aged(report.get("data_age_ms"))
    markets = report.get("markets")
    if isinstance(markets, list):
        served["markets"] = [
            {**m, "data_age_ms": aged(m.get("data_age_ms"))} if isinstance(m, dict) else m
            for m in markets
        ]
    stored = _STATUS_FRESHNESS.get(str(report.get("status")), "down")
    served["freshness"] = worse(stored, write_age_status(age, policy))
    served["served_at"] = iso_utc_from_ns(now_ms * 1_000_000)
    served["report_write_age_ms"] = age
    return served


SERVED_ASSET_FIELDS: dict[str, dict[str, Any]] = {
    "freshness": {
        "enum": ["ok", "degraded", "down"],
        "description": "How far to trust the report now: ok (every market ok, rewritten "
        "within {stale_after_ms} ms); degraded (some market not ok, or not rewritten for "
        "more than {stale_after_ms} ms); down (no usable market, or not rewritten for more "
        "than {down_after_ms} ms).",
    },
    "served_at": {"$ref": "#/$defs/isoUtc", "description": "ISO-8601 UTC time of this answer."},
    "report_write_age_ms": {
        "type": ["integer", "null"],
        "minimum": 0,
        "description": "ms since the publisher wrote this report (null: unknown, served down).",
    },
}


@cache
def _served_schema(stale_after_ms: int, down_after_ms: int) -> dict[str, Any]:
    schema = copy.deepcopy(asset_schema())
    schema.pop("$id", None)
    schema["title"] = "context8 asset report (served)"
    extra = copy.deepcopy(SERVED_ASSET_FIELDS)
    extra["freshness"]["description"] = extra["freshness"]["description"].format(
        stale_after_ms=stale_after_ms, down_after_ms=down_after_ms
    )
    schema["properties"].update(extra)
    schema["required"] = [*schema["required"], *extra]
    return schema


def served_asset_schema(stale_after_ms: int = 3000, down_after_ms: int = 15000) -> dict[str, Any]:
    """Output schema of get_asset: the contract schema + the read-time fields."""
    return copy.deepcopy(_served_schema(stale_after_ms, down_after_ms))


def asset_list_schema(stale_after_ms: int = 3000, down_after_ms: int = 15000) -> dict[str, Any]:
    """Output schema of list_assets."""
    freshness = copy.deepcopy(_served_schema(stale_after_ms, down_after_ms))["properties"][
        "freshness"
    ]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "context8 assets",
        "type": "object",
        "required": ["served_at", "assets"],
        "properties": {
            "served_at": {"type": "string"},
            "assets": {
                "type": "array",
                "description": "Every known asset, sorted.",
                "items": {
                    "type": "object",
                    "required": ["asset", "members", "freshness", "generated_at"],
                    "properties": {
                        "asset": {"type": "string", "pattern": "^[A-Z0-9]{1,20}$"},
                        "members": {
                            "type": "array",
                            "items": {"type": "string"},
                            "description": "The registered market symbols of the asset.",
                        },
                        "freshness": {
                            "anyOf": [freshness, {"const": "no_report"}],
                            "description": "As get_asset would serve it; no_report: "
                            "registered markets, no asset report yet.",
                        },
                        "generated_at": {
                            "type": ["string", "null"],
                            "description": "Event time of the report (null without one).",
                        },
                    },
                },
            },
        },
    }


class AssetReader:
    """get_asset / list_assets over the ReportService's store and freshness policy."""

    def __init__(self, service: ReportService) -> None:
        self.service = service

    async def _registered(self) -> dict[str, list[str]]:
        registered = await self.service.store.registered()
        raw = {s: orjson.dumps(info) for s, info in registered.items()}
        return {a: [m.symbol for m in ms] for a, ms in assets.assets(raw).items()}  # type: ignore[arg-type]

    async def _published(self) -> set[str]:
        found: set[str] = set()
        store = self.service.store
        with store.guard("listing asset reports"):
            async for key in store.redis.scan_iter(match=ASSET_KEY_PATTERN, count=1000):
                text = key.decode() if isinstance(key, bytes) else str(key)
                name = text[len(ASSET_KEY_HEAD) : len(text) - len(_TAIL)]
                try:
                    found.add(keys.check_asset(name))
                except InvalidSymbolError:
                    continue
        return found

    async def _read(self, asset: str) -> tuple[dict[str, Any], int | None] | None:
        store = self.service.store
        with store.guard(f"reading asset {asset}"):
            row = await store.redis.hmget(keys.asset_report(asset), ["json", "updated_at"])
        if row[0] is None:
            return None
        try:
            report = orjson.loads(row[0])
        except orjson.JSONDecodeError as exc:
            raise CorruptReportError(f"stored asset report {asset!r} is not valid JSON") from exc
        if not isinstance(report, dict):
            raise CorruptReportError(f"stored asset report {asset!r} is not a JSON object")
        try:
            write_ms: int | None = int(row[1]) if row[1] is not None else None
        except ValueError:
            write_ms = None
        return report, write_ms

    async def get_asset(self, raw_asset: object) -> dict[str, Any]:
        """The served asset report (raises InvalidSymbolError, UnknownAssetError,
        StoreUnavailableError, CorruptReportError)."""
        asset = normalize_asset(raw_asset)
        found = await self._read(asset)
        if found is None:
            registered = await self._registered()
            known = sorted(set(registered) | await self._published())
            raise UnknownAssetError(asset, known, published=asset in registered)
        report, write_ms = found
        return serve_asset(report, write_ms, wall_ms(), self.service.policy)

    async def list_assets(self) -> dict[str, Any]:
        """Every known asset with its members and how it would be served now."""
        registered = await self._registered()
        names = sorted(set(registered) | await self._published())
        now = wall_ms()
        rows = []
        for asset in names:
            found = await self._read(asset)
            served = serve_asset(*found, now, self.service.policy) if found else None
            members = registered.get(asset)
            if members is None and served is not None:
                markets = served.get("markets")
                members = [
                    str(m.get("symbol"))
                    for m in (markets if isinstance(markets, list) else [])
                    if isinstance(m, dict)
                ]
            rows.append(
                {
                    "asset": asset,
                    "members": members or [],
                    "freshness": served["freshness"] if served else "no_report",
                    "generated_at": served.get("generated_at") if served else None,
                }
            )
        return {"served_at": iso_utc_from_ns(now * 1_000_000), "assets": rows}
