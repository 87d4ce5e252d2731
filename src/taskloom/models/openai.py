"""`OpenAIModel`: chat completions through the official `openai` SDK.

It serves every endpoint that speaks chat completions: OpenAI, Azure, Ollama, vLLM,
llama.cpp server, LM Studio, OpenRouter, Groq.

```python
model = OpenAIModel("gpt-4o-mini")                       # OPENAI_API_KEY
model = OpenAIModel("llama3.2", base_url="http://localhost:11434/v1")    # Ollama, no key
```

Decisions worth knowing:

- Credentials and endpoint come from the arguments, else `OPENAI_API_KEY` and
  `OPENAI_BASE_URL`, as the SDK reads them. A base URL without a key gets a placeholder
  key, because local servers ignore it but the SDK insists on one.
- The SDK's retries are off; the agent loop retries, guided by `ModelError.retryable` and
  `retry_after` (from `retry-after-ms`, `retry-after` and `x-should-retry`).
- Structured output (`structured_output`): `"json_schema"` (native, the default),
  `"json_object"` (JSON mode plus the schema in a system message, for servers without
  JSON schemas) or `"tool"` (an output tool named after the output, with `tool_choice`
  `"required"`, for servers with tools but no JSON mode). In tool mode a call to the output
  tool wins over any other call in the same answer, and comes back as `ModelResponse.text`.
- `max_tokens` goes out as `max_completion_tokens` to OpenAI and Azure (their reasoning
  models refuse `max_tokens`) and as `max_tokens` elsewhere (what compatible servers know).
- A tool call whose arguments are not valid JSON is passed through untouched; the loop tells
  the model. Some servers answer `stop` while calling tools; that is reported as `tool_calls`.
- A refusal (structured outputs) comes back as the text, with finish reason `content_filter`.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar, assert_never, cast, get_args

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
    import httpx2
    import openai
    from openai import AsyncOpenAI, AsyncStream, Omit, omit
    from openai.types.chat import (
        ChatCompletion,
        ChatCompletionAssistantMessageParam,
        ChatCompletionChunk,
        ChatCompletionFunctionToolParam,
        ChatCompletionMessageParam,
        ChatCompletionToolChoiceOptionParam,
    )
    from openai.types.chat.chat_completion_chunk import ChoiceDeltaToolCall
    from openai.types.chat.completion_create_params import ResponseFormat
    from openai.types.completion_usage import CompletionUsage
    from openai.types.shared_params.response_format_json_schema import JSONSchema
except ImportError as exc:  # pragma: no cover -- only without the extra installed
    raise UserError("OpenAIModel needs the `openai` SDK: pip install 'taskloom[openai]'") from exc

__all__ = ("OpenAIModel", "StructuredOutput")

StructuredOutput = Literal["json_schema", "tool", "json_object"]
"""How `OpenAIModel` asks for structured output; see the module docstring."""

_PLACEHOLDER_KEY = "taskloom-no-key"
_FINISH: Mapping[str, FinishReason] = {
    "stop": "stop",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "length": "length",
    "content_filter": "content_filter",
}


class OpenAIModel(Model):
    """A model behind an OpenAI-compatible chat completions endpoint.

    Args:
        model_name: The model's name at the endpoint (`gpt-4o-mini`, `llama3.2`, ...).
        base_url: The endpoint; default `OPENAI_BASE_URL`, else OpenAI's.
        api_key: The key; default `OPENAI_API_KEY` (a placeholder for a keyless base URL).
        client: A ready `AsyncOpenAI` (or `AsyncAzureOpenAI`) to use instead; it stays yours
            to close, and its own retries are not touched.
        http_client: The `httpx2.AsyncClient` for the SDK to send through; it stays yours to
            close.
        structured_output: `"json_schema"`, `"tool"` or `"json_object"`.

    Raises:
        UserError: no key and no base URL, both `client` and connection arguments, or an
            unknown `structured_output`.
    """

    def __init__(
        self,
        model_name: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        client: AsyncOpenAI | None = None,
        http_client: httpx2.AsyncClient | None = None,
        structured_output: StructuredOutput = "json_schema",
    ) -> None:
        if structured_output not in get_args(StructuredOutput):
            raise UserError(
                f"unknown structured_output {structured_output!r}: use one of"
                f" {', '.join(get_args(StructuredOutput))}"
            )
        self.name = f"openai:{model_name}"
        self.provider = "openai"
        self.model_name = model_name
        self._structured_output: StructuredOutput = structured_output
        if client is not None:
            if base_url is not None or api_key is not None or http_client is not None:
                raise UserError(
                    "pass either client= or base_url=/api_key=/http_client= to OpenAIModel,"
                    " not both: a ready client already has its endpoint and key"
                )
            self._client = client
            self._owns_client = False
        else:
            self._client = _make_client(base_url, api_key, http_client)
            self._owns_client = http_client is None
        self._closed = False

    async def request(
        self, request: ModelRequest, *, on_text: Callable[[str], None] | None = None
    ) -> ModelResponse:
        output_tool = self._output_tool(request.output)
        settings = request.settings
        official = _is_openai_host(self._client.base_url.host)
        try:
            async with asyncio.timeout(settings.timeout):
                result = await self._client.chat.completions.create(
                    model=self.model_name,
                    messages=self._messages(request),
                    tools=_tools(request, output_tool) or omit,
                    tool_choice=_tool_choice(output_tool),
                    response_format=self._response_format(request),
                    max_completion_tokens=_given(settings.max_tokens if official else None),
                    max_tokens=_given(None if official else settings.max_tokens),
                    temperature=_given(settings.temperature),
                    seed=_given(settings.seed),
                    stream=on_text is not None,
                    stream_options={"include_usage": True} if on_text is not None else omit,
                )
                if isinstance(result, AsyncStream):
                    assert on_text is not None, "the SDK streams only when asked to"
                    return await self._read_stream(result, on_text, output_tool)
                return self._read_completion(result, output_tool)
        except openai.OpenAIError as exc:
            raise _error(exc, self.name, self.model_name, str(self._client.base_url)) from exc
        except TimeoutError as exc:
            raise ModelError(
                f"{self.name} gave no complete answer within {settings.timeout}s"
                " (ModelSettings.timeout); trying again may help",
                model=self.name,
                retryable=True,
            ) from exc

    async def close(self) -> None:
        if self._owns_client and not self._closed:
            await self._client.close()
        self._closed = True

    def _output_tool(self, output: OutputSpec | None) -> str | None:
        """The output tool's name, in tool mode."""
        if output is None or self._structured_output != "tool":
            return None
        return safe_name(output.name)

    def _messages(self, request: ModelRequest) -> list[ChatCompletionMessageParam]:
        messages = [_message(message) for message in request.messages]
        if request.output is not None and self._structured_output == "json_object":
            # after the leading system messages: some chat templates allow no system
            # message later in the conversation
            at = next(
                (i for i, m in enumerate(request.messages) if not isinstance(m, SystemMessage)),
                len(request.messages),
            )
            messages.insert(at, {"role": "system", "content": _json_instructions(request.output)})
        return messages

    def _response_format(self, request: ModelRequest) -> ResponseFormat | Omit:
        output = request.output
        if output is None or self._structured_output == "tool":
            return omit
        if self._structured_output == "json_object":
            return {"type": "json_object"}
        schema: JSONSchema = {
            "name": safe_name(output.name),
            "schema": dict(output.schema),
            "strict": False,
        }
        if output.description:
            schema["description"] = output.description
        return {"type": "json_schema", "json_schema": schema}

    def _read_completion(
        self, completion: ChatCompletion, output_tool: str | None
    ) -> ModelResponse:
        if not completion.choices:
            raise ModelError(
                f"{self.name} answered with no choices; trying again may help",
                model=self.name,
                retryable=True,
            )
        choice = completion.choices[0]
        message = choice.message
        calls = [
            ToolCall(
                id=call.id or f"call_{i}",
                name=call.function.name,
                arguments=call.function.arguments,
            )
            for i, call in enumerate(message.tool_calls or ())
            if call.type == "function"
        ]
        return _response(
            text=message.content or "",
            refusal=message.refusal or "",
            calls=calls,
            reason=choice.finish_reason,
            usage=_usage(completion.usage),
            model_name=completion.model or self.model_name,
            output_tool=output_tool,
        )

    async def _read_stream(
        self,
        stream: AsyncStream[ChatCompletionChunk],
        on_text: Callable[[str], None],
        output_tool: str | None,
    ) -> ModelResponse:
        state = _StreamState(model_name=self.model_name)
        async with stream:
            async for chunk in stream:
                state.feed(chunk, on_text)
        return _response(
            text="".join(state.text),
            refusal="".join(state.refusal),
            calls=state.tool_calls(),
            reason=state.reason,
            usage=_usage(state.usage),
            model_name=state.model_name,
            output_tool=output_tool,
        )


