"""Models for tests: a scripted one and a function-driven one. Both run the real agent loop.

```python
model = ScriptedModel([
    reply(tool_calls=[call("lookup", city="Paris")]),
    reply('{"city": "Paris", "temp_c": 21.5}'),
])
```
"""

from __future__ import annotations

import inspect
import itertools
import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ..errors import ModelError
from ._base import Model, ModelRequest, ModelResponse, RequestUsage, ToolCall

__all__ = ("FunctionModel", "ScriptedModel", "call", "reply")

_ids = itertools.count(1)


def call(name: str, arguments: str | None = None, /, **kwargs: Any) -> ToolCall:
    """A tool call: `call("lookup", city="Paris")`, or raw argument text as the second argument."""
    text = arguments if arguments is not None else json.dumps(kwargs)
    return ToolCall(id=f"call_{next(_ids)}", name=name, arguments=text)


def reply(
    text: str = "",
    *,
    tool_calls: Iterable[ToolCall] = (),
    input_tokens: int = 10,
    output_tokens: int = 5,
    finish_reason: str | None = None,
) -> ModelResponse:
    """A model response with default token counts (10 in, 5 out)."""
    calls = tuple(tool_calls)
    reason = finish_reason or ("tool_calls" if calls else "stop")
    return ModelResponse(
        text=text,
        tool_calls=calls,
        usage=RequestUsage(input_tokens=input_tokens, output_tokens=output_tokens),
        finish_reason=reason,  # pyright: ignore[reportArgumentType] -- validated by the loop
        model_name="scripted",
    )


Step = ModelResponse | Exception | Callable[[ModelRequest], ModelResponse]


class ScriptedModel(Model):
    """Answers with the given responses in order; an `Exception` in the script is raised.

    Each entry may also be a function of the request, to check what the loop sent. It is
    stateful (a position in the script), so use one per run; `FunctionModel` is stateless.

    Args:
        script: The responses, exceptions or functions, in order.
        name: The model's name.
        stream_chunk: When streaming is asked for, the size of each text delta.
    """

    def __init__(self, script: Iterable[Step], *, name: str = "scripted", stream_chunk: int = 4):
        self.name = f"test:{name}"
        self.provider = "test"
        self.model_name = name
        self._script = list(script)
        self._position = 0
        self._stream_chunk = stream_chunk
        self.requests: list[ModelRequest] = []
        """Every request received, in order."""

    async def request(
        self, request: ModelRequest, *, on_text: Callable[[str], None] | None = None
    ) -> ModelResponse:
        self.requests.append(request)
        if self._position >= len(self._script):
            raise ModelError(
                f"the script of {self.name!r} has only {len(self._script)} responses",
                model=self.name,
            )
        step = self._script[self._position]
        self._position += 1
        if isinstance(step, Exception):
            raise step
        response = step if isinstance(step, ModelResponse) else step(request)
        _stream(response.text, on_text, self._stream_chunk)
        return response


class FunctionModel(Model):
    """Answers by calling `function(request)` (sync or async); stateless, so it may be shared.

    Args:
        function: Returns the response for a request; may raise `ModelError`.
        name: The model's name.
        stream_chunk: When streaming is asked for, the size of each text delta.
    """

    def __init__(
        self,
        function: Callable[[ModelRequest], ModelResponse | Awaitable[ModelResponse]],
        *,
        name: str = "function",
        stream_chunk: int = 4,
    ) -> None:
        self.name = f"test:{name}"
        self.provider = "test"
        self.model_name = name
        self._function = function
        self._stream_chunk = stream_chunk

    async def request(
        self, request: ModelRequest, *, on_text: Callable[[str], None] | None = None
    ) -> ModelResponse:
        result = self._function(request)
        response = await result if inspect.isawaitable(result) else result
        assert isinstance(response, ModelResponse), (
            "a FunctionModel function returns a ModelResponse"
        )
        _stream(response.text, on_text, self._stream_chunk)
        return response


def _stream(text: str, on_text: Callable[[str], None] | None, chunk: int) -> None:
    if on_text is not None and text:
        for start in range(0, len(text), chunk):
            on_text(text[start : start + chunk])
