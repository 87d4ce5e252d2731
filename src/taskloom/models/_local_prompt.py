"""How `LocalModel` turns a request into chat turns and a grammar, and reads the answer back.

Pure functions, no llama.cpp: the system turn lists the tools and the output schema in a
compact form (`{"city": string}`), and the grammar's JSON schema allows one answer object,
`{"tool": <name>, "arguments": <its parameters>}` or `{"final": <the output>}`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypedDict, cast

from ._base import (
    AssistantMessage,
    ModelRequest,
    OutputSpec,
    SystemMessage,
    ToolDefinition,
    ToolResultMessage,
)

__all__ = (
    "ChatMessage",
    "Envelope",
    "chat_messages",
    "envelope_for",
    "next_call_id",
    "parse_envelope",
)


def envelope_for(
    request: ModelRequest, *, tools_first: bool, tools_once: bool = False
) -> Envelope | None:
    """The answer shape of `request`, or `None` when it wants free text.

    Args:
        request: The request.
        tools_first: Allow only tool calls until the conversation holds a tool result.
        tools_once: Allow no more tool calls once the conversation holds a tool result.
    """
    tool_result_seen = any(isinstance(m, ToolResultMessage) for m in request.messages)
    tools = () if tools_once and tool_result_seen else request.tools
    if not tools and request.output is None:
        return None
    tools_only = tools_first and bool(tools) and not tool_result_seen
    return Envelope(
        tools=tools,
        output=request.output,
        schema=_envelope_schema(tools, request.output, final=not tools_only),
        tools_only=tools_only,
    )


class ChatMessage(TypedDict):
    """One turn as llama-cpp's chat template takes it."""

    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    """The JSON answer shape of a request with tools or a wanted output."""

    tools: tuple[ToolDefinition, ...]
    output: OutputSpec | None
    schema: dict[str, Any]
    tools_only: bool
    """Only the tool branches are allowed (`tool_choice="required_first"` before a result)."""


def chat_messages(request: ModelRequest, envelope: Envelope | None) -> list[ChatMessage]:
    """The conversation as chat-template turns, with the answer instructions in the system turn.

    Tool results become user turns (chat templates have no tool role) and consecutive turns
    of one role are merged, for templates that insist on alternation.
    """
    system = [m.content for m in request.messages if isinstance(m, SystemMessage)]
    if envelope is not None:
        system.append(_answer_instructions(envelope))
    turns: list[ChatMessage] = []
    if system:
        turns.append({"role": "system", "content": "\n\n".join(system)})
    for message in request.messages:
        turn: ChatMessage
        match message:
            case SystemMessage():
                continue
            case ToolResultMessage(name=name, content=content, is_error=is_error):
                label = "Error from" if is_error else "Result of"
                turn = {"role": "user", "content": f"{label} {name}: {content}"}
            case AssistantMessage():
                turn = {"role": "assistant", "content": _assistant_text(message, envelope)}
            case _:
                turn = {"role": "user", "content": message.content}
        if turns and turns[-1]["role"] == turn["role"]:
            turns[-1]["content"] += "\n\n" + turn["content"]
        else:
            turns.append(turn)
    return turns


def _assistant_text(message: AssistantMessage, envelope: Envelope | None) -> str:
    """An earlier answer, written in the shape the model is asked to answer in now."""
    lines: list[str] = []
    if message.text:
        if envelope is None:
            lines.append(message.text)
        else:
            final: object = message.text
            if envelope.output is not None:
                with contextlib.suppress(ValueError):
                    final = json.loads(message.text)
            lines.append(json.dumps({"final": final}))
    for call in message.tool_calls:
        try:
            arguments: object = json.loads(call.arguments)
        except ValueError:
            arguments = call.arguments
        lines.append(json.dumps({"tool": call.name, "arguments": arguments}))
    return "\n".join(lines)


def _answer_instructions(envelope: Envelope) -> str:
    lines = ["Answer with one JSON object and nothing else."]
    if envelope.tools:
        lines.append('To call a tool, answer {"tool": "<name>", "arguments": {...}}. The tools:')
        for tool in envelope.tools:
            description = f": {tool.description}" if tool.description else ""
            lines.append(f"- {tool.name} {_sketch(tool.parameters)}{description}")
    if envelope.output is not None:
        about = f" ({envelope.output.description})" if envelope.output.description else ""
        lines.append(
            f'To give the final answer{about}, answer {{"final": {_sketch(envelope.output.schema)}}}.'
        )
    else:
        lines.append('To give the final answer, answer {"final": "<your answer>"}.')
    if envelope.tools_only:
        lines.append("Call a tool first.")
    return "\n".join(lines)


