"""`OpenAIModel` through the real `openai` SDK against `httpx2.MockTransport`."""

from __future__ import annotations

import asyncio
import email.utils
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx2
import openai
import pytest

from taskloom.errors import ModelError, ModelHTTPError, UserError
from taskloom.models import (
    AssistantMessage,
    ModelRequest,
    ModelSettings,
    OutputSpec,
    SystemMessage,
    ToolCall,
    ToolDefinition,
    ToolResultMessage,
    UserMessage,
    infer_model,
)
from taskloom.models.openai import OpenAIModel, StructuredOutput

Handler = Callable[[httpx2.Request], httpx2.Response | Awaitable[httpx2.Response]]

CITY = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER = {"type": "object", "properties": {"temp_c": {"type": "number"}}}
LOOKUP = ToolDefinition(name="lookup", description="Find a city.", parameters=CITY)
HELLO = ModelRequest(messages=(UserMessage(content="hi"),))


class Serve(Protocol):
    def __call__(
        self, handler: Handler, *, structured_output: StructuredOutput = "json_schema"
    ) -> tuple[OpenAIModel, list[httpx2.Request]]: ...


@pytest.fixture(autouse=True)
def _no_openai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """A model whose requests go to `handler`; the requests it received are recorded."""
    clients: list[httpx2.AsyncClient] = []

    def make(
        handler: Handler, *, structured_output: StructuredOutput = "json_schema"
    ) -> tuple[OpenAIModel, list[httpx2.Request]]:
        seen: list[httpx2.Request] = []

        async def record(request: httpx2.Request) -> httpx2.Response:
            seen.append(request)
            response = handler(request)
            return await response if isinstance(response, Awaitable) else response

        client = httpx2.AsyncClient(transport=httpx2.MockTransport(record))
        clients.append(client)
        model = OpenAIModel(
            "gpt-4o-mini",
            api_key="sk-test",
            http_client=client,
            structured_output=structured_output,
        )
        return model, seen

    yield make
    for client in clients:
        await client.aclose()


def completion(
    content: str | None = None,
    *,
    tool_calls: list[dict[str, Any]] | None = None,
    finish: str = "stop",
    usage: dict[str, Any] | None = None,
    refusal: str | None = None,
) -> httpx2.Response:
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": refusal}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return httpx2.Response(
        200,
        json={
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "finish_reason": finish, "message": message}],
            "usage": usage or {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
        },
    )


def function_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def sse(*chunks: dict[str, Any]) -> httpx2.Response:
    body = "".join(f"data: {json.dumps(chunk)}\n\n" for chunk in chunks) + "data: [DONE]\n\n"
    return httpx2.Response(
        200, headers={"content-type": "text/event-stream"}, content=body.encode()
    )


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def usage_chunk(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


def body(request: httpx2.Request) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(request.content)
    return decoded


def error(status: int, message: str, *, code: str | None = None, **headers: str) -> Handler:
    payload = {"error": {"message": message, "type": code or "error", "param": None, "code": code}}
    return lambda request: httpx2.Response(status, json=payload, headers=headers)


# --- text, settings, endpoints ----------------------------------------------------------------


async def test_plain_text(serve: Serve) -> None:
    model, seen = serve(lambda request: completion("Hello!"))

    response = await model.request(HELLO)

    assert response.text == "Hello!"
    assert response.tool_calls == ()
    assert response.finish_reason == "stop"
    assert response.model_name == "gpt-4o-mini-2024-07-18"
    assert response.usage.input_tokens == 12
    assert response.usage.output_tokens == 3
    [request] = seen
    assert str(request.url) == "https://api.openai.com/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.headers["x-stainless-retry-count"] == "0"
    assert body(request) == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": False,
    }
    assert model.name == "openai:gpt-4o-mini"
    assert model.provider == "openai"


async def test_settings_are_passed_through(serve: Serve) -> None:
    model, seen = serve(lambda request: completion("ok"))
    settings = ModelSettings(max_tokens=50, temperature=0.2, seed=7, timeout=30)

    await model.request(ModelRequest(messages=HELLO.messages, settings=settings))

    sent = body(seen[0])
    # api.openai.com's reasoning models refuse max_tokens
    assert sent["max_completion_tokens"] == 50
    assert "max_tokens" not in sent
    assert sent["temperature"] == 0.2
    assert sent["seed"] == 7