def _make_client(
    base_url: str | None, api_key: str | None, http_client: httpx2.AsyncClient | None
) -> AsyncOpenAI:
    base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
    api_key = api_key or os.environ.get("OPENAI_API_KEY") or None
    if api_key is None:
        if base_url is None:
            raise UserError(
                "no OpenAI API key: set OPENAI_API_KEY (or pass api_key=), or set"
                " OPENAI_BASE_URL (or pass base_url=) for a local server such as Ollama"
                " (http://localhost:11434/v1), which needs no key"
            )
        api_key = _PLACEHOLDER_KEY
    return AsyncOpenAI(api_key=api_key, base_url=base_url, http_client=http_client, max_retries=0)


_T = TypeVar("_T")


def _is_openai_host(host: str) -> bool:
    """Whether the endpoint is OpenAI's or Azure's (reasoning models there refuse `max_tokens`)."""
    return host == "api.openai.com" or host.endswith(".openai.azure.com")


def _given(value: _T | None) -> _T | Omit:
    return omit if value is None else value


def _message(message: Message) -> ChatCompletionMessageParam:
    match message:
        case SystemMessage():
            return {"role": "system", "content": message.content}
        case UserMessage():
            return {"role": "user", "content": message.content}
        case AssistantMessage():
            return _assistant(message)
        case ToolResultMessage():
            return {"role": "tool", "tool_call_id": message.call_id, "content": message.content}
        case _:  # pragma: no cover -- exhaustive
            assert_never(message)


