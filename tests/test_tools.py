"""Tools: schemas from signatures and docstrings, validation the model can read, calls."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import functools
import math
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated, Any, Literal, cast

import pytest
from pydantic import BaseModel, Field

import taskloom
from taskloom import Task, TaskloomError, UserError
from taskloom._docstrings import parse_docstring
from taskloom.models import ToolDefinition
from taskloom.tools import (
    ArgumentIssue,
    IdempotencyKey,
    Tool,
    ToolArgumentsError,
    as_tool,
    result_text,
    tool,
)

# -- types used by the tools below -----------------------------------------------------------


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Point(BaseModel):
    """A point on the plane."""

    x: int
    y: int = 0


@dataclasses.dataclass
class Address:
    street: str
    number: int


def _walk(node: object) -> Iterator[dict[str, Any]]:
    """Every schema object in `node` (not the keys of `properties`)."""
    if isinstance(node, dict):
        node = cast(dict[str, Any], node)
        yield node
        for key, value in node.items():
            if key in ("properties", "$defs"):
                for sub in cast(dict[str, Any], value).values():
                    yield from _walk(sub)
            else:
                yield from _walk(value)
    elif isinstance(node, list):
        for item in cast(list[object], node):
            yield from _walk(item)


# -- schemas ---------------------------------------------------------------------------------


def test_schema_of_a_simple_function_is_exact() -> None:
    @tool
    def add(a: int, b: int = 1) -> int:
        """Add two numbers.

        Args:
            a: The first number.
            b: The second number,
                which defaults to one.

        Returns:
            The sum.
        """
        return a + b

    assert add.name == "add"
    assert add.description == "Add two numbers."
    assert add.parameters == {
        "type": "object",
        "properties": {
            "a": {"type": "integer", "description": "The first number."},
            "b": {
                "type": "integer",
                "description": "The second number, which defaults to one.",
                "default": 1,
            },
        },
        "required": ["a"],
        "additionalProperties": False,
    }
    assert add.definition() == ToolDefinition(
        name="add", description="Add two numbers.", parameters=add.parameters
    )


def test_schema_of_a_function_without_parameters_is_exact() -> None:
    @tool
    def now() -> str:
        return "noon"

    assert now.description == ""
    assert now.parameters == {"type": "object", "properties": {}, "additionalProperties": False}


def test_schema_of_optional_literal_list_and_annotated_parameters_is_exact() -> None:
    @tool
    def find(
        terms: list[str],
        mode: Literal["any", "all"] = "any",
        limit: Annotated[int, Field(gt=0, description="At most this many.")] = 10,
        since: str | None = None,
    ) -> None: ...

    assert find.parameters == {
        "type": "object",
        "properties": {
            "terms": {"type": "array", "items": {"type": "string"}},
            "mode": {"enum": ["any", "all"], "type": "string", "default": "any"},
            "limit": {
                "type": "integer",
                "exclusiveMinimum": 0,
                "description": "At most this many.",
                "default": 10,
            },
            "since": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
        },
        "required": ["terms"],
        "additionalProperties": False,
    }


def untyped(value, flag=False) -> object:  # pyright: ignore[reportMissingParameterType, reportUnknownParameterType] -- unannotated on purpose
    return value  # pyright: ignore[reportUnknownVariableType] -- unannotated on purpose


def test_unannotated_parameters_take_any_json_value() -> None:
    loose = as_tool(cast("Callable[..., object]", untyped))
    assert loose.parameters["properties"] == {"value": {}, "flag": {"default": False}}
    assert loose.parameters["required"] == ["value"]
    assert loose.validate('{"value": [1, {"a": null}]}') == {"value": [1, {"a": None}]}


def test_schema_of_models_dataclasses_and_enums_uses_defs_without_titles() -> None:
    @tool
    def plot(points: list[Point], color: Color, home: Address | None = None) -> None: ...

    schema = plot.parameters
    assert schema["properties"]["points"] == {"type": "array", "items": {"$ref": "#/$defs/Point"}}
    assert schema["properties"]["color"] == {"$ref": "#/$defs/Color"}
    assert schema["$defs"]["Point"] == {
        "type": "object",
        "description": "A point on the plane.",
        "properties": {"x": {"type": "integer"}, "y": {"type": "integer", "default": 0}},
        "required": ["x"],
    }
    assert schema["$defs"]["Color"] == {"enum": ["red", "blue"], "type": "string"}
    assert set(schema["$defs"]["Address"]["properties"]) == {"street", "number"}
    assert schema["required"] == ["points", "color"]
    assert [node for node in _walk(schema) if "title" in node] == []


def test_a_property_named_title_is_kept() -> None:
    @tool
    def publish(title: str, json: int, model_config: bool = False) -> None: ...

    assert list(publish.parameters["properties"]) == ["title", "json", "model_config"]
    assert publish.validate('{"title": "t", "json": 1}') == {"title": "t", "json": 1}


def test_defaults_without_a_json_form_are_not_shown() -> None:
    marker = object()

    @tool
    def f(x: Any = marker) -> None: ...

    assert f.parameters["properties"] == {"x": {}}
    assert f.parameters.get("required", []) == []


def test_an_explicit_field_description_beats_the_docstring() -> None:
    @tool
    def f(x: Annotated[int, Field(description="From the field.")]) -> None:
        """Do it.

        Args:
            x: From the docstring.
        """

    assert f.parameters["properties"]["x"]["description"] == "From the field."


def test_description_argument_overrides_the_docstring() -> None:
    @tool(description="Something else.")
    def f() -> None:
        """The docstring."""

    assert f.description == "Something else."


# -- docstrings ------------------------------------------------------------------------------


def test_sphinx_docstring() -> None:
    @tool
    def f(query: str, limit: int = 3) -> None:
        """Search the index.

        Uses the fast path.

        :param query: What to look for,
            in plain words.
        :param int limit: How many.
        :returns: Nothing.
        :rtype: None
        """

    assert f.description == "Search the index.\n\nUses the fast path."
    assert f.parameters["properties"]["query"]["description"] == "What to look for, in plain words."
    assert f.parameters["properties"]["limit"]["description"] == "How many."


def test_numpy_docstring() -> None:
    @tool
    def f(query: str, a: int, b: int) -> None:
        """Search the index.

        Parameters
        ----------
        query : str
            What to look for,
            in plain words.
        a, b : int
            Two numbers.

        Returns
        -------
        None
        """

    assert f.description == "Search the index."
    props = f.parameters["properties"]
    assert props["query"]["description"] == "What to look for, in plain words."
    assert props["a"]["description"] == props["b"]["description"] == "Two numbers."


def test_google_docstring_with_types_sections_and_text_after_them() -> None:
    doc = parse_docstring(
        """Summary line.

        Body paragraph
        on two lines.

        Args:
            name (str): The name.
            *items: Ignored stars.
            **options: More.
                Continued.

        Raises:
            ValueError: when it goes wrong.

        Closing words.
        """
    )
    assert doc.description == "Summary line.\n\nBody paragraph\non two lines.\n\nClosing words."
    assert doc.params == {
        "name": "The name.",
        "items": "Ignored stars.",
        "options": "More. Continued.",
    }


def test_prose_with_a_colon_is_not_a_section() -> None:
    doc = parse_docstring("Do it.\n\nUsage:\n    call it.\n")
    assert doc.description == "Do it.\n\nUsage:\n    call it."
    assert doc.params == {}
    assert parse_docstring(None).description == ""
    assert parse_docstring(":class:`Point` is returned.").description == (
        ":class:`Point` is returned."
    )


# -- validation ------------------------------------------------------------------------------


@tool
def book(
    guest: str,
    nights: int,
    color: Color = Color.RED,
    points: list[Point] | None = None,
    home: Address | None = None,
) -> str:
    """Book a room."""
    return f"{guest} x{nights}"


def test_validation_coerces_as_pydantic_lax_mode_does() -> None:
    args = book.validate(
        '{"guest": "Ann", "nights": "3", "color": "blue", "points": [{"x": "1"}],'
        ' "home": {"street": "Main", "number": "7"}}'
    )
    assert args == {
        "guest": "Ann",
        "nights": 3,
        "color": Color.BLUE,
        "points": [Point(x=1, y=0)],
        "home": Address(street="Main", number=7),
    }


def test_validation_leaves_defaults_to_the_function_and_blank_text_is_empty() -> None:
    assert book.validate('{"guest": "Ann", "nights": 1}') == {"guest": "Ann", "nights": 1}

    @tool
    def ping() -> str:
        return "pong"

    assert ping.validate("") == {}
    assert ping.validate("  ") == {}


def test_validation_errors_list_every_bad_field_readably() -> None:
    with pytest.raises(ToolArgumentsError) as info:
        book.validate(
            '{"nights": "many", "color": "green", "points": [{"x": 1}, {"x": "q"}],'
            ' "home": {"street": "Main", "numbr": 7}, "guests": 2}'
        )
    error = info.value
    assert not isinstance(error, TaskloomError)
    assert error.tool_name == "book"
    by_path = {issue.path: issue for issue in error.issues}
    assert list(by_path) == [
        "guest",
        "nights",
        "color",
        "points[1].x",
        "home.number",
        "home.numbr",
        "guests",
    ]
    assert by_path["guest"] == ArgumentIssue(
        path="guest", message="missing required argument", expected="string"
    )
    assert '(got "many")' in by_path["nights"].message
    assert by_path["nights"].expected == "integer"
    assert by_path["color"].expected == 'one of "red", "blue"'
    assert by_path["points[1].x"].expected == "integer"
    assert by_path["home.numbr"].message == "unexpected field"
    assert by_path["home.numbr"].expected == "only the known names (street, number)"
    assert by_path["guests"].message == "unexpected argument"
    assert "guest, nights, color, points, home" in by_path["guests"].expected
    text = str(error)
    assert text.splitlines()[0] == "Invalid arguments for tool 'book' (7 problems):"
    assert "- guest: missing required argument; expected string" in text
    assert "- points[1].x: Input should be a valid integer" in text
    assert text.endswith("Call the tool again with corrected arguments.")


def test_malformed_json_is_explained() -> None:
    with pytest.raises(ToolArgumentsError) as info:
        book.validate('{"guest": "Ann",')
    [issue] = info.value.issues
    assert issue.path == "arguments"
    assert issue.message.startswith("not valid JSON (")
    assert issue.expected.startswith("object with guest (string), nights (integer), color (")
    assert "(1 problem):" in str(info.value)


def test_arguments_that_are_not_an_object_are_explained() -> None:
    with pytest.raises(ToolArgumentsError) as info:
        book.validate("[1, 2]")
    [issue] = info.value.issues
    assert issue.path == "arguments"
    assert "(got [1,2])" in issue.message


def test_errors_of_one_union_value_are_merged() -> None:
    @tool
    def f(value: int | bool) -> None: ...

    with pytest.raises(ToolArgumentsError) as info:
        f.validate('{"value": [1]}')
    [issue] = info.value.issues
    assert issue.path == "value"
    assert issue.expected == "integer or boolean"
    assert "valid integer" in issue.message
    assert "valid boolean" in issue.message


class Tree(BaseModel):
    label: str
    children: list[Tree] = []


def test_nested_and_recursive_types_are_explained() -> None:
    @tool
    def grow(tree: Tree) -> None: ...

    with pytest.raises(ToolArgumentsError) as info:
        grow.validate('{"tree": {"label": "a", "children": [{"children": [], "x": 1}]}}')
    assert [(i.path, i.message) for i in info.value.issues] == [
        ("tree.children[0].label", "missing required field"),
    ]
    assert info.value.issues[0].expected == "string"
    with pytest.raises(ToolArgumentsError) as info:
        grow.validate("{}")
    assert info.value.issues[0].expected.startswith("object with label (string), children")


def test_long_values_are_cut_in_messages() -> None:
    with pytest.raises(ToolArgumentsError) as info:
        book.validate('{"guest": "Ann", "nights": "' + "x" * 500 + '"}')
    assert len(info.value.issues[0].message) < 200


# -- calls -----------------------------------------------------------------------------------


async def test_sync_tool_runs_in_a_thread_and_async_tool_on_the_loop() -> None:
    loop_thread = threading.get_ident()

    @tool
    def sync_where() -> int:
        return threading.get_ident()

    @tool
    async def async_where() -> int:
        await asyncio.sleep(0)
        return threading.get_ident()

    assert await sync_where.call({}) != loop_thread
    assert await async_where.call({}) == loop_thread


async def test_call_passes_validated_values() -> None:
    seen: list[object] = []

    @tool
    async def place(point: Point, color: Color = Color.RED) -> str:
        seen.extend([point, color])
        return "ok"

    assert await place.call(place.validate('{"point": {"x": "2"}}')) == "ok"
    assert seen == [Point(x=2), Color.RED]


async def test_task_and_idempotency_key_are_injected_and_not_in_the_schema() -> None:
    @tool
    def note(text: str, task: Task, key: IdempotencyKey) -> str:
        return f"{task.id}:{key}:{text}"

    assert list(note.parameters["properties"]) == ["text"]
    assert note.parameters["required"] == ["text"]
    with pytest.raises(ToolArgumentsError):
        note.validate('{"text": "hi", "task": "x"}')
    async with taskloom.open("memory://") as rt, rt.task("job") as task:
        assert (
            await note.call({"text": "hi"}, task=task, idempotency_key="k1") == f"{task.id}:k1:hi"
        )
        # inside the task's block, the current task is used when none is given
        assert await note.call({"text": "hi"}) == f"{task.id}::hi"


async def test_a_required_task_outside_any_task_is_refused() -> None:
    @tool
    async def needs(task: Task) -> str:
        return task.id

    @tool
    async def optional(task: Task | None = None) -> str:
        return "none" if task is None else task.id

    with pytest.raises(UserError, match="takes the active task"):
        await needs.call({})
    assert await optional.call({}) == "none"
    assert optional.parameters["properties"] == {}


async def test_positional_only_parameters_are_passed_by_position() -> None:
    @tool
    def span(a: int, b: int = 5, /, c: int = 0) -> tuple[int, int, int]:
        return (a, b, c)

    assert await span.call(span.validate('{"a": 1, "c": 3}')) == (1, 5, 3)
    assert await span.call(span.validate('{"a": 1, "b": 2}')) == (1, 2, 0)


async def test_async_tool_is_cancelled_at_its_timeout() -> None:
    cancelled = asyncio.Event()

    @tool(timeout=0.05)
    async def slow() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await slow.call({})
    assert time.monotonic() - started < 2
    assert cancelled.is_set()


async def test_sync_tool_is_not_waited_for_beyond_its_timeout() -> None:
    release = threading.Event()

    @tool(timeout=0.05)
    def blocking() -> str:
        release.wait(10)
        return "late"

    started = time.monotonic()
    try:
        with pytest.raises(TimeoutError):
            await blocking.call({})
        assert time.monotonic() - started < 2
    finally:
        release.set()  # let the thread end, so the loop's executor shuts down promptly


async def test_exceptions_of_the_function_propagate() -> None:
    @tool
    def boom() -> None:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        await boom.call({})


async def test_methods_partials_instances_and_coroutine_wrappers() -> None:
    class Counter:
        """Counts."""

        def __init__(self) -> None:
            self.total = 0

        def add(self, n: int) -> int:
            """Add to the total.

            Args:
                n: How much.
            """
            self.total += n
            return self.total

        async def __call__(self, n: int) -> int:
            return n * 2

    counter = Counter()
    method = as_tool(counter.add)
    assert method.name == "add"
    assert method.parameters["properties"] == {"n": {"type": "integer", "description": "How much."}}
    assert await method.call({"n": 2}) == 2

    def scale(x: int, factor: int) -> int:
        return x * factor

    partial = tool(functools.partial(scale, factor=3), name="triple")
    assert list(partial.parameters["properties"]) == ["x", "factor"]
    assert await partial.call(partial.validate('{"x": 2}')) == 6

    instance = tool(counter, name="double")
    assert instance.description == "Counts."
    assert await instance.call({"n": 4}) == 8

    async def inner(n: int) -> int:
        return n + 1

    def wrapper(n: int) -> Awaitable[int]:
        return inner(n)

    assert await as_tool(wrapper).call({"n": 1}) == 2


# -- the decorator and its refusals ----------------------------------------------------------


def test_decorator_forms_and_options() -> None:
    def f(x: int) -> int:
        return x

    plain = tool(f)
    configured = tool(name="renamed", effect="at_most_once", timeout=2.5, requires_approval=True)(f)
    assert (plain.name, plain.effect, plain.timeout, plain.requires_approval) == (
        "f",
        "idempotent",
        None,
        False,
    )
    assert (configured.name, configured.effect, configured.timeout) == (
        "renamed",
        "at_most_once",
        2.5,
    )
    assert configured.requires_approval
    assert tool(f, effect="pure").effect == "pure"
    assert as_tool(plain) is plain
    assert as_tool(f) == plain
    assert hash(as_tool(f)) == hash(plain)
    assert dataclasses.replace(plain, name="other").name == "other"
    assert "parameters" not in repr(plain)


def test_lambdas_need_a_name() -> None:
    with pytest.raises(UserError, match="name="):
        as_tool(lambda x: x)  # pyright: ignore[reportUnknownLambdaType, reportUnknownArgumentType] -- the point of the test
    echo = tool(lambda x: x, name="echo")  # pyright: ignore[reportUnknownLambdaType, reportUnknownArgumentType] -- idem
    assert echo.parameters["required"] == ["x"]


@pytest.mark.parametrize("name", ["", "has space", "x" * 65, "dots.bad", "ünï"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(UserError, match="letters, digits"):
        tool(name=name)
    with pytest.raises(UserError, match="letters, digits"):
        dataclasses.replace(as_tool(test_bad_names_are_refused), name=name)


def test_a_function_name_that_cannot_be_a_tool_name_is_refused() -> None:
    def größe() -> None: ...

    with pytest.raises(UserError, match="pass one with tool"):
        as_tool(größe)
    assert tool(größe, name="size").name == "size"


def test_star_parameters_are_refused() -> None:
    def many(*items: int) -> None: ...

    def options(**options: int) -> None: ...

    with pytest.raises(UserError, match=r"takes \*items.*declare each parameter"):
        as_tool(many)
    with pytest.raises(UserError, match=r"takes \*\*options"):
        as_tool(options)


def test_bad_options_and_objects_are_refused() -> None:
    with pytest.raises(UserError, match="not one of"):
        tool(effect="sometimes")  # pyright: ignore[reportArgumentType] -- the point of the test
    for timeout in (0, -1.0, math.nan):
        with pytest.raises(UserError, match="positive number of seconds"):
            tool(timeout=timeout)
    with pytest.raises(UserError, match="must be a function"):
        as_tool(cast(Any, 42))


def test_a_field_as_default_is_refused() -> None:
    def f(x: int = Field(default=1)) -> None: ...

    with pytest.raises(UserError, match=r"Annotated\[T, Field"):
        as_tool(f)


def test_unresolvable_and_undescribable_hints_are_refused() -> None:
    def unresolved(x: int) -> None: ...

    unresolved.__annotations__ = {"x": "NotDefinedAnywhere", "return": "None"}

    def opaque(x: Opaque) -> None: ...

    with pytest.raises(UserError, match="cannot resolve the type hints"):
        as_tool(unresolved)
    with pytest.raises(UserError, match="cannot describe"):
        as_tool(opaque)


class Opaque:
    """Not a type pydantic knows."""


# -- results ---------------------------------------------------------------------------------


class Weekday(str, enum.Enum):  # noqa: UP042 -- the mixin form, whose str() is not its value
    MONDAY = "monday"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("plain text", "plain text"),
        ("", "(no output)"),
        (Weekday.MONDAY, "monday"),
        (None, "null"),
        (3, "3"),
        (True, "true"),
        (1.5, "1.5"),
        ({"a": [1, "é"]}, '{"a":[1,"é"]}'),
        ([1, 2], "[1,2]"),
        ((1, 2), "[1,2]"),
        (Point(x=1), '{"x":1,"y":0}'),
        (Address(street="Main", number=7), '{"street":"Main","number":7}'),
        (math.inf, "inf"),
        ({"k": object}, "{'k': <class 'object'>}"),
        (Color.RED, "Color.RED"),
        (b"raw", "b'raw'"),
    ],
)
def test_result_text(value: object, text: str) -> None:
    assert result_text(value) == text


def test_tool_is_exported_as_a_dataclass() -> None:
    assert dataclasses.is_dataclass(Tool)
    from taskloom import tools

    assert list(tools.__all__) == sorted(tools.__all__)