async def test_compatible_server_gets_max_tokens() -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return completion("ok")

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(handler)) as client:
        model = OpenAIModel("llama3.2", base_url="http://localhost:11434/v1", http_client=client)
        await model.request(
            ModelRequest(messages=HELLO.messages, settings=ModelSettings(max_tokens=9))
        )

    assert str(seen[0].url) == "http://localhost:11434/v1/chat/completions"
    sent = body(seen[0])
    assert sent["max_tokens"] == 9
    assert "max_completion_tokens" not in sent


async def test_env_base_url_without_key_uses_a_placeholder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1")
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return completion("local")

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(handler)) as client:
        response = await OpenAIModel("qwen", http_client=client).request(HELLO)

    assert response.text == "local"
    assert str(seen[0].url) == "http://127.0.0.1:8000/v1/chat/completions"
    assert seen[0].headers["authorization"].startswith("Bearer ")


async def test_env_key_and_base_url_are_respected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    monkeypatch.setenv("OPENAI_BASE_URL", "https://openrouter.example/api/v1")
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return completion("routed")

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(handler)) as client:
        await OpenAIModel("some/model", http_client=client).request(HELLO)

    assert str(seen[0].url) == "https://openrouter.example/api/v1/chat/completions"
    assert seen[0].headers["authorization"] == "Bearer sk-from-env"


def test_no_key_and_no_base_url_is_a_user_error() -> None:
    with pytest.raises(UserError, match="OPENAI_API_KEY"):
        OpenAIModel("gpt-4o-mini")


def test_infer_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")

    model = infer_model("openai:gpt-4o-mini")

    assert isinstance(model, OpenAIModel)
    assert model.name == "openai:gpt-4o-mini"
    assert model.model_name == "gpt-4o-mini"


async def test_a_given_client_is_used_and_left_open() -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return completion("ok")

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(handler)) as http_client:
        client = openai.AsyncOpenAI(api_key="sk-mine", http_client=http_client)
        model = OpenAIModel("gpt-4o-mini", client=client)
        await model.request(HELLO)
        await model.close()
        await model.close()

        assert not client.is_closed()
        assert seen[0].headers["authorization"] == "Bearer sk-mine"
        with pytest.raises(UserError, match="either client="):
            OpenAIModel("gpt-4o-mini", client=client, api_key="sk-other")


def test_unknown_structured_output_is_a_user_error() -> None:
    with pytest.raises(UserError, match="structured_output"):
        OpenAIModel("m", api_key="k", structured_output="xml")  # pyright: ignore[reportArgumentType] -- the wrong value under test


# --- tools and the conversation ---------------------------------------------------------------


async def test_tool_calls_and_the_conversation(serve: Serve) -> None:
    model, seen = serve(
        lambda request: completion(
            None,
            tool_calls=[
                function_call("call_b", "lookup", '{"city": "Lyon"}'),
                function_call("call_c", "lookup", '{"city": "Ly'),
            ],
            finish="tool_calls",
        )
    )
    request = ModelRequest(
        messages=(
            SystemMessage(content="Be brief."),
            UserMessage(content="Weather in Paris?"),
            AssistantMessage(
                text="Looking.",
                tool_calls=(ToolCall(id="call_a", name="lookup", arguments='{"city": "Paris"}'),),
            ),
            ToolResultMessage(call_id="call_a", name="lookup", content='{"temp_c": 21}'),
            ToolResultMessage(
                call_id="call_z", name="lookup", content="no such city", is_error=True
            ),
            AssistantMessage(text="It is 21."),
            UserMessage(content="And Lyon?"),
        ),
        tools=(LOOKUP,),
    )

    response = await model.request(request)

    sent = body(seen[0])
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {"name": "lookup", "description": "Find a city.", "parameters": CITY},
        }
    ]
    assert "tool_choice" not in sent
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "Looking.",
            "tool_calls": [function_call("call_a", "lookup", '{"city": "Paris"}')],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": '{"temp_c": 21}'},
        {"role": "tool", "tool_call_id": "call_z", "content": "no such city"},
        {"role": "assistant", "content": "It is 21."},
        {"role": "user", "content": "And Lyon?"},
    ]
    assert response.finish_reason == "tool_calls"
    assert response.text == ""
    # malformed arguments pass through untouched: the loop tells the model
    assert response.tool_calls == (
        ToolCall(id="call_b", name="lookup", arguments='{"city": "Lyon"}'),
        ToolCall(id="call_c", name="lookup", arguments='{"city": "Ly'),
    )


async def test_assistant_tool_calls_without_text_send_null_content(serve: Serve) -> None:
    model, seen = serve(lambda request: completion("done"))
    call = ToolCall(id="call_a", name="lookup", arguments="{}")

    await model.request(
        ModelRequest(messages=(UserMessage(content="go"), AssistantMessage(tool_calls=(call,))))
    )

    assistant = body(seen[0])["messages"][1]
    assert assistant == {
        "role": "assistant",
        "content": None,
        "tool_calls": [function_call("call_a", "lookup", "{}")],
    }


