"""A small JSON-schema check for answers to input requests, in any process.

The process that answers a task waiting for a human may not have the Python type the
question was asked with, only the JSON schema stored with the request. This checks the
parts of JSON schema that pydantic emits for answer types: `type`, `enum`, `const`,
`properties`, `required`, `additionalProperties: false`, `items`, `anyOf`/`oneOf`/`allOf`,
`$ref` into `$defs`, numeric bounds and string lengths. The asking process validates the
answer again with the real type.
"""

from __future__ import annotations

from typing import Any

__all__ = ("schema_problems",)

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
    "array": (list,),
    "object": (dict,),
}


def schema_problems(value: Any, schema: dict[str, Any]) -> list[str]:
    """Everything wrong with `value` against `schema`, as readable lines (empty when it fits)."""
    problems: list[str] = []
    _check(value, schema, schema.get("$defs", {}), "answer", problems)
    return problems


def _check(
    value: Any, schema: dict[str, Any], defs: dict[str, Any], at: str, out: list[str]
) -> None:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        schema = {
            **defs.get(ref.removeprefix("#/$defs/"), {}),
            **{k: v for k, v in schema.items() if k != "$ref"},
        }
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if options:
            if not any(not _sub(value, o, defs, at) for o in options):
                out.append(f"{at}: matches none of the allowed forms")
            return
    for sub in schema.get("allOf", ()):
        _check(value, sub, defs, at, out)
    if "const" in schema and value != schema["const"]:
        out.append(f"{at}: must be {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{at}: must be one of {schema['enum']!r}")
    kind = schema.get("type")
    kinds = [kind] if isinstance(kind, str) else list(kind or [])
    if kinds and not any(_is(value, k) for k in kinds):
        out.append(f"{at}: must be {' or '.join(kinds)}, not {type(value).__name__}")
        return
    _bounds(value, schema, at, out)
    if isinstance(value, dict):
        _object(value, schema, defs, at, out)  # pyright: ignore[reportUnknownArgumentType] -- JSON
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType] -- JSON
            _check(item, schema["items"], defs, f"{at}[{i}]", out)


def _sub(value: Any, schema: dict[str, Any], defs: dict[str, Any], at: str) -> list[str]:
    found: list[str] = []
    _check(value, schema, defs, at, found)
    return found


def _is(value: Any, kind: str) -> bool:
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    if kind == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES.get(kind, (object,)))


def _bounds(value: Any, schema: dict[str, Any], at: str, out: list[str]) -> None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            out.append(f"{at}: must be at least {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            out.append(f"{at}: must be at most {schema['maximum']}")
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            out.append(f"{at}: must have at least {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            out.append(f"{at}: must have at most {schema['maxLength']} characters")


def _object(
    value: dict[str, Any], schema: dict[str, Any], defs: dict[str, Any], at: str, out: list[str]
) -> None:
    properties: dict[str, Any] = schema.get("properties", {})
    for name in schema.get("required", ()):
        if name not in value:
            out.append(f"{at}.{name}: is required")
    for name, item in value.items():
        if name in properties:
            _check(item, properties[name], defs, f"{at}.{name}", out)
        elif schema.get("additionalProperties") is False:
            out.append(f"{at}.{name}: is not allowed")
