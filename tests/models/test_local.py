"""`LocalModel` against the real SmolLM2-135M GGUF, run by llama-cpp-python on the CPU."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections.abc import Iterator

import pytest
from pydantic import BaseModel

from taskloom.errors import UserError
from taskloom.models import (
    AssistantMessage,
    ModelRequest,
    ModelSettings,
    OutputSpec,
    SystemMessage,
    ToolDefinition,
    ToolResultMessage,
    UserMessage,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("llama_cpp") is None,
        reason="llama-cpp-python is not installed (pip install 'taskloom[local]')",
    ),
]

from taskloom.models._local_prompt import envelope_for  # noqa: E402 -- after the skip marks
from taskloom.models.local import LocalModel  # noqa: E402


class Weather(BaseModel):
    city: str
    temp_c: float


LOOKUP = ToolDefinition(
    name="lookup",
    description="Look up the current temperature of a city.",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
)
WEATHER = OutputSpec(name="Weather", schema=Weather.model_json_schema())


@pytest.fixture(scope="module")
def model() -> Iterator[LocalModel]:
    """SmolLM2 loaded once for the module (the loaded model is shared by the process)."""
    try:
        local = LocalModel("smollm2")
    except UserError as exc:
        pytest.skip(f"the SmolLM2 GGUF is not installed: {exc}")
    asyncio.run(local.load())
    yield local


async def test_a_plain_chat_answer_is_text(model: LocalModel) -> None:
    request = ModelRequest(messages=(UserMessage(content="Say hello in one short sentence."),))
    response = await model.request(request)
    assert response.text.strip()
    assert response.tool_calls == ()
    assert response.finish_reason == "stop"
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    assert response.model_name == "smollm2"


async def test_it_calls_the_tool_first_then_answers_with_the_output_schema(
    model: LocalModel,
) -> None:
    conversation = (
        SystemMessage(content="You tell the weather. Use the lookup tool."),
        UserMessage(content="What is the temperature in Paris?"),
    )
    first = await model.request(
        ModelRequest(messages=conversation, tools=(LOOKUP,), output=WEATHER)
    )
    assert first.finish_reason == "tool_calls"
    assert [call.name for call in first.tool_calls] == ["lookup"]
    arguments = json.loads(first.tool_calls[0].arguments)
    assert isinstance(arguments["city"], str)

    conversation += (
        AssistantMessage(tool_calls=first.tool_calls),
        ToolResultMessage(
            call_id=first.tool_calls[0].id, name="lookup", content='{"temp_c": 21.5}'
        ),
    )
    second = await model.request(
        ModelRequest(messages=conversation, tools=(LOOKUP,), output=WEATHER)
    )
    assert second.finish_reason == "stop"
    assert second.tool_calls == ()
    Weather.model_validate_json(second.text)


@pytest.mark.parametrize("max_tokens", [None, 5])
async def test_streamed_deltas_add_up_to_the_answer(
    model: LocalModel, max_tokens: int | None
) -> None:
    request = ModelRequest(
        messages=(UserMessage(content="Say hello in one short sentence."),),
        settings=ModelSettings(max_tokens=max_tokens),
    )
    deltas: list[str] = []
    streamed = await model.request(request, on_text=deltas.append)
    assert len(deltas) > 1
    assert "".join(deltas) == streamed.text
    # the same answer, and the same token counts, as without streaming
    plain = await model.request(request)
    assert streamed.text == plain.text
    assert streamed.finish_reason == plain.finish_reason == ("length" if max_tokens else "stop")
    assert streamed.usage == plain.usage


def test_same_named_definitions_of_two_tools_get_rules_of_their_own() -> None:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    def tool(name: str, item: dict[str, object]) -> ToolDefinition:
        parameters = {
            "type": "object",
            "properties": {"item": {"$ref": "#/$defs/Item"}},
            "required": ["item"],
            "$defs": {"Item": item},
        }
        return ToolDefinition(name=name, description="", parameters=parameters)

    request = ModelRequest(
        messages=(UserMessage(content="hi"),),
        tools=(
            tool("a", {"type": "object", "properties": {"n": {"type": "integer"}}}),
            tool("b", {"type": "object", "properties": {"s": {"type": "string"}}}),
        ),
    )
    envelope = envelope_for(request, tools_first=True)
    assert envelope is not None
    rules = dict(
        line.split(" ::= ", 1)
        for line in json_schema_to_gbnf(json.dumps(envelope.schema)).splitlines()
    )
    assert rules["tool0-Item"] != rules["tool1-Item"]
    assert "final" not in json.dumps(envelope.schema)  # required_first: tools only


def test_a_missing_gguf_file_is_a_user_error() -> None:
    with pytest.raises(UserError, match="no GGUF model file"):
        LocalModel("mine", model_path="/nonexistent/model.gguf")