async def test_stop_beside_tool_calls_is_reported_as_tool_calls(serve: Serve) -> None:
    # some compatible servers answer "stop" while calling tools
    model, _ = serve(
        lambda request: completion(tool_calls=[function_call("c1", "lookup", "{}")], finish="stop")
    )

    response = await model.request(ModelRequest(messages=HELLO.messages, tools=(LOOKUP,)))

    assert response.finish_reason == "tool_calls"
    assert response.tool_calls == (ToolCall(id="c1", name="lookup", arguments="{}"),)


@pytest.mark.parametrize(
    ("reported", "expected"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("content_filter", "content_filter"),
        ("tool_calls", "tool_calls"),
        ("function_call", "tool_calls"),
        ("eos_token", "other"),
    ],
)
async def test_finish_reasons(serve: Serve, reported: str, expected: str) -> None:
    model, _ = serve(lambda request: completion("x", finish=reported))

    response = await model.request(HELLO)

    assert response.finish_reason == expected


async def test_refusal_is_the_text_with_content_filter(serve: Serve) -> None:
    model, _ = serve(lambda request: completion(None, refusal="I can't help with that."))

    response = await model.request(HELLO)

    assert response.text == "I can't help with that."
    assert response.finish_reason == "content_filter"


async def test_usage_with_cached_tokens(serve: Serve) -> None:
    usage = {
        "prompt_tokens": 2000,
        "completion_tokens": 40,
        "total_tokens": 2040,
        "prompt_tokens_details": {"cached_tokens": 1536},
    }
    model, _ = serve(lambda request: completion("x", usage=usage))

    response = await model.request(HELLO)

    assert response.usage.input_tokens == 2000
    assert response.usage.output_tokens == 40
    assert response.usage.cache_read_tokens == 1536
    assert response.usage.cache_write_tokens == 0


# --- structured output --------------------------------------------------------------------------


async def test_structured_output_uses_json_schema(serve: Serve) -> None:
    model, seen = serve(lambda request: completion('{"temp_c": 21.5}'))
    output = OutputSpec(name="Weather", schema=WEATHER, description="Today's weather.")

    response = await model.request(ModelRequest(messages=HELLO.messages, output=output))

    assert body(seen[0])["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "Weather",
            "schema": WEATHER,
            "strict": False,
            "description": "Today's weather.",
        },
    }
    assert response.text == '{"temp_c": 21.5}'


async def test_structured_output_through_an_output_tool(serve: Serve) -> None:
    model, seen = serve(
        lambda request: completion(
            tool_calls=[
                function_call("c1", "lookup", '{"city": "Oslo"}'),
                function_call("c2", "Weather_report", '{"temp_c": -3}'),
            ],
            finish="tool_calls",
        ),
        structured_output="tool",
    )
    output = OutputSpec(name="Weather report", schema=WEATHER)

    response = await model.request(
        ModelRequest(messages=HELLO.messages, tools=(LOOKUP,), output=output)
    )

    sent = body(seen[0])
    assert "response_format" not in sent
    assert sent["tool_choice"] == "required"
    assert [tool["function"]["name"] for tool in sent["tools"]] == ["lookup", "Weather_report"]
    assert sent["tools"][1]["function"]["parameters"] == WEATHER
    # the output tool's call wins and is the answer, not a tool call
    assert response.text == '{"temp_c": -3}'
    assert response.tool_calls == ()
    assert response.finish_reason == "stop"


async def test_output_tool_mode_still_returns_ordinary_tool_calls(serve: Serve) -> None:
    model, _ = serve(
        lambda request: completion(
            tool_calls=[function_call("c1", "lookup", "{}")], finish="tool_calls"
        ),
        structured_output="tool",
    )
    output = OutputSpec(name="Weather", schema=WEATHER)

    response = await model.request(
        ModelRequest(messages=HELLO.messages, tools=(LOOKUP,), output=output)
    )

    assert response.tool_calls == (ToolCall(id="c1", name="lookup", arguments="{}"),)


async def test_structured_output_in_json_object_mode(serve: Serve) -> None:
    model, seen = serve(
        lambda request: completion('{"temp_c": 1}'), structured_output="json_object"
    )
    output = OutputSpec(name="Weather", schema=WEATHER)
    messages = (SystemMessage(content="Be brief."), UserMessage(content="Oslo?"))

    response = await model.request(ModelRequest(messages=messages, output=output))

    sent = body(seen[0])
    assert sent["response_format"] == {"type": "json_object"}
    roles = [message["role"] for message in sent["messages"]]
    assert roles == ["system", "system", "user"]
    assert json.dumps(WEATHER) in sent["messages"][1]["content"]
    assert response.text == '{"temp_c": 1}'