def _assistant(message: AssistantMessage) -> ChatCompletionAssistantMessageParam:
    # content is null only beside tool calls; some servers refuse a null content alone
    param: ChatCompletionAssistantMessageParam = {
        "role": "assistant",
        "content": message.text if message.text or not message.tool_calls else None,
    }
    if message.tool_calls:
        param["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in message.tool_calls
        ]
    return param


def _tools(request: ModelRequest, output_tool: str | None) -> list[ChatCompletionFunctionToolParam]:
    tools: list[ChatCompletionFunctionToolParam] = [
        {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": dict(tool.parameters),
            },
        }
        for tool in request.tools
    ]
    if output_tool is not None and request.output is not None:
        description = request.output.description or "Give the final answer."
        tools.append(
            {
                "type": "function",
                "function": {
                    "name": output_tool,
                    "description": description,
                    "parameters": dict(request.output.schema),
                },
            }
        )
    return tools


def _tool_choice(output_tool: str | None) -> ChatCompletionToolChoiceOptionParam | Omit:
    # "required" rather than the output tool by name: with other tools present the model
    # may still call them first, and more compatible servers accept "required" than a name
    return "required" if output_tool is not None else omit


def _json_instructions(output: OutputSpec) -> str:
    about = f" ({output.description})" if output.description else ""
    return (
        f"Answer with only a JSON object{about} that matches this JSON schema:\n"
        f"{json.dumps(output.schema)}"
    )


def _usage(usage: CompletionUsage | None) -> RequestUsage:
    if usage is None:
        return RequestUsage()
    details = usage.prompt_tokens_details
    return RequestUsage(
        input_tokens=usage.prompt_tokens,
        output_tokens=usage.completion_tokens,
        cache_read_tokens=(details.cached_tokens or 0) if details else 0,
        cache_write_tokens=(details.cache_write_tokens or 0) if details else 0,
    )


def _response(
    *,
    text: str,
    refusal: str,
    calls: Sequence[ToolCall],
    reason: str | None,
    usage: RequestUsage,
    model_name: str,
    output_tool: str | None,
) -> ModelResponse:
    finish = _FINISH.get(reason or "", "other")
    answer = next((call for call in calls if call.name == output_tool), None)
    if answer is not None:
        return ModelResponse(
            text=answer.arguments,
            usage=usage,
            finish_reason="length" if finish == "length" else "stop",
            model_name=model_name,
        )
    if refusal and not text and not calls:
        finish, text = "content_filter", refusal
    elif calls and finish == "stop":
        finish = "tool_calls"
    return ModelResponse(
        text=text, tool_calls=tuple(calls), usage=usage, finish_reason=finish, model_name=model_name
    )


@dataclass(slots=True)
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list[str])


