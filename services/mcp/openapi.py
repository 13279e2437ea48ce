"""The OpenAPI 3.1 document of the HTTP routes, built from the routes themselves.

Each JSON route is declared once (``http_api._route``) with an ``Endpoint`` beside its
handler: parameters and responses name the same schemas the MCP tools publish
(``services/mcp/schemas.py``, the report contract in ``shared/schema``), so the document
can never drift from what the routes serve. JSON Schema ``$defs`` of those schemas move to
``components/schemas`` (OpenAPI 3.1 is JSON Schema 2020-12, but a ``$ref`` resolves
against the OpenAPI document's root). Pure: no I/O.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

OPENAPI_PATH = "/openapi.json"

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "What went wrong, for a person or a model."},
        "suggestions": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Unknown symbol: the closest known symbols (at most 5).",
        },
        "known_count": {"type": "integer", "description": "Unknown symbol: how many are known."},
    },
}

HEALTH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["status", "redis", "reports", "served_at"],
    "properties": {
        "status": {
            "enum": ["ok", "degraded", "down"],
            "description": "ok: every known symbol is served ok; down: none is (or none is "
            "known); degraded: in between.",
        },
        "redis": {"const": "ok"},
        "reports": {
            "type": "object",
            "description": "How many symbols would be served with each status right now.",
            "required": ["ok", "degraded", "down", "no_report"],
            "properties": {
                k: {"type": "integer", "minimum": 0}
                for k in ("ok", "degraded", "down", "no_report")
            },
        },
        "served_at": {"type": "string"},
        "ready": {"type": "boolean", "description": "/readyz: at least one report is ok."},
    },
}


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # "path" or "query"
    description: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = False

    @classmethod
    def csv(
        cls, name: str, description: str, item: dict[str, Any], max_items: int | None = None
    ) -> Param:
        """A query parameter holding a comma-separated list (``form``, not exploded)."""
        schema: dict[str, Any] = {"type": "array", "items": item, "minItems": 1}
        if max_items is not None:
            schema["maxItems"] = max_items
        return cls(name, "query", description, schema)


@dataclass(frozen=True)
class Endpoint:
    """What the document says about one GET route."""

    summary: str
    #: status -> (description, component schema name or None for no body)
    responses: dict[int, tuple[str, str | None]]
    params: tuple[Param, ...] = ()
    description: str = ""
    media_type: str = "application/json"
    #: Response headers documented on every 2xx/304 answer (name -> description).
    headers: dict[str, str] = field(default_factory=dict)


def _lift_defs(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with its ``$defs`` moved into ``components`` and refs rewritten."""
    schema = copy.deepcopy(schema)
    schema.pop("$schema", None)
    schema.pop("$id", None)
    for name, sub in schema.pop("$defs", {}).items():
        components.setdefault(name, _rewrite_refs(sub))
    return _rewrite_refs(schema)


def _rewrite_refs(node: Any) -> Any:
    if isinstance(node, dict):
        out = {k: _rewrite_refs(v) for k, v in node.items()}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            out["$ref"] = "#/components/schemas/" + ref.removeprefix("#/$defs/")
        return out
    if isinstance(node, list):
        return [_rewrite_refs(v) for v in node]
    return node


def component(schema: dict[str, Any] | type[BaseModel]) -> dict[str, Any]:
    """A JSON schema (dict or pydantic model) ready for ``build_document``'s ``schemas``."""
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return schema.model_json_schema(ref_template="#/$defs/{model}")
    return schema


def build_document(
    endpoints: dict[str, Endpoint], schemas: dict[str, dict[str, Any]], version: str
) -> dict[str, Any]:
    """OpenAPI 3.1 for ``endpoints`` (path -> Endpoint), with ``schemas`` as components."""
    components: dict[str, Any] = {}
    for name, schema in schemas.items():
        components[name] = _lift_defs(schema, components)
    paths: dict[str, Any] = {}
    for path, ep in endpoints.items():
        responses: dict[str, Any] = {}
        for status, (text, schema_name) in sorted(ep.responses.items()):
            answer: dict[str, Any] = {"description": text}
            if schema_name is not None:
                media = ep.media_type if 200 <= status < 300 else "application/json"
                content: dict[str, Any] = {
                    "schema": {"$ref": f"#/components/schemas/{schema_name}"}
                }
                if media != "application/json":
                    content = {"schema": {"type": "string"}}
                answer["content"] = {media: content}
            if ep.headers and (200 <= status < 300 or status == 304):
                answer["headers"] = {
                    h: {"description": d, "schema": {"type": "string"}}
                    for h, d in ep.headers.items()
                }
            responses[str(status)] = answer
        operation: dict[str, Any] = {
            "operationId": path.strip("/").replace("/", "_").replace("{", "").replace("}", "")
            or "root",
            "summary": ep.summary,
            "responses": responses,
        }
        if ep.description:
            operation["description"] = ep.description
        if ep.params:
            operation["parameters"] = [
                {
                    "name": p.name,
                    "in": p.where,
                    "description": p.description,
                    "required": p.required or p.where == "path",
                    "schema": p.schema,
                    **(
                        {"style": "form", "explode": False}
                        if p.schema.get("type") == "array"
                        else {}
                    ),
                }
                for p in ep.params
            ]
        paths[path] = {"get": operation}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "context8 read API",
            "version": version,
            "description": "Fresh per-symbol market-microstructure reports over HTTP. The same "
            "data is served over MCP at /mcp (tools get_report, get_reports, list_symbols, ...).",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Required on every route but /healthz, /readyz and "
                    "/openapi.json once the server has credentials (C8_MCP_TOKENS, "
                    "C8_MCP_TOKENS_FILE or OAuth); a loopback server without them is open.",
                }
            },
        },
        # Open, or a bearer token: which one depends on the server's settings.
        "security": [{}, {"bearer": []}],
    }