# --- streaming ----------------------------------------------------------------------------------


async def test_streaming_text(serve: Serve) -> None:
    model, seen = serve(
        lambda request: sse(
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": "Hel"}),
            chunk({"content": "lo"}),
            chunk({"content": "!"}),
            chunk({}, finish="stop"),
            usage_chunk(9, 3),
        )
    )
    deltas: list[str] = []

    response = await model.request(HELLO, on_text=deltas.append)

    assert deltas == ["Hel", "lo", "!"]
    assert response.text == "Hello!"
    assert response.finish_reason == "stop"
    assert response.usage.input_tokens == 9
    assert response.usage.output_tokens == 3
    assert response.model_name == "gpt-4o-mini-2024-07-18"
    sent = body(seen[0])
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}


async def test_streaming_tool_call_deltas(serve: Serve) -> None:
    def call_delta(index: int, **fields: Any) -> dict[str, Any]:
        return {"tool_calls": [{"index": index, **fields}]}

    model, _ = serve(
        lambda request: sse(
            chunk({"role": "assistant", "content": "Checking. "}),
            chunk(
                call_delta(
                    0, id="call_1", type="function", function={"name": "lookup", "arguments": ""}
                )
            ),
            chunk(call_delta(0, function={"arguments": '{"ci'})),
            chunk(call_delta(0, function={"arguments": 'ty": "Paris"}'})),
            chunk(
                call_delta(
                    1,
                    id="call_2",
                    type="function",
                    function={"name": "lookup", "arguments": '{"city"'},
                )
            ),
            chunk(call_delta(1, function={"arguments": ': "Rome"}'})),
            chunk({}, finish="tool_calls"),
            usage_chunk(20, 18),
        )
    )
    deltas: list[str] = []

    response = await model.request(
        ModelRequest(messages=HELLO.messages, tools=(LOOKUP,)), on_text=deltas.append
    )

    assert deltas == ["Checking. "]
    assert response.text == "Checking. "
    assert response.finish_reason == "tool_calls"
    assert response.tool_calls == (
        ToolCall(id="call_1", name="lookup", arguments='{"city": "Paris"}'),
        ToolCall(id="call_2", name="lookup", arguments='{"city": "Rome"}'),
    )
    assert response.usage.output_tokens == 18


async def test_streaming_calls_that_share_an_index_stay_apart(serve: Serve) -> None:
    # some servers number every call 0 and tell them apart by id
    model, _ = serve(
        lambda request: sse(
            chunk(
                {
                    "tool_calls": [
                        {"index": 0, "id": "a", "function": {"name": "lookup", "arguments": "{}"}}
                    ]
                }
            ),
            chunk(
                {
                    "tool_calls": [
                        {"index": 0, "id": "b", "function": {"name": "lookup", "arguments": "{}"}}
                    ]
                }
            ),
            chunk({}, finish="tool_calls"),
        )
    )

    response = await model.request(HELLO, on_text=lambda text: None)

    assert [call.id for call in response.tool_calls] == ["a", "b"]


async def test_streaming_structured_output_through_the_output_tool(serve: Serve) -> None:
    model, _ = serve(
        lambda request: sse(
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "c",
                            "function": {"name": "Weather", "arguments": '{"temp_c"'},
                        }
                    ]
                }
            ),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": ": 4}"}}]}),
            chunk({}, finish="tool_calls"),
        ),
        structured_output="tool",
    )
    output = OutputSpec(name="Weather", schema=WEATHER)

    response = await model.request(
        ModelRequest(messages=HELLO.messages, output=output), on_text=lambda text: None
    )

    assert response.text == '{"temp_c": 4}'
    assert response.tool_calls == ()


async def test_an_error_inside_the_stream_is_retryable(serve: Serve) -> None:
    model, _ = serve(
        lambda request: sse(
            chunk({"content": "Hel"}),
            {"error": {"message": "The server had an error.", "type": "server_error"}},
        )
    )

    with pytest.raises(ModelError, match="broke off") as caught:
        await model.request(HELLO, on_text=lambda text: None)

    assert caught.value.retryable


# --- errors -----------------------------------------------------------------------------------


