"""The `Model` interface and the messages that cross it.

A model adapter turns one `ModelRequest` (the conversation so far, the tools the model may
call, and the structured output wanted, if any) into one `ModelResponse` (text and/or tool
calls, token usage, why it stopped). It does not retry: the agent loop owns retries, so the
provider SDKs are built with their own retries off. It raises `ModelError` (or
`ModelHTTPError`) with `retryable` and `retry_after` set from what the provider said.

Text deltas stream to `on_text` when one is given; the adapter then streams from the
provider and still returns the whole response at the end.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Self

from ..tools import ToolDefinition

__all__ = (
    "AssistantMessage",
    "FinishReason",
    "Message",
    "Model",
    "ModelRequest",
    "ModelResponse",
    "ModelSettings",
    "OutputSpec",
    "RequestUsage",
    "SystemMessage",
    "ToolCall",
    "ToolDefinition",
    "ToolResultMessage",
    "UserMessage",
)

FinishReason = Literal["stop", "tool_calls", "length", "content_filter", "other"]
"""Why the model stopped: done, wants tools, hit the token limit, was filtered, or other."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCall:
    """One tool call the model asked for."""

    id: str
    """The provider's id for the call, echoed back with its result."""
    name: str
    """The tool's name."""
    arguments: str
    """The arguments exactly as the model wrote them (JSON text, possibly malformed)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemMessage:
    """Instructions for the model."""

    content: str
    role: Literal["system"] = "system"


@dataclass(frozen=True, slots=True, kw_only=True)
class UserMessage:
    """What the user (or the task) says."""

    content: str
    role: Literal["user"] = "user"


@dataclass(frozen=True, slots=True, kw_only=True)
class AssistantMessage:
    """What the model said: text, tool calls, or both."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    role: Literal["assistant"] = "assistant"


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolResultMessage:
    """The result of one tool call, or the error the model should correct."""

    call_id: str
    name: str
    content: str
    """The result as text (JSON for structured results), or the error's description."""
    is_error: bool = False
    role: Literal["tool"] = "tool"


Message = SystemMessage | UserMessage | AssistantMessage | ToolResultMessage
"""One message of a conversation."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputSpec:
    """The structured output wanted from the model's final answer."""

    name: str
    """A short name for the output type (used as the output tool's name when needed)."""
    schema: Mapping[str, Any]
    """JSON schema of the output (always an object; scalars are wrapped by the agent)."""
    description: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSettings:
    """Per-request generation settings; `None` leaves the provider's default."""

    max_tokens: int | None = None
    temperature: float | None = None
    seed: int | None = None
    timeout: float | None = None
    """Seconds for the whole request, streaming included."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelRequest:
    """Everything one model call needs."""

    messages: tuple[Message, ...]
    tools: tuple[ToolDefinition, ...] = ()
    output: OutputSpec | None = None
    """When set, the final answer must be JSON matching `output.schema`. Adapters use the
    provider's native structured output when they can, or an output tool named
    `output.name` otherwise; either way the answer comes back as `ModelResponse.text`."""
    settings: ModelSettings = field(default_factory=ModelSettings)


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestUsage:
    """Tokens of one model call."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelResponse:
    """One answer of the model."""

    text: str = ""
    """The text, or the structured output as JSON text when `ModelRequest.output` was set."""
    tool_calls: tuple[ToolCall, ...] = ()
    usage: RequestUsage = field(default_factory=RequestUsage)
    finish_reason: FinishReason = "stop"
    model_name: str = ""
    """The model that answered, as the provider named it."""


class Model(abc.ABC):
    """An LLM provider (or a double for tests).

    Attributes:
        name: `provider:model`, as accepted by `taskloom.models.infer_model`.
        provider: The provider's id for pricing (`openai`, `anthropic`, `local`, ...).
        model_name: The model's name at the provider.
    """

    name: str
    provider: str
    model_name: str

    @abc.abstractmethod
    async def request(
        self, request: ModelRequest, *, on_text: Callable[[str], None] | None = None
    ) -> ModelResponse:
        """Ask the model once.

        Args:
            request: The conversation, tools and wanted output.
            on_text: Called with each text delta as it streams, if given.

        Raises:
            ModelError: the provider failed; `retryable` and `retry_after` say whether and
                when trying again may help.
        """

    async def close(self) -> None:  # noqa: B027 -- an optional hook: most doubles hold nothing
        """Release the model's connections. Idempotent."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
