"""`AnthropicModel` through the real `anthropic` SDK against `httpx2.MockTransport`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import anthropic
import httpx2
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
from taskloom.models.anthropic import AnthropicModel

Handler = Callable[[httpx2.Request], httpx2.Response]

CITY = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER = {"type": "object", "properties": {"temp_c": {"type": "number"}}}
LOOKUP = ToolDefinition(name="lookup", description="Find a city.", parameters=CITY)
HELLO = ModelRequest(messages=(UserMessage(content="hi"),))
WEATHER_OUTPUT = OutputSpec(name="Weather", schema=WEATHER, description="Today's weather.")


class Serve(Protocol):
    def __call__(
        self, handler: Handler, *, max_tokens: int = 4096
    ) -> tuple[AnthropicModel, list[httpx2.Request]]: ...


@pytest.fixture(autouse=True)
def _no_anthropic_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "ANTHROPIC_BASE_URL",
        "ANTHROPIC_PROFILE",
        "ANTHROPIC_CONFIG_DIR",
    ):
        monkeypatch.delenv(name, raising=False)
    # no profile on this machine's disk can lend credentials to a test
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """A model whose requests go to `handler`; the requests it received are recorded."""
    clients: list[httpx2.AsyncClient] = []

    def make(
        handler: Handler, *, max_tokens: int = 4096
    ) -> tuple[AnthropicModel, list[httpx2.Request]]:
        seen: list[httpx2.Request] = []

        def record(request: httpx2.Request) -> httpx2.Response:
            seen.append(request)
            return handler(request)

        client = httpx2.AsyncClient(transport=httpx2.MockTransport(record))
        clients.append(client)
        model = AnthropicModel(
            "claude-test", api_key="sk-ant-test", http_client=client, max_tokens=max_tokens
        )
        return model, seen

    yield make
    for client in clients:
        await client.aclose()


def message(
    *content: dict[str, Any], stop: str = "end_turn", usage: dict[str, Any] | None = None
) -> httpx2.Response:
    return httpx2.Response(
        200,
        json={
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-test-20260101",
            "content": list(content),
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage or {"input_tokens": 11, "output_tokens": 4},
        },
    )


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def tool_use(call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_use", "id": call_id, "name": name, "input": arguments}


def events(*items: tuple[str, dict[str, Any]]) -> httpx2.Response:
    payload = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in items)
    return httpx2.Response(
        200, headers={"content-type": "text/event-stream"}, content=payload.encode()
    )


def message_start(usage: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    start: dict[str, Any] = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test-20260101",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
    }
    return "message_start", {"type": "message_start", "message": start}


def block_start(index: int, block: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "content_block_start", {
        "type": "content_block_start",
        "index": index,
        "content_block": block,
    }


def block_delta(index: int, delta: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}


def block_stop(index: int) -> tuple[str, dict[str, Any]]:
    return "content_block_stop", {"type": "content_block_stop", "index": index}


def message_delta(stop: str, usage: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "message_delta", {
        "type": "message_delta",
        "delta": {"stop_reason": stop, "stop_sequence": None},
        "usage": usage,
    }


MESSAGE_STOP = ("message_stop", {"type": "message_stop"})
PING = ("ping", {"type": "ping"})


def body(request: httpx2.Request) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(request.content)
    return decoded


def error(status: int, kind: str, message: str, **headers: str) -> Handler:
    payload = {"type": "error", "error": {"type": kind, "message": message}}
    return lambda request: httpx2.Response(status, json=payload, headers=headers)


# --- text, settings, setup --------------------------------------------------------------------


async def test_plain_text(serve: Serve) -> None:
    model, seen = serve(lambda request: message(text("Hello"), text(" there")))

    response = await model.request(HELLO)

    assert response.text == "Hello there"
    assert response.tool_calls == ()
    assert response.finish_reason == "stop"
    assert response.model_name == "claude-test-20260101"
    assert response.usage.input_tokens == 11
    assert response.usage.output_tokens == 4
    [request] = seen
    assert str(request.url) == "https://api.anthropic.com/v1/messages"
    assert body(request) == {
        "model": "claude-test",
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "stream": False,
    }
    assert model.name == "anthropic:claude-test"
    assert model.provider == "anthropic"


async def test_settings_are_passed_through(serve: Serve) -> None:
    model, seen = serve(lambda request: message(text("ok")))
    settings = ModelSettings(max_tokens=300, temperature=0.5, seed=3, timeout=30)

    await model.request(ModelRequest(messages=HELLO.messages, settings=settings))

    sent = body(seen[0])
    assert sent["max_tokens"] == 300
    assert sent["temperature"] == 0.5
    assert "seed" not in sent  # Anthropic has no seed


async def test_usage_counts_cache_reads_and_writes_as_input(serve: Serve) -> None:
    usage = {
        "input_tokens": 50,
        "output_tokens": 7,
        "cache_read_input_tokens": 1000,
        "cache_creation_input_tokens": 200,
    }
    model, _ = serve(lambda request: message(text("x"), usage=usage))

    response = await model.request(HELLO)

    assert response.usage.input_tokens == 1250
    assert response.usage.output_tokens == 7
    assert response.usage.cache_read_tokens == 1000
    assert response.usage.cache_write_tokens == 200


def test_no_credentials_is_a_user_error() -> None:
    with pytest.raises(UserError, match="ANTHROPIC_API_KEY"):
        AnthropicModel("claude-test")


def test_infer_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")

    model = infer_model("anthropic:claude-test")

    assert isinstance(model, AnthropicModel)
    assert model.name == "anthropic:claude-test"


async def test_a_given_client_is_used_and_left_open() -> None:
    async with httpx2.AsyncClient(
        transport=httpx2.MockTransport(lambda request: message(text("mine")))
    ) as http_client:
        client = anthropic.AsyncAnthropic(api_key="sk-ant-mine", http_client=http_client)
        model = AnthropicModel("claude-test", client=client)

        response = await model.request(HELLO)
        await model.close()

        assert response.text == "mine"
        assert not client.is_closed()
        with pytest.raises(UserError, match="either client="):
            AnthropicModel("claude-test", client=client, base_url="http://elsewhere")


# --- tools and the conversation ---------------------------------------------------------------


async def test_tool_calls_and_the_conversation(serve: Serve) -> None:
    model, seen = serve(
        lambda request: message(
            text("Let me look."),
            tool_use("toolu_3", "lookup", {"city": "Lyon"}),
            stop="tool_use",
        )
    )
    request = ModelRequest(
        messages=(
            SystemMessage(content="Be brief."),
            UserMessage(content="Weather in Paris and Rome?"),
            AssistantMessage(
                tool_calls=(
                    ToolCall(id="toolu_1", name="lookup", arguments='{"city": "Paris"}'),
                    ToolCall(id="toolu_2", name="lookup", arguments='{"city": "Ro'),
                )
            ),
            ToolResultMessage(call_id="toolu_1", name="lookup", content='{"temp_c": 21}'),
            ToolResultMessage(
                call_id="toolu_2", name="lookup", content="invalid JSON", is_error=True
            ),
            UserMessage(content="And Lyon?"),
            SystemMessage(content="Answer in French."),
        ),
        tools=(LOOKUP,),
    )

    response = await model.request(request)

    sent = body(seen[0])
    assert sent["system"] == "Be brief.\n\nAnswer in French."
    assert sent["tools"] == [
        {"name": "lookup", "description": "Find a city.", "input_schema": CITY}
    ]
    assert "tool_choice" not in sent
    assert sent["messages"] == [
        {"role": "user", "content": [text("Weather in Paris and Rome?")]},
        {
            "role": "assistant",
            "content": [
                tool_use("toolu_1", "lookup", {"city": "Paris"}),
                tool_use("toolu_2", "lookup", {"_invalid_arguments": '{"city": "Ro'}),
            ],
        },
        {
            # the tool results of one turn travel as one user message
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": '{"temp_c": 21}'},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "content": "invalid JSON",
                    "is_error": True,
                },
                text("And Lyon?"),
            ],
        },
    ]
    assert response.text == "Let me look."
    assert response.tool_calls == (
        ToolCall(id="toolu_3", name="lookup", arguments='{"city": "Lyon"}'),
    )
    assert response.finish_reason == "tool_calls"


@pytest.mark.parametrize(
    ("reported", "expected"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("tool_use", "tool_calls"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("refusal", "content_filter"),
        ("pause_turn", "other"),
    ],
)
async def test_stop_reasons(serve: Serve, reported: str, expected: str) -> None:
    model, _ = serve(lambda request: message(text("x"), stop=reported))

    response = await model.request(HELLO)

    assert response.finish_reason == expected


# --- structured output --------------------------------------------------------------------------


async def test_structured_output_forces_the_output_tool_when_it_is_the_only_one(
    serve: Serve,
) -> None:
    model, seen = serve(
        lambda request: message(tool_use("toolu_1", "Weather", {"temp_c": 21.5}), stop="tool_use")
    )

    response = await model.request(ModelRequest(messages=HELLO.messages, output=WEATHER_OUTPUT))

    sent = body(seen[0])
    assert sent["tools"] == [
        {"name": "Weather", "description": "Today's weather.", "input_schema": WEATHER}
    ]
    assert sent["tool_choice"] == {"type": "tool", "name": "Weather"}
    assert json.loads(response.text) == {"temp_c": 21.5}
    assert response.tool_calls == ()
    assert response.finish_reason == "stop"


async def test_structured_output_beside_other_tools(serve: Serve) -> None:
    model, seen = serve(
        lambda request: message(
            text("Here it is."),
            tool_use("toolu_1", "lookup", {"city": "Oslo"}),
            tool_use("toolu_2", "Weather", {"temp_c": -3}),
            stop="tool_use",
        )
    )

    response = await model.request(
        ModelRequest(messages=HELLO.messages, tools=(LOOKUP,), output=WEATHER_OUTPUT)
    )

    sent = body(seen[0])
    assert [tool["name"] for tool in sent["tools"]] == ["lookup", "Weather"]
    assert sent["tool_choice"] == {"type": "auto"}
    # the output tool's call wins and is the answer, not a tool call
    assert json.loads(response.text) == {"temp_c": -3}
    assert response.tool_calls == ()


async def test_output_name_is_made_fit_for_a_tool_name(serve: Serve) -> None:
    model, seen = serve(
        lambda request: message(tool_use("t", "Weather_report", {"temp_c": 1}), stop="tool_use")
    )
    output = OutputSpec(name="Weather report", schema=WEATHER)

    response = await model.request(ModelRequest(messages=HELLO.messages, output=output))

    assert body(seen[0])["tool_choice"] == {"type": "tool", "name": "Weather_report"}
    assert response.text == '{"temp_c": 1}'


# --- streaming ----------------------------------------------------------------------------------


async def test_streaming_text_and_tool_call_deltas(serve: Serve) -> None:
    model, seen = serve(
        lambda request: events(
            message_start({"input_tokens": 25, "output_tokens": 1, "cache_read_input_tokens": 5}),
            block_start(0, {"type": "text", "text": ""}),
            PING,
            block_delta(0, {"type": "text_delta", "text": "Let me "}),
            block_delta(0, {"type": "text_delta", "text": "check."}),
            block_stop(0),
            block_start(1, {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}),
            block_delta(1, {"type": "input_json_delta", "partial_json": ""}),
            block_delta(1, {"type": "input_json_delta", "partial_json": '{"city": '}),
            block_delta(1, {"type": "input_json_delta", "partial_json": '"Paris"}'}),
            block_stop(1),
            block_start(2, {"type": "tool_use", "id": "toolu_2", "name": "lookup", "input": {}}),
            block_stop(2),
            message_delta("tool_use", {"output_tokens": 42}),
            MESSAGE_STOP,
        )
    )
    deltas: list[str] = []

    response = await model.request(
        ModelRequest(messages=HELLO.messages, tools=(LOOKUP,)), on_text=deltas.append
    )

    assert body(seen[0])["stream"] is True
    assert deltas == ["Let me ", "check."]
    assert response.text == "Let me check."
    assert response.tool_calls == (
        ToolCall(id="toolu_1", name="lookup", arguments='{"city": "Paris"}'),
        ToolCall(id="toolu_2", name="lookup", arguments="{}"),
    )
    assert response.finish_reason == "tool_calls"
    assert response.usage.input_tokens == 30
    assert response.usage.cache_read_tokens == 5
    assert response.usage.output_tokens == 42
    assert response.model_name == "claude-test-20260101"


async def test_streaming_structured_output(serve: Serve) -> None:
    model, _ = serve(
        lambda request: events(
            message_start({"input_tokens": 10, "output_tokens": 1}),
            block_start(0, {"type": "tool_use", "id": "toolu_1", "name": "Weather", "input": {}}),
            block_delta(0, {"type": "input_json_delta", "partial_json": '{"temp_c": 4}'}),
            block_stop(0),
            message_delta("tool_use", {"output_tokens": 9}),
            MESSAGE_STOP,
        )
    )
    deltas: list[str] = []

    response = await model.request(
        ModelRequest(messages=HELLO.messages, output=WEATHER_OUTPUT), on_text=deltas.append
    )

    assert response.text == '{"temp_c": 4}'
    assert response.tool_calls == ()
    assert response.finish_reason == "stop"
    assert deltas == []


async def test_large_max_tokens_streams_even_without_on_text(serve: Serve) -> None:
    # the SDK refuses non-streaming requests that may run over ten minutes
    model, seen = serve(
        lambda request: events(
            message_start({"input_tokens": 3, "output_tokens": 1}),
            block_start(0, {"type": "text", "text": "Long"}),
            block_delta(0, {"type": "text_delta", "text": " answer"}),
            block_stop(0),
            message_delta("end_turn", {"output_tokens": 2}),
            MESSAGE_STOP,
        ),
        max_tokens=64_000,
    )

    response = await model.request(HELLO)

    assert body(seen[0])["stream"] is True
    assert response.text == "Long answer"
    assert response.usage.input_tokens == 3


async def test_overloaded_inside_the_stream_is_retryable(serve: Serve) -> None:
    model, _ = serve(
        lambda request: events(
            message_start({"input_tokens": 3, "output_tokens": 1}),
            (
                "error",
                {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            ),
        )
    )

    with pytest.raises(ModelHTTPError) as caught:
        await model.request(HELLO, on_text=lambda text: None)

    assert caught.value.status_code == 529
    assert caught.value.retryable


async def test_a_stream_that_breaks_off_is_retryable(serve: Serve) -> None:
    class Broken(httpx2.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            start = message_start({"input_tokens": 3, "output_tokens": 1})
            yield f"event: {start[0]}\ndata: {json.dumps(start[1])}\n\n".encode()
            raise httpx2.ReadError("connection reset")

    model, _ = serve(
        lambda request: httpx2.Response(
            200, headers={"content-type": "text/event-stream"}, stream=Broken()
        )
    )

    with pytest.raises(ModelError, match="cannot reach") as caught:
        await model.request(HELLO, on_text=lambda text: None)

    assert caught.value.retryable


# --- errors -----------------------------------------------------------------------------------


async def test_rate_limit_with_retry_after(serve: Serve) -> None:
    model, seen = serve(
        error(429, "rate_limit_error", "Too many requests.", **{"retry-after": "12"})
    )

    with pytest.raises(ModelHTTPError) as caught:
        await model.request(HELLO)

    assert caught.value.status_code == 429
    assert caught.value.retryable
    assert caught.value.retry_after == timedelta(seconds=12)
    assert "Too many requests." in str(caught.value)
    assert len(seen) == 1, "the SDK must not retry on its own"


async def test_overloaded_is_retryable(serve: Serve) -> None:
    model, _ = serve(error(529, "overloaded_error", "Overloaded"))

    with pytest.raises(ModelHTTPError) as caught:
        await model.request(HELLO)

    assert caught.value.status_code == 529
    assert caught.value.retryable
    assert "overloaded" in str(caught.value)


async def test_unauthorized_is_not_retryable_and_says_what_to_check(serve: Serve) -> None:
    model, _ = serve(error(401, "authentication_error", "invalid x-api-key"))

    with pytest.raises(ModelHTTPError) as caught:
        await model.request(HELLO)

    assert not caught.value.retryable
    assert "ANTHROPIC_API_KEY" in str(caught.value)


async def test_low_credit_balance_is_a_spend_limit(serve: Serve) -> None:
    model, _ = serve(
        error(
            400,
            "invalid_request_error",
            "Your credit balance is too low to access the Anthropic API.",
        )
    )

    with pytest.raises(ModelHTTPError) as caught:
        await model.request(HELLO)

    assert caught.value.status_code == 400
    assert not caught.value.retryable
    assert "spend limit" in str(caught.value)


async def test_billing_error_is_a_spend_limit(serve: Serve) -> None:
    model, _ = serve(error(402, "billing_error", "Payment required.", **{"retry-after": "5"}))

    with pytest.raises(ModelHTTPError) as caught:
        await model.request(HELLO)

    assert not caught.value.retryable
    assert caught.value.retry_after is None


@pytest.mark.parametrize(
    ("status", "kind", "retryable"),
    [
        (400, "invalid_request_error", False),
        (403, "permission_error", False),
        (404, "not_found_error", False),
        (413, "request_too_large", False),
        (500, "api_error", True),
        (503, "api_error", True),
        (504, "timeout_error", True),
    ],
)
async def test_status_codes(serve: Serve, status: int, kind: str, retryable: bool) -> None:
    model, seen = serve(error(status, kind, "something"))

    with pytest.raises(ModelHTTPError) as caught:
        await model.request(HELLO)

    assert caught.value.status_code == status
    assert caught.value.retryable is retryable
    assert len(seen) == 1


async def test_not_found_names_the_model(serve: Serve) -> None:
    model, _ = serve(error(404, "not_found_error", "model: claude-nope"))

    with pytest.raises(ModelHTTPError, match="'claude-test'"):
        await model.request(HELLO)


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