async def test_rate_limit_with_retry_after(serve: Serve) -> None:
    model, _ = serve(
        error(429, "Rate limit reached.", code="rate_limit_exceeded", **{"retry-after": "7"})
    )

    with pytest.raises(ModelHTTPError) as caught:
        await model.request(HELLO)

    assert caught.value.status_code == 429
    assert caught.value.retryable
    assert caught.value.retry_after == timedelta(seconds=7)
    assert "Rate limit reached." in str(caught.value)
    assert caught.value.model == "openai:gpt-4o-mini"


async def test_retry_after_ms_wins(serve: Serve) -> None:
    headers = {"retry-after-ms": "1500", "retry-after": "2"}
    model, _ = serve(error(429, "slow down", **headers))

    with pytest.raises(ModelHTTPError) as caught:
        await model.request(HELLO)

    assert caught.value.retry_after == timedelta(seconds=1.5)


async def test_retry_after_as_an_http_date(serve: Serve) -> None:
    when = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    model, _ = serve(error(503, "maintenance", **{"retry-after": when}))

    with pytest.raises(ModelHTTPError) as caught:
        await model.request(HELLO)

    assert caught.value.retryable
    assert caught.value.retry_after is not None
    assert timedelta(seconds=25) < caught.value.retry_after <= timedelta(seconds=30)


async def test_insufficient_quota_is_not_retryable(serve: Serve) -> None:
    model, _ = serve(
        error(
            429,
            "You exceeded your current quota.",
            code="insufficient_quota",
            **{"retry-after": "1"},
        )
    )

    with pytest.raises(ModelHTTPError) as caught:
        await model.request(HELLO)

    assert caught.value.status_code == 429
    assert not caught.value.retryable
    assert caught.value.retry_after is None
    assert "credit" in str(caught.value)


async def test_unauthorized_is_not_retryable_and_says_what_to_check(serve: Serve) -> None:
    model, _ = serve(error(401, "Incorrect API key provided.", code="invalid_api_key"))

    with pytest.raises(ModelHTTPError) as caught:
        await model.request(HELLO)

    assert caught.value.status_code == 401
    assert not caught.value.retryable
    assert "OPENAI_API_KEY" in str(caught.value)


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (400, False),
        (403, False),
        (404, False),
        (422, False),
        (408, True),
        (409, True),
        (500, True),
        (502, True),
        (503, True),
    ],
)
async def test_status_codes(serve: Serve, status: int, retryable: bool) -> None:
    model, seen = serve(error(status, "something"))

    with pytest.raises(ModelHTTPError) as caught:
        await model.request(HELLO)

    assert caught.value.status_code == status
    assert caught.value.retryable is retryable
    assert len(seen) == 1, "the SDK must not retry on its own"


async def test_not_found_names_the_model(serve: Serve) -> None:
    model, _ = serve(error(404, "The model does not exist.", code="model_not_found"))

    with pytest.raises(ModelHTTPError, match="'gpt-4o-mini'"):
        await model.request(HELLO)


async def test_x_should_retry_overrides_the_status(serve: Serve) -> None:
    model, _ = serve(error(500, "bad", **{"x-should-retry": "false"}))

    with pytest.raises(ModelHTTPError) as caught:
        await model.request(HELLO)

    assert not caught.value.retryable


async def test_context_length_exceeded_says_so(serve: Serve) -> None:
    model, _ = serve(
        error(400, "maximum context length is 128000 tokens", code="context_length_exceeded")
    )

    with pytest.raises(ModelHTTPError, match="context window") as caught:
        await model.request(HELLO)

    assert not caught.value.retryable


async def test_connection_error_is_retryable(serve: Serve) -> None:
    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused", request=request)

    model, _ = serve(refuse)

    with pytest.raises(ModelError, match="cannot reach") as caught:
        await model.request(HELLO)

    assert not isinstance(caught.value, ModelHTTPError)
    assert caught.value.retryable


async def test_transport_timeout_is_retryable(serve: Serve) -> None:
    def stall(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("timed out", request=request)

    model, _ = serve(stall)

    with pytest.raises(ModelError, match="timed out") as caught:
        await model.request(HELLO)

    assert caught.value.retryable


async def test_settings_timeout_bounds_the_whole_request(serve: Serve) -> None:
    async def slow(request: httpx2.Request) -> httpx2.Response:
        await asyncio.sleep(5)
        return completion("late")  # pragma: no cover -- the timeout comes first

    model, _ = serve(slow)
    request = ModelRequest(messages=HELLO.messages, settings=ModelSettings(timeout=0.05))

    with pytest.raises(ModelError, match="within 0.05s") as caught:
        await model.request(request)

    assert caught.value.retryable
