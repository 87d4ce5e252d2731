"""A tool's arguments schema: made from a function's signature, and used to explain errors.

The arguments are validated by a `TypeAdapter` of a `TypedDict` built from the
parameters (a `TypedDict`, not a model, so that any parameter name works, `json` and
`model_config` included). Extra keys are forbidden. A parameter with a default is not
required, and its default is not filled in by the validator: the function applies its own,
so mutable and sentinel defaults behave as in any Python call. The schema shows defaults
that have a JSON form.

The JSON schema is made compact for the model: no titles, `properties` always present,
`$defs` kept when nested types need them.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, NotRequired, Required, cast, get_args, get_origin
from typing import get_type_hints as _get_type_hints

from pydantic import ConfigDict, Field, TypeAdapter
from pydantic.errors import PydanticSchemaGenerationError, PydanticUserError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, to_jsonable_python
from typing_extensions import TypedDict  # pydantic needs it on Python < 3.12

from ._json import dumps
from .errors import UserError

__all__ = ("ArgumentIssue", "Injection", "Param", "analyse", "issues", "unwrap")

Injection = Literal["task", "key"]
"""What taskloom fills a parameter with: the active task, or the idempotency key."""

_FORBID_EXTRA = ConfigDict(extra="forbid")
_EMPTY: Mapping[str, Any] = {}
# pydantic's error types for a key that is not allowed, and for one that is missing
_UNKNOWN_KEY = frozenset({"extra_forbidden", "unexpected_keyword_argument"})
_MISSING_KEY = frozenset({"missing", "missing_argument", "missing_keyword_only_argument"})
_MAX_EXPECTED = 400
_MAX_DEPTH = 3
_typed_dict: Any = TypedDict  # called with a field mapping built at run time


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ArgumentIssue:
    """One problem with the arguments the model wrote."""

    path: str
    """Where: `query`, `items[2].name`, or `arguments` for the whole object."""
    message: str
    """What is wrong, with the value given when that helps."""
    expected: str
    """A short description of what the schema allows there."""

    def __str__(self) -> str:
        return f"{self.path}: {self.message}; expected {self.expected}"


@dataclasses.dataclass(frozen=True, slots=True)
class Param:
    """How one parameter of the function is filled."""

    name: str
    positional: bool
    """Positional-only: passed by position."""
    inject: Injection | None
    optional: bool
    """It has a default (or, for an injected task, accepts `None`)."""
    default: object


def unwrap(function: Callable[..., object]) -> object:
    """The function inside any `functools.partial` layers."""
    target: object = function
    while isinstance(target, functools.partial):
        target = cast(functools.partial[object], target).func
    return target


def analyse(
    function: Callable[..., object],
    name: str,
    docs: Mapping[str, str],
    injection: Callable[[object], tuple[Injection | None, bool]],
) -> tuple[tuple[Param, ...], TypeAdapter[dict[str, Any]], dict[str, Any]]:
    """The parameters, the arguments' validator and their JSON schema.

    Args:
        function: The tool's function.
        name: The tool's name, for messages.
        docs: Each parameter's description from the docstring.
        injection: Tells from a type hint whether taskloom fills the parameter, and
            whether `None` will do.

    Raises:
        UserError: the signature cannot make a tool; the message says what to change.
    """
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError) as exc:
        raise UserError(f"cannot read the signature of tool {name!r}: {exc}") from None
    hints = _hints(function, name)
    params: list[Param] = []
    fields: dict[str, Any] = {}
    defaults: dict[str, object] = {}
    for p in signature.parameters.values():
        _check_parameter(p, name)
        hint = hints.get(p.name, Any)
        has_default = p.default is not p.empty
        positional = p.kind is p.POSITIONAL_ONLY
        inject, none_ok = injection(hint)
        params.append(Param(p.name, positional, inject, has_default or none_ok, p.default))
        if inject is not None:
            continue
        if p.name in docs and not _has_description(hint):
            hint = Annotated[hint, Field(description=docs[p.name])]
        fields[p.name] = NotRequired[hint] if has_default else Required[hint]
        if has_default:
            defaults[p.name] = p.default
    try:
        arguments = _typed_dict(f"{name}_arguments", fields)
        arguments.__pydantic_config__ = _FORBID_EXTRA
        validator: TypeAdapter[dict[str, Any]] = TypeAdapter(arguments)
        schema = validator.json_schema()
    except (PydanticSchemaGenerationError, PydanticUserError, TypeError) as exc:
        raise UserError(
            f"tool {name!r} has a parameter type pydantic cannot describe: {exc}"
        ) from None
    return tuple(params), validator, _compact(schema, defaults)


def _check_parameter(p: inspect.Parameter, name: str) -> None:
    if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
        star = "*" if p.kind is p.VAR_POSITIONAL else "**"
        raise UserError(
            f"tool {name!r} takes {star}{p.name}: the model passes one JSON object of named"
            " arguments, so declare each parameter (use a list or a pydantic model for"
            " open-ended input)"
        )
    if isinstance(p.default, FieldInfo):
        raise UserError(
            f"parameter {p.name!r} of tool {name!r} has a pydantic Field as its default:"
            f" write `{p.name}: Annotated[T, Field(...)] = default` instead"
        )


def _hints(function: Callable[..., object], name: str) -> dict[str, Any]:
    target = unwrap(function)
    if not isinstance(target, types.FunctionType | types.MethodType | type):
        target = cast(Any, target).__call__  # a callable instance: its method's hints
    try:
        return _get_type_hints(target, include_extras=True)
    except Exception as exc:  # evaluating annotation text may raise anything
        raise UserError(
            f"cannot resolve the type hints of tool {name!r}: {exc!r}; import every type"
            " its signature names at module level"
        ) from None


def _has_description(hint: object) -> bool:
    if get_origin(hint) is not Annotated:
        return False
    return any(isinstance(m, FieldInfo) and m.description for m in get_args(hint)[1:])


def _compact(schema: dict[str, Any], defaults: Mapping[str, object]) -> dict[str, Any]:
    """The schema without titles, with `properties` always present and defaults shown."""
    schema = _strip_titles(schema)
    schema.setdefault("properties", {})
    for key, default in defaults.items():
        try:
            schema["properties"][key]["default"] = to_jsonable_python(default)
        except Exception:  # a default without a JSON form is simply not shown
            continue
    return schema


def _strip_titles(node: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" and isinstance(value, str):
            continue
        if key in ("properties", "$defs", "patternProperties", "dependentSchemas"):
            out[key] = {k: _strip_titles(v) for k, v in value.items()}
        elif isinstance(value, dict):
            out[key] = _strip_titles(cast(dict[str, Any], value))
        elif isinstance(value, list) and key not in ("enum", "required", "examples"):
            out[key] = [
                _strip_titles(cast(dict[str, Any], v)) if isinstance(v, dict) else v
                for v in cast(list[Any], value)
            ]
        else:
            out[key] = value
    return out


# -- explaining invalid arguments ------------------------------------------------------------


def issues(errors: list[ErrorDetails], schema: Mapping[str, Any]) -> list[ArgumentIssue]:
    """One issue per place, in order; several errors at one place (a union) are merged."""
    found: dict[str, tuple[list[str], str]] = {}
    for error in errors:
        path, node, parent = _locate(error, schema)
        message = _message(error)
        if "." in path or "[" in path:  # inside an argument, keys are fields
            message = message.replace(" argument", " field")
        if error["type"] in _UNKNOWN_KEY:
            names = ", ".join(_names(parent, schema)) or "none"
            expected = f"only the known names ({names})"
        else:
            expected = _describe(node, schema)
        if len(expected) > _MAX_EXPECTED:
            expected = expected[: _MAX_EXPECTED - 3] + "..."
        messages, _ = found.setdefault(path, ([], expected))
        if message not in messages:
            messages.append(message)
    return [
        ArgumentIssue(path=path, message="; ".join(messages), expected=expected)
        for path, (messages, expected) in found.items()
    ]


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind in _MISSING_KEY:
        return "missing required argument"
    if kind in _UNKNOWN_KEY:
        return "unexpected argument"
    if kind == "json_invalid":
        return f"not valid JSON ({error.get('ctx', {}).get('error', error['msg'])})"
    try:
        got = dumps(error["input"])
    except (TypeError, ValueError):
        got = repr(error["input"])
    if len(got) > 80:
        got = got[:77] + "..."
    return f"{error['msg']} (got {got})"


def _locate(
    error: ErrorDetails, schema: Mapping[str, Any]
) -> tuple[str, Mapping[str, Any], Mapping[str, Any]]:
    """The readable path of an error, and the schema there and at its parent.

    Parts of the location that the schema does not have are pydantic's names for union
    members and validators, and are skipped, except a last one naming an unknown key.
    """
    path = ""
    node = parent = schema
    loc = error["loc"]
    for i, part in enumerate(loc):
        child = _child(node, part, schema)
        if child is None and not (i == len(loc) - 1 and error["type"] in _UNKNOWN_KEY):
            continue
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
        parent, node = node, child or _EMPTY
    return path.lstrip(".") or "arguments", node, parent


def _child(
    node: Mapping[str, Any], part: str | int, root: Mapping[str, Any]
) -> Mapping[str, Any] | None:
    node = _resolve(node, root)
    for option in node.get("anyOf", node.get("oneOf", ())):
        found = _child(option, part, root)
        if found is not None:
            return found
    if isinstance(part, int):
        prefix = node.get("prefixItems", ())
        return prefix[part] if part < len(prefix) else node.get("items")
    if part in node.get("properties", {}):
        return node["properties"][part]
    extra = node.get("additionalProperties")
    return cast(Mapping[str, Any], extra) if isinstance(extra, dict) else None


def _names(node: Mapping[str, Any], root: Mapping[str, Any]) -> list[str]:
    """The property names an object schema (or any object in a union) allows."""
    node = _resolve(node, root)
    names = list(node.get("properties", {}))
    for option in node.get("anyOf", node.get("oneOf", ())):
        names += [n for n in _names(option, root) if n not in names]
    return names


def _resolve(node: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    while isinstance(ref := node.get("$ref"), str) and ref.startswith("#/$defs/"):
        node = root.get("$defs", {}).get(ref.removeprefix("#/$defs/"), _EMPTY)
    return node


def _describe(node: Mapping[str, Any], root: Mapping[str, Any], depth: int = 0) -> str:
    """A short, model-readable account of what a schema allows."""
    node = _resolve(node, root)
    if depth > _MAX_DEPTH:  # a recursive type
        return str(node.get("type", "any JSON value"))
    if "const" in node:
        return dumps(node["const"])
    if "enum" in node:
        return "one of " + ", ".join(dumps(v) for v in node["enum"])
    options = node.get("anyOf", node.get("oneOf"))
    if options:
        return " or ".join(_describe(o, root, depth) for o in options)
    kind = node.get("type")
    if isinstance(kind, list):
        return " or ".join(cast(list[str], kind))
    if kind == "array":
        items = node.get("items")
        return f"array of {_describe(items, root, depth + 1)}" if items else "array"
    if kind == "object":
        props: Mapping[str, Any] = node.get("properties", {})
        if not props or depth > 1:
            return "object"
        required = set(node.get("required", ()))
        fields = [
            f"{key} ({_describe(sub, root, depth + 1)}{'' if key in required else ', optional'})"
            for key, sub in props.items()
        ]
        return "object with " + ", ".join(fields)
    if kind == "string" and "format" in node:
        return f"string ({node['format']})"
    return str(kind) if kind else "any JSON value"