def _sketch(
    schema: Mapping[str, Any],
    defs: Mapping[str, Any] | None = None,
    seen: frozenset[str] = frozenset(),
) -> str:
    """A compact, human-readable form of a JSON schema, such as `{"city": string}`.

    A definition met again inside itself (a recursive type) is written as its name.
    """
    if defs is None:
        defs = _schema(schema.get("$defs")) or _schema(schema.get("definitions")) or {}
    if "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        target = _schema(defs.get(name))
        if target is None or name in seen:
            return name
        return _sketch(target, defs, seen | {name})
    if "const" in schema:
        return json.dumps(schema["const"])
    if isinstance(enum := schema.get("enum"), list):
        return " | ".join(json.dumps(v) for v in cast("list[object]", enum))
    variants = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(variants, list):
        options = (_schema(v) for v in cast("list[object]", variants))
        return " | ".join(_sketch(v, defs, seen) for v in options if v is not None)
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(str(k) for k in cast("list[object]", kind))
    if kind == "array":
        items = _schema(schema.get("items"))
        return f"[{'any' if items is None else _sketch(items, defs, seen)}, ...]"
    properties = _schema(schema.get("properties"))
    if properties is not None:
        required = schema.get("required", ())
        fields = (
            f"{json.dumps(key)}{'' if key in required else '?'}: {_sketch(field, defs, seen)}"
            for key, field in _fields(properties)
        )
        return "{" + ", ".join(fields) + "}"
    if isinstance(kind, str):
        return f"{kind} ({schema['format']})" if "format" in schema else kind
    return "any"


def _fields(properties: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for key, value in properties.items():
        if (field := _schema(value)) is not None:
            yield key, field


def _schema(value: object) -> Mapping[str, Any] | None:
    """`value` as a JSON schema object, or `None` when it is not a mapping."""
    return cast("Mapping[str, Any]", value) if isinstance(value, Mapping) else None


def _envelope_schema(
    tools: Sequence[ToolDefinition], output: OutputSpec | None, *, final: bool
) -> dict[str, Any]:
    """The JSON schema of every answer allowed: one branch per tool, and the final answer."""
    defs: dict[str, Any] = {}
    branches: list[dict[str, Any]] = []
    for index, tool in enumerate(tools):
        arguments = _hoist_defs(tool.parameters, f"tool{index}-", defs)
        branches.append(
            {
                "type": "object",
                "properties": {"tool": {"const": tool.name}, "arguments": arguments},
                "required": ["tool", "arguments"],
            }
        )
    if final or not branches:
        value = _hoist_defs(output.schema, "output-", defs) if output else {"type": "string"}
        branches.append({"type": "object", "properties": {"final": value}, "required": ["final"]})
    schema = {"anyOf": branches} if len(branches) > 1 else branches[0]
    return {**schema, "$defs": defs} if defs else schema


def _hoist_defs(schema: Mapping[str, Any], prefix: str, defs: dict[str, Any]) -> dict[str, Any]:
    """`schema` without its `$defs`, which move into `defs` under prefixed names.

    The grammar converter resolves `#/...` references from the root of the whole schema and
    names rules after the last part of a reference, so each nested schema's definitions move
    to the root under names of their own.
    """

    def rewrite(node: object) -> Any:
        if (mapping := _schema(node)) is not None:
            out = {key: rewrite(value) for key, value in mapping.items()}
            ref = out.get("$ref")
            for old in ("#/$defs/", "#/definitions/"):
                if isinstance(ref, str) and ref.startswith(old):
                    out["$ref"] = f"#/$defs/{prefix}{ref.removeprefix(old)}"
            return out
        if isinstance(node, list):
            return [rewrite(item) for item in cast("list[object]", node)]
        return node

    body = {k: v for k, v in schema.items() if k not in ("$defs", "definitions")}
    for key in ("$defs", "definitions"):
        for name, definition in (_schema(schema.get(key)) or {}).items():
            defs[f"{prefix}{name}"] = rewrite(definition)
    return rewrite(body)


def parse_envelope(text: str) -> dict[str, Any] | None:
    try:
        answer = json.loads(text)
    except ValueError:
        return None
    return cast("dict[str, Any]", answer) if isinstance(answer, dict) else None


def next_call_id(request: ModelRequest) -> str:
    """A call id unique in the conversation and the same for the same request."""
    taken = {
        call.id
        for message in request.messages
        if isinstance(message, AssistantMessage)
        for call in message.tool_calls
    }
    number = len(taken) + 1
    while f"call_{number}" in taken:
        number += 1
    return f"call_{number}"
