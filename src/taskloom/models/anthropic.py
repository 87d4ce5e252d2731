"""`AnthropicModel`: Claude through the official `anthropic` SDK.

```python
model = AnthropicModel("claude-haiku-4-5")    # ANTHROPIC_API_KEY
```

Decisions worth knowing:

- Credentials come from `api_key=`, else the SDK's own chain (`ANTHROPIC_API_KEY`,
  `ANTHROPIC_AUTH_TOKEN`, profiles); none at all is a `UserError` at construction. The SDK's
  retries are off: the agent loop retries, guided by `ModelError.retryable` and
  `retry_after`.
- Every system message goes to the separate `system` prompt, joined in order. Consecutive
  messages of one role are merged, so the tool results of one turn travel as one user
  message of `tool_result` blocks.
- Structured output uses an output tool named after the output (made to fit
  `[A-Za-z0-9_-]{1,64}`). When it is the only tool it
  is forced (`tool_choice` by name); beside other tools `tool_choice` is `auto`. A call to
  the output tool wins over any other call in the same answer and comes back as
  `ModelResponse.text` (its input as JSON).
- `RequestUsage.input_tokens` counts every input token, cache reads and writes included
  (Anthropic reports them apart; the price table expects the total).
- Stop reasons: `end_turn` and `stop_sequence` are `stop`, `tool_use` is `tool_calls`,
  `max_tokens` and `model_context_window_exceeded` are `length`, `refusal` is
  `content_filter`, anything else is `other`.
- The answer streams when `on_text` is given, and also when `max_tokens` is over 8,192:
  the SDK refuses non-streaming requests that may run over ten minutes.
- `temperature` travels in the request body (this SDK has no parameter for it); Anthropic has
  no `seed`, so it is ignored.
- An earlier tool call whose arguments were not a JSON object is sent back as
  `{"_invalid_arguments": "<the text>"}`, because Anthropic only takes objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, assert_never, cast

from ..errors import ModelError, ModelHTTPError, UserError
from ._base import (
    AssistantMessage,
    FinishReason,
    Message,
    Model,
    ModelRequest,
    ModelResponse,
    OutputSpec,
    RequestUsage,
    SystemMessage,
    ToolCall,
    ToolResultMessage,
    UserMessage,
)
from ._provider import retry_after, retryable_status, safe_name

try:
    import anthropic
    import httpx2
    from anthropic import AsyncAnthropic, AsyncStream, Omit, omit
    from anthropic.types import (
        InputJSONDelta,
        MessageDeltaUsage,
        MessageParam,
        RawContentBlockDeltaEvent,
        RawContentBlockStartEvent,
        RawMessageDeltaEvent,
        RawMessageStartEvent,
        RawMessageStreamEvent,
        TextBlock,
        TextBlockParam,
        TextDelta,
        ToolChoiceParam,
        ToolParam,
        ToolResultBlockParam,
        ToolUseBlock,
        ToolUseBlockParam,
        Usage,
    )
    from anthropic.types import Message as AnthropicMessage
except ImportError as exc:  # pragma: no cover -- only without the extra installed
    raise UserError(
        "AnthropicModel needs the `anthropic` SDK: pip install 'taskloom[anthropic]'"
    ) from exc

__all__ = ("AnthropicModel",)

# above this the SDK insists on streaming (requests that may run over ten minutes)
_NONSTREAMING_MAX_TOKENS = 8192
_FINISH: Mapping[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "content_filter",
}
# an error event inside a stream arrives with status 200; its type says what it would be
_STREAM_ERROR_STATUS: Mapping[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

_Block = TextBlockParam | ToolUseBlockParam | ToolResultBlockParam


class AnthropicModel(Model):
    """A Claude model at Anthropic.

    Args:
        model_name: The model's name (`claude-haiku-4-5`, ...).
        api_key: The key; default `ANTHROPIC_API_KEY` (or the SDK's other credentials).
        base_url: The endpoint; default `ANTHROPIC_BASE_URL`, else Anthropic's.
        client: A ready `AsyncAnthropic` to use instead; it stays yours to close, and its own
            retries are not touched.
        http_client: The `httpx2.AsyncClient` for the SDK to send through; it stays yours to
            close.
        max_tokens: The answer's token limit when `ModelSettings.max_tokens` is unset
            (Anthropic requires one).

    Raises:
        UserError: no credentials, or both `client` and connection arguments.
    """

    def __init__(
        self,
        model_name: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        client: AsyncAnthropic | None = None,
        http_client: httpx2.AsyncClient | None = None,
        max_tokens: int = 4096,
    ) -> None:
        self.name = f"anthropic:{model_name}"
        self.provider = "anthropic"
        self.model_name = model_name
        self._max_tokens = max_tokens
        if client is not None:
            if base_url is not None or api_key is not None or http_client is not None:
                raise UserError(
                    "pass either client= or base_url=/api_key=/http_client= to AnthropicModel,"
                    " not both: a ready client already has its endpoint and key"
                )
            self._client = client
            self._owns_client = False
        else:
            self._client = _make_client(api_key, base_url, http_client)
            self._owns_client = http_client is None
        self._closed = False

    async def request(
        self, request: ModelRequest, *, on_text: Callable[[str], None] | None = None
    ) -> ModelResponse:
        settings = request.settings
        max_tokens = settings.max_tokens or self._max_tokens
        system, messages = _conversation(request.messages)
        output_tool = safe_name(request.output.name) if request.output is not None else None
        with _translate_errors(self.name, self.model_name, settings.timeout):
            async with asyncio.timeout(settings.timeout):
                result = await self._client.messages.create(
                    model=self.model_name,
                    max_tokens=max_tokens,
                    messages=messages,
                    system=system or omit,
                    tools=_tools(request) or omit,
                    tool_choice=_tool_choice(request),
                    stream=on_text is not None or max_tokens > _NONSTREAMING_MAX_TOKENS,
                    extra_body=(
                        None
                        if settings.temperature is None
                        else {"temperature": settings.temperature}
                    ),
                )
                if isinstance(result, AsyncStream):
                    return await self._read_stream(result, on_text, output_tool)
                return self._read_message(result, output_tool)

    async def close(self) -> None:
        if self._owns_client and not self._closed:
            await self._client.close()
        self._closed = True

    def _read_message(self, message: AnthropicMessage, output_tool: str | None) -> ModelResponse:
        texts: list[str] = []
        calls: list[ToolCall] = []
        for block in message.content:
            if isinstance(block, TextBlock):
                texts.append(block.text)
            elif isinstance(block, ToolUseBlock):
                arguments = json.dumps(block.input, ensure_ascii=False)
                calls.append(ToolCall(id=block.id, name=block.name, arguments=arguments))
        return _response(
            text="".join(texts),
            calls=calls,
            stop_reason=message.stop_reason,
            usage=_usage(message.usage),
            model_name=message.model or self.model_name,
            output_tool=output_tool,
        )

    async def _read_stream(
        self,
        stream: AsyncStream[RawMessageStreamEvent],
        on_text: Callable[[str], None] | None,
        output_tool: str | None,
    ) -> ModelResponse:
        state = _StreamState(model_name=self.model_name)
        async with stream:
            async for event in stream:
                state.feed(event, on_text)
        texts = [b for _, b in sorted(state.blocks.items()) if b.tool_id is None]
        tools = [b for _, b in sorted(state.blocks.items()) if b.tool_id is not None]
        return _response(
            text="".join("".join(b.parts) for b in texts),
            calls=[
                ToolCall(id=b.tool_id or "", name=b.name, arguments="".join(b.parts) or "{}")
                for b in tools
            ],
            stop_reason=state.stop_reason,
            usage=state.usage,
            model_name=state.model_name,
            output_tool=output_tool,
        )


def _make_client(
    api_key: str | None, base_url: str | None, http_client: httpx2.AsyncClient | None
) -> AsyncAnthropic:
    try:
        client = AsyncAnthropic(
            api_key=api_key, base_url=base_url, http_client=http_client, max_retries=0
        )
    except anthropic.AnthropicError as exc:  # a profile or token file that cannot be read
        raise UserError(
            f"cannot set up the Anthropic client ({exc}); set ANTHROPIC_API_KEY or pass api_key="
        ) from exc
    if client.api_key is None and client.auth_token is None and client.credentials is None:
        raise UserError(
            "no Anthropic credentials: set ANTHROPIC_API_KEY (or pass api_key=, or client=)"
        )
    return client


@contextlib.contextmanager
def _translate_errors(name: str, model_name: str, timeout: float | None) -> Generator[None]:
    """Turn SDK and transport errors into `ModelError`, retryable when trying again may help."""
    try:
        yield
    except anthropic.APIStatusError as exc:
        raise _status_error(exc, name, model_name) from exc
    except (anthropic.APITimeoutError, httpx2.TimeoutException) as exc:
        raise ModelError(
            f"{name}: the request timed out; trying again may help", model=name, retryable=True
        ) from exc
    except (anthropic.APIConnectionError, httpx2.RequestError) as exc:
        # a stream that breaks off surfaces the transport's error as it is
        cause = exc.__cause__ or exc
        raise ModelError(
            f"{name}: cannot reach Anthropic ({cause}); check the network and ANTHROPIC_BASE_URL",
            model=name,
            retryable=True,
        ) from exc
    except anthropic.AnthropicError as exc:
        raise ModelError(f"{name}: {exc}", model=name) from exc
    except TimeoutError as exc:
        raise ModelError(
            f"{name} gave no complete answer within {timeout}s (ModelSettings.timeout);"
            " trying again may help",
            model=name,
            retryable=True,
        ) from exc


def _conversation(messages: Sequence[Message]) -> tuple[str, list[MessageParam]]:
    """The system prompt, and the turns with consecutive messages of one role merged."""
    system: list[str] = []
    turns: list[tuple[Literal["user", "assistant"], list[_Block]]] = []
    for message in messages:
        role: Literal["user", "assistant"]
        blocks: list[_Block]
        match message:
            case SystemMessage():
                system.append(message.content)
                continue
            case UserMessage():
                role, blocks = "user", _text_blocks(message.content)
            case AssistantMessage():
                role, blocks = "assistant", _assistant_blocks(message)
            case ToolResultMessage():
                role, blocks = "user", [_tool_result(message)]
            case _:  # pragma: no cover -- exhaustive
                assert_never(message)
        if not blocks:
            continue  # Anthropic refuses empty turns
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, blocks))
    conversation: list[MessageParam] = []
    for role, blocks in turns:
        if role == "user":
            conversation.append({"role": "user", "content": blocks})
        else:
            conversation.append({"role": "assistant", "content": blocks})
    return "\n\n".join(system), conversation


def _text_blocks(text: str) -> list[_Block]:
    # Anthropic refuses empty text blocks
    return [{"type": "text", "text": text}] if text else []


def _assistant_blocks(message: AssistantMessage) -> list[_Block]:
    blocks = _text_blocks(message.text)
    blocks.extend(
        {"type": "tool_use", "id": call.id, "name": call.name, "input": _input(call.arguments)}
        for call in message.tool_calls
    )
    return blocks


def _tool_result(message: ToolResultMessage) -> ToolResultBlockParam:
    block: ToolResultBlockParam = {"type": "tool_result", "tool_use_id": message.call_id}
    if message.content:
        block["content"] = message.content
    if message.is_error:
        block["is_error"] = True
    return block


def _input(arguments: str) -> dict[str, object]:
    if not arguments.strip():
        return {}
    try:
        value: object = json.loads(arguments)
    except ValueError:
        value = None
    if isinstance(value, dict):
        return cast(dict[str, object], value)
    return {"_invalid_arguments": arguments}


def _tools(request: ModelRequest) -> list[ToolParam]:
    tools: list[ToolParam] = [
        {"name": tool.name, "description": tool.description, "input_schema": dict(tool.parameters)}
        for tool in request.tools
    ]
    if request.output is not None:
        tools.append(_output_tool(request.output))
    return tools


def _output_tool(output: OutputSpec) -> ToolParam:
    return {
        "name": safe_name(output.name),
        "description": output.description or "Give the final answer.",
        "input_schema": dict(output.schema),
    }


def _tool_choice(request: ModelRequest) -> ToolChoiceParam | Omit:
    if request.output is None:
        return omit
    if request.tools:
        return {"type": "auto"}
    return {"type": "tool", "name": safe_name(request.output.name)}


def _usage(usage: Usage | MessageDeltaUsage) -> RequestUsage:
    cache_read = usage.cache_read_input_tokens or 0
    cache_write = usage.cache_creation_input_tokens or 0
    return RequestUsage(
        input_tokens=(usage.input_tokens or 0) + cache_read + cache_write,
        output_tokens=usage.output_tokens,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
    )


def _response(
    *,
    text: str,
    calls: Sequence[ToolCall],
    stop_reason: str | None,
    usage: RequestUsage,
    model_name: str,
    output_tool: str | None,
) -> ModelResponse:
    finish = _FINISH.get(stop_reason or "", "other")
    answer = next((call for call in calls if call.name == output_tool), None)
    if answer is not None:
        return ModelResponse(
            text=answer.arguments,
            usage=usage,
            finish_reason="length" if finish == "length" else "stop",
            model_name=model_name,
        )
    return ModelResponse(
        text=text, tool_calls=tuple(calls), usage=usage, finish_reason=finish, model_name=model_name
    )


@dataclass(slots=True)
class _PartialBlock:
    tool_id: str | None = None
    """The tool call's id; `None` for a text block."""
    name: str = ""
    parts: list[str] = field(default_factory=list[str])


@dataclass(slots=True, kw_only=True)
class _StreamState:
    """What the events of a streamed message add up to."""

    model_name: str
    blocks: dict[int, _PartialBlock] = field(default_factory=dict[int, _PartialBlock])
    stop_reason: str | None = None
    usage: RequestUsage = field(default_factory=RequestUsage)

    def feed(self, event: RawMessageStreamEvent, on_text: Callable[[str], None] | None) -> None:
        if isinstance(event, RawMessageStartEvent):
            self.model_name = event.message.model or self.model_name
            self.usage = _usage(event.message.usage)
        elif isinstance(event, RawContentBlockStartEvent):
            block = event.content_block
            if isinstance(block, TextBlock):
                self.blocks[event.index] = _PartialBlock()
                self._text(event.index, block.text, on_text)
            elif isinstance(block, ToolUseBlock):
                # the input streams as JSON deltas; a start with input is a complete call
                parts = [json.dumps(block.input, ensure_ascii=False)] if block.input else []
                self.blocks[event.index] = _PartialBlock(block.id, block.name, parts)
        elif isinstance(event, RawContentBlockDeltaEvent):
            delta = event.delta
            if isinstance(delta, TextDelta):
                self._text(event.index, delta.text, on_text)
            elif isinstance(delta, InputJSONDelta) and event.index in self.blocks:
                self.blocks[event.index].parts.append(delta.partial_json)
        elif isinstance(event, RawMessageDeltaEvent):
            self.stop_reason = event.delta.stop_reason or self.stop_reason
            self._add_usage(event.usage)

    def _text(self, index: int, text: str, on_text: Callable[[str], None] | None) -> None:
        if not text:
            return
        self.blocks.setdefault(index, _PartialBlock()).parts.append(text)
        if on_text is not None:
            on_text(text)

    def _add_usage(self, usage: MessageDeltaUsage) -> None:
        # the counts in message_delta are cumulative; input counts appear only sometimes
        start = self.usage
        cache_read = usage.cache_read_input_tokens
        cache_write = usage.cache_creation_input_tokens
        if usage.input_tokens is None and cache_read is None and cache_write is None:
            self.usage = RequestUsage(
                input_tokens=start.input_tokens,
                output_tokens=usage.output_tokens,
                cache_read_tokens=start.cache_read_tokens,
                cache_write_tokens=start.cache_write_tokens,
            )
        else:
            self.usage = _usage(usage)


def _status_error(exc: anthropic.APIStatusError, name: str, model_name: str) -> ModelHTTPError:
    status = exc.status_code
    if status == 200:  # an error event inside a stream
        status = _STREAM_ERROR_STATUS.get(exc.type or "", 500)
    detail = exc.api_message or exc.message
    headers = exc.response.headers
    if _spend_limit(exc, status, detail):
        retryable = False
        advice = (
            "the account is out of credit or over its spend limit: add credit or raise the"
            " limit in the Anthropic console; trying again will not help"
        )
    else:
        retryable = retryable_status(status, headers)
        advice = _advice(status, model_name, retryable)
    return ModelHTTPError(
        f"{name}: HTTP {status}: {detail} ({advice})",
        model=name,
        status_code=status,
        retryable=retryable,
        retry_after=retry_after(headers) if retryable else None,
    )


def _spend_limit(exc: anthropic.APIStatusError, status: int, detail: str) -> bool:
    code = exc.error_code or ""
    return (
        status == 402
        or exc.type == "billing_error"
        or code.endswith("spend_limit_reached")
        or "credit balance" in detail.lower()
    )


def _advice(status: int, model_name: str, retryable: bool) -> str:
    if status == 401:
        return "check ANTHROPIC_API_KEY (or api_key=)"
    if status == 403:
        return f"the key has no access to {model_name!r}; check its workspace and permissions"
    if status == 404:
        return f"check the model name {model_name!r}"
    if status == 413:
        return "the request is too large: shorten the conversation or the tool results"
    if status == 429:
        return "rate limited: wait and try again"
    if status == 529:
        return "Anthropic is overloaded: trying again later may help"
    if retryable:
        return "trying again may help"
    return "Anthropic refused the request; trying it again unchanged will not help"