@dataclass(slots=True, kw_only=True)
class _StreamState:
    """What the chunks of a streamed completion add up to (choice 0 only)."""

    model_name: str
    text: list[str] = field(default_factory=list[str])
    refusal: list[str] = field(default_factory=list[str])
    reason: str | None = None
    usage: CompletionUsage | None = None
    calls: list[_PartialCall] = field(default_factory=list[_PartialCall])
    by_index: dict[int, _PartialCall] = field(default_factory=dict[int, _PartialCall])

    def feed(self, chunk: ChatCompletionChunk, on_text: Callable[[str], None]) -> None:
        self.model_name = chunk.model or self.model_name
        if chunk.usage is not None:
            self.usage = chunk.usage
        for choice in chunk.choices:
            if choice.index != 0:
                continue
            if choice.finish_reason:
                self.reason = choice.finish_reason
            delta = choice.delta
            if delta.content:
                self.text.append(delta.content)
                on_text(delta.content)
            if delta.refusal:
                self.refusal.append(delta.refusal)
            self._feed_calls(delta.tool_calls or ())

    def _feed_calls(self, deltas: Iterable[ChoiceDeltaToolCall]) -> None:
        for delta in deltas:
            call = self.by_index.get(delta.index)
            # a new id at a known index is a new call: some servers number every call 0
            if call is None or (delta.id and call.id and delta.id != call.id):
                call = self.by_index[delta.index] = _PartialCall()
                self.calls.append(call)
            if delta.id:
                call.id = delta.id
            if delta.function is not None:
                call.name += delta.function.name or ""
                call.arguments.append(delta.function.arguments or "")

    def tool_calls(self) -> list[ToolCall]:
        return [
            ToolCall(id=call.id or f"call_{i}", name=call.name, arguments="".join(call.arguments))
            for i, call in enumerate(self.calls)
        ]


def _error(exc: openai.OpenAIError, name: str, model_name: str, base_url: str) -> ModelError:
    """The `ModelError` for an SDK error: retryable when trying again may help."""
    if isinstance(exc, openai.APIStatusError):
        return _status_error(exc, name, model_name, base_url)
    if isinstance(exc, openai.APITimeoutError):
        return ModelError(
            f"{name}: the request to {base_url} timed out; trying again may help",
            model=name,
            retryable=True,
        )
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc
        return ModelError(
            f"{name}: cannot reach {base_url} ({cause}); check the server is running and"
            " OPENAI_BASE_URL (or base_url=)",
            model=name,
            retryable=True,
        )
    if isinstance(exc, openai.APIError):
        # an error event inside a stream: the answer broke off
        if _out_of_quota(exc):
            return ModelError(f"{name}: {exc.message} ({_QUOTA_ADVICE})", model=name)
        return ModelError(
            f"{name}: the answer broke off with an error: {exc.message}; trying again may help",
            model=name,
            retryable=True,
        )
    return ModelError(f"{name}: {exc}", model=name)


_QUOTA_ADVICE = (
    "the account is out of credit or over its spend limit: add credit or raise the limit;"
    " trying again will not help"
)


def _out_of_quota(exc: openai.APIError) -> bool:
    return "insufficient_quota" in (exc.code, exc.type)


def _status_error(
    exc: openai.APIStatusError, name: str, model_name: str, base_url: str
) -> ModelHTTPError:
    status = exc.status_code
    headers = exc.response.headers
    if _out_of_quota(exc):
        advice, retryable = _QUOTA_ADVICE, False
    else:
        retryable = retryable_status(status, headers)
        advice = _advice(status, exc.code, model_name, base_url, retryable)
    return ModelHTTPError(
        f"{name}: HTTP {status}: {_detail(exc)} ({advice})",
        model=name,
        status_code=status,
        retryable=retryable,
        retry_after=retry_after(headers) if retryable else None,
    )


def _advice(status: int, code: str | None, model_name: str, base_url: str, retryable: bool) -> str:
    if code == "context_length_exceeded":
        return "the conversation is longer than the model's context window"
    if status == 401:
        return "check OPENAI_API_KEY (or api_key=) and that it belongs to this endpoint"
    if status == 403:
        return f"the key has no access to {model_name!r} here; check the project and region"
    if status == 404:
        return f"check the model name {model_name!r} and the endpoint {base_url}"
    if status == 429:
        return "rate limited: wait and try again"
    if retryable:
        return "trying again may help"
    return "the endpoint refused the request; trying it again unchanged will not help"


def _detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, Mapping):
        message = cast(Mapping[str, object], body).get("message")
        if isinstance(message, str) and message:
            return message
    return exc.message
