"""Typed output: the schema the model is asked for, and the validation of its answer.

Pydantic models, dataclasses, TypedDicts, primitives and lists of them are all accepted.
Providers want an object at the top of a structured answer, so anything that is not an
object is wrapped as `{"result": ...}` and unwrapped after validation. `str` output asks for
plain text and takes the answer as it is.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from pydantic import TypeAdapter, ValidationError

from ..errors import UserError
from ..models import OutputSpec

__all__ = ("OutputInvalid", "OutputType")

T = TypeVar("T")


class OutputInvalid(Exception):
    """The model's answer does not fit the output type; `str()` is what to tell the model."""


@dataclass(frozen=True, slots=True)
class OutputType(Generic[T]):
    """How one output type is asked for and checked."""

    type: Any
    adapter: TypeAdapter[T]
    spec: OutputSpec | None
    """`None` for plain text."""
    wrapped: bool

    @classmethod
    def of(cls, output_type: Any) -> OutputType[Any]:
        """How `output_type` is asked for and checked (built once per type, then cached)."""
        try:
            return _of_cached(output_type)
        except TypeError:  # an unhashable annotation: build it every time
            return cls._build(output_type)

    @classmethod
    def _build(cls, output_type: Any) -> OutputType[Any]:
        try:
            adapter: TypeAdapter[Any] = TypeAdapter(output_type)
            schema = adapter.json_schema()
        except Exception as exc:  # pydantic raises several kinds for unusable types
            raise UserError(
                f"cannot use {output_type!r} as an output type ({exc}); use a pydantic model,"
                " a dataclass, a TypedDict, a primitive or a list of them"
            ) from exc
        if output_type is str:
            return cls(output_type, adapter, None, False)
        name = _name(output_type, schema)
        wrapped = schema.get("type") != "object"
        if wrapped:
            defs = schema.pop("$defs", None)
            schema = {"type": "object", "properties": {"result": schema}, "required": ["result"]}
            if defs:
                schema["$defs"] = defs
        description = str(schema.get("description", ""))
        return cls(
            output_type,
            adapter,
            OutputSpec(name=name, schema=schema, description=description),
            wrapped,
        )

    def parse(self, text: str) -> T:
        """Validate the model's answer.

        Raises:
            OutputInvalid: the answer is not valid JSON or does not fit; the message says why.
        """
        if self.spec is None:
            return self.adapter.validate_python(text)
        try:
            data: Any = json.loads(_strip_fences(text))
        except json.JSONDecodeError as exc:
            raise OutputInvalid(
                f"the answer is not valid JSON ({exc.msg} at character {exc.pos}); answer with"
                f" one JSON object matching the schema {json.dumps(self.spec.schema)}"
            ) from None
        if self.wrapped and isinstance(data, dict):
            wrapper = cast(dict[str, Any], data)
            if "result" in wrapper:
                data = wrapper["result"]
        try:
            return self.adapter.validate_python(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'the answer'}: {err['msg']}"
                for err in exc.errors(include_url=False)
            )
            raise OutputInvalid(
                f"the answer does not fit the output schema: {problems}; answer again with one"
                " JSON object matching the schema"
            ) from None

    def dump(self, value: T) -> Any:
        """The JSON form of a validated value, as stored in the task's result."""
        return self.adapter.dump_python(value, mode="json")


@functools.lru_cache(maxsize=256)
def _of_cached(output_type: Any) -> OutputType[Any]:
    return OutputType._build(output_type)  # pyright: ignore[reportPrivateUsage] -- same module


def _name(output_type: Any, schema: dict[str, Any]) -> str:
    raw = str(schema.get("title") or getattr(output_type, "__name__", "") or "output")
    name = re.sub(r"[^A-Za-z0-9_-]", "_", raw)[:64]
    return name or "output"


def _strip_fences(text: str) -> str:
    """Models often wrap JSON in Markdown fences; take what is inside."""
    stripped = text.strip()
    match = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", stripped, re.DOTALL)
    return match.group(1) if match else stripped
