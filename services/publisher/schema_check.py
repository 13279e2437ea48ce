"""A fast yes/no check of a report against the JSON Schema, compiled to closures.

``jsonschema`` needs ~1.5 ms per report (it re-creates a validator per sub-schema),
which would cap one publisher at a few hundred reports per second. This module compiles
the keyword subset report-1.2.json uses into plain Python closures (~50x faster) and
answers only valid / invalid; the publisher asks ``shared.report.schema_errors`` for
the detailed errors of the rare invalid report (and trusts it if the two disagree).

Compiling a schema that uses any keyword outside the subset raises ``ValueError``, so
a schema change the compiler does not understand fails at start-up, never silently.
Semantics follow JSON Schema 2020-12 as implemented by ``jsonschema``: booleans are not
numbers, 1.0 is an integer, ``pattern`` is an unanchored search, and the applicators
(properties, required, items, maxItems, minLength, minimum, ...) ignore instances of
other types.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Check = Callable[[Any], bool]

#: Keywords that carry no constraint.
_ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "title", "description", "$comment"})
_SUPPORTED = frozenset(
    {
        "type",
        "properties",
        "required",
        "items",
        "maxItems",
        "enum",
        "const",
        "pattern",
        "minLength",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "oneOf",
        "$ref",
    }
)


def _is_number(x: Any) -> bool:
    # JSON decoders yield exact int/float; bool is a subclass of int but not a number.
    return isinstance(x, int | float) and not isinstance(x, bool)


def _is_integer(x: Any) -> bool:
    if isinstance(x, bool):
        return False
    return isinstance(x, int) or (isinstance(x, float) and x.is_integer())


_TYPES: dict[str, Check] = {
    "object": lambda x: isinstance(x, dict),
    "array": lambda x: isinstance(x, list),
    "string": lambda x: isinstance(x, str),
    "number": _is_number,
    "integer": _is_integer,
    "boolean": lambda x: isinstance(x, bool),
    "null": lambda x: x is None,
}


def _json_equal(a: Any, b: Any) -> bool:
    """JSON equality: True != 1, 1 == 1.0, containers compared element-wise."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and bool(a == b)


def compile_schema(schema: Mapping[str, Any]) -> Check:
    """A function telling whether an instance is valid against ``schema``."""
    defs: Mapping[str, Any] = schema.get("$defs", {})
    return _compile(schema, defs, depth=0)


# --- combinators (plain loops: generator expressions cost more than the checks) ---------


def _all_of(checks: list[Check]) -> Check:
    if not checks:
        return lambda x: True
    if len(checks) == 1:
        return checks[0]

    def check(x: Any) -> bool:
        for c in checks:  # noqa: SIM110 -- a loop is cheaper than all(<genexpr>) here
            if not c(x):
                return False
        return True

    return check


def _type_check(names: list[str]) -> Check:
    if names == ["number"]:
        return _is_number
    tests = [_TYPES[n] for n in names]
    if len(tests) == 1:
        return tests[0]

    def check(x: Any) -> bool:
        for t in tests:  # noqa: SIM110 -- a loop is cheaper than any(<genexpr>) here
            if t(x):
                return True
        return False

    return check


def _bounds(lo: float | None, hi: float | None, xlo: float | None) -> Check:
    def check(x: Any) -> bool:
        if not _is_number(x):
            return True
        if lo is not None and x < lo:
            return False
        if hi is not None and x > hi:
            return False
        return not (xlo is not None and x <= xlo)

    return check


def _const(value: Any) -> Check:
    def check(x: Any) -> bool:
        return _json_equal(x, value)

    return check


def _enum(options: list[Any]) -> Check:
    if all(isinstance(o, str) for o in options):
        strings = frozenset(options)
        return lambda x: isinstance(x, str) and x in strings

    def check(x: Any) -> bool:
        return any(_json_equal(x, o) for o in options)

    return check


def _pattern(regex: str) -> Check:
    search = re.compile(regex).search
    return lambda x: not isinstance(x, str) or search(x) is not None


def _min_length(n: int) -> Check:
    return lambda x: not isinstance(x, str) or len(x) >= n


def _max_items(n: int) -> Check:
    return lambda x: not isinstance(x, list) or len(x) <= n


def _items(item: Check) -> Check:
    def check(x: Any) -> bool:
        if isinstance(x, list):
            for v in x:
                if not item(v):
                    return False
        return True

    return check


def _required(names: list[str]) -> Check:
    def check(x: Any) -> bool:
        if isinstance(x, dict):
            for k in names:
                if k not in x:
                    return False
        return True

    return check


def _properties(props: list[tuple[str, Check]]) -> Check:
    def check(x: Any) -> bool:
        if isinstance(x, dict):
            for k, f in props:
                if k in x and not f(x[k]):
                    return False
        return True

    return check


def _one_of(subs: list[Check]) -> Check:
    def check(x: Any) -> bool:
        hits = 0
        for f in subs:
            if f(x):
                hits += 1
                if hits > 1:
                    return False
        return hits == 1

    return check


def _compile(node: Mapping[str, Any], defs: Mapping[str, Any], depth: int) -> Check:
    if depth > 32:
        raise ValueError("schema nests too deep (recursive $ref?)")
    unknown = set(node) - _SUPPORTED - _ANNOTATIONS
    if unknown:
        raise ValueError(f"schema keywords not supported by the fast check: {sorted(unknown)}")
    checks: list[Check] = []
    if "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/$defs/"):
            raise ValueError(f"only local #/$defs refs are supported, got {ref!r}")
        checks.append(_compile(defs[ref.removeprefix("#/$defs/")], defs, depth + 1))
    if "type" in node:
        names = node["type"] if isinstance(node["type"], list) else [node["type"]]
        checks.append(_type_check(list(names)))
    if "const" in node:
        checks.append(_const(node["const"]))
    if "enum" in node:
        checks.append(_enum(list(node["enum"])))
    if "pattern" in node:
        checks.append(_pattern(node["pattern"]))
    if "minLength" in node:
        checks.append(_min_length(node["minLength"]))
    if {"minimum", "maximum", "exclusiveMinimum"} & node.keys():
        checks.append(
            _bounds(node.get("minimum"), node.get("maximum"), node.get("exclusiveMinimum"))
        )
    if "maxItems" in node:
        checks.append(_max_items(node["maxItems"]))
    if "items" in node:
        checks.append(_items(_compile(node["items"], defs, depth + 1)))
    if "required" in node:
        checks.append(_required(list(node["required"])))
    if "properties" in node:
        props = [(k, _compile(v, defs, depth + 1)) for k, v in node["properties"].items()]
        checks.append(_properties(props))
    if "oneOf" in node:
        checks.append(_one_of([_compile(s, defs, depth + 1) for s in node["oneOf"]]))
    return _all_of(checks)
