"""``@tool``: schema from signature and docstring, injection, strict validation, result text."""

from __future__ import annotations

import dataclasses
import enum
import json
from typing import Annotated, Any, Literal

import jsonschema
import numpy as np
import pydantic
import pytest
from helpers import count, make_scenario, restock, roll, submit
from hypothesis import given, settings
from hypothesis import strategies as st
from typing_extensions import TypedDict

import simenv
from simenv import Sandbox, ScenarioError, Tool, ToolArgumentError, tool
from simenv.tools.base import Injectable, format_result, parse_docstring

META = jsonschema.Draft202012Validator


class Box(Sandbox):
    pass


class Clock(Injectable):
    pass


class Point(TypedDict):
    x: int
    y: int


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Unschemable:
    pass


@tool(effect="write")
def ship(
    box: Box,
    rng: np.random.Generator,
    order_id: str,
    weight_kg: float,
    speed: Literal["standard", "express"] = "standard",
    note: str | None = None,
    fragile: bool = False,
) -> dict[str, Any]:
    """Ship an order.

    Use only for paid orders.

    Args:
        order_id: The order to ship, e.g. "O-7".
        weight_kg: Parcel weight in kilograms,
            measured on the scale.
        speed: Delivery speed.
        note: Free text for the courier.
        fragile (bool): Whether to mark
            the parcel fragile.

    Returns:
        The shipment record.

    Raises:
        ToolError: never here.
    """
    return {"order_id": order_id, "weight_kg": weight_kg, "speed": speed, "box": type(box).__name__}


@tool
def plot(
    points: list[Point],
    tags: set[str],
    corner: tuple[int, int],
    colour: Colour = Colour.RED,
    weights: dict[str, float] | None = None,
    anything: Any = None,
) -> int:
    """Plot points.

    Args:
        points: Points to draw.
        tags: Labels, each once.
        corner: Top-left corner as [x, y].
        colour: Pen colour.
        weights: Optional weight per tag.
        anything: Any JSON value.
    """
    return len(points)


@tool
def ping() -> None:
    """Check that the service answers."""


def test_schema_from_signature_and_docstring() -> None:
    declaration = ship.schema()
    assert declaration["type"] == "function"
    schema = declaration["function"]
    assert schema["name"] == "ship"
    assert schema["description"] == (
        "Ship an order.\n\nUse only for paid orders.\n\nReturns: The shipment record."
    )
    parameters = schema["parameters"]
    props = parameters["properties"]
    assert list(props) == ["order_id", "weight_kg", "speed", "note", "fragile"]
    assert props["order_id"] == {"type": "string", "description": 'The order to ship, e.g. "O-7".'}
    assert props["weight_kg"] == {
        "type": "number",
        "description": "Parcel weight in kilograms, measured on the scale.",
    }
    assert props["speed"]["enum"] == ["standard", "express"]
    assert props["speed"]["default"] == "standard"
    assert props["note"]["anyOf"] == [{"type": "string"}, {"type": "null"}]
    assert (
        props["note"]["default"] is None
        and props["note"]["description"] == "Free text for the courier."
    )
    assert props["fragile"] == {
        "type": "boolean",
        "description": "Whether to mark the parcel fragile.",
        "default": False,
    }
    assert parameters["type"] == "object"
    assert parameters["required"] == ["order_id", "weight_kg"]
    assert parameters["additionalProperties"] is False
    assert "title" not in json.dumps(parameters)
    META.check_schema(parameters)


def test_injected_parameters_are_hidden_and_recorded() -> None:
    assert ship.injected == {"box": Box, "rng": np.random.Generator}
    assert ship.argument_names == ["order_id", "weight_kg", "speed", "note", "fragile"]
    assert ship.effect == "write" and ship.provenance == "sandbox"

    @tool
    def now(clock: Clock, fmt: str) -> str:
        """Tell the time.

        Args:
            fmt: strftime format.
        """
        return fmt

    assert now.injected == {"clock": Clock}
    assert list(now.parameters["properties"]) == ["fmt"]
    assert now.effect == "read" and now.provenance == "sandbox"
    assert ping.injected == {} and ping.provenance == "live"
    assert ping.parameters == {"type": "object", "properties": {}, "additionalProperties": False}


def test_name_description_and_provenance_can_be_overridden() -> None:
    def weather(city: str) -> str:
        """Original text.

        Args:
            city: City name.
        """
        return city

    custom = tool(name="get-weather", description="Weather now.", provenance="live")(weather)
    assert custom.name == "get-weather" and custom.description == "Weather now."
    assert custom.schema()["function"]["name"] == "get-weather"
    assert custom.parameters["properties"]["city"]["description"] == "City name."
    assert custom("Oslo") == "Oslo"  # calling the Tool calls the function
    assert repr(custom) == "Tool('get-weather', effect='read')"


def test_container_enum_and_typed_dict_arguments() -> None:
    props = plot.parameters["properties"]
    assert props["points"]["type"] == "array" and props["tags"]["uniqueItems"] is True
    assert props["corner"]["prefixItems"] == [{"type": "integer"}, {"type": "integer"}]
    assert plot.parameters["$defs"]["Point"]["required"] == ["x", "y"]
    assert plot.parameters["$defs"]["Colour"]["enum"] == ["red", "blue"]
    assert props["colour"]["default"] == "red"  # the JSON value, not the Enum member
    META.check_schema(plot.parameters)
    # Arguments arrive as JSON: arrays fill tuples and sets, strings fill enums.
    arguments = json.loads(
        '{"points": [{"x": 1, "y": 2}], "tags": ["a", "b"], "corner": [0, 5], "colour": "blue",'
        ' "weights": {"a": 1}, "anything": [1, "x", null]}'
    )
    values = plot.validate(arguments)
    assert values == {
        "points": [{"x": 1, "y": 2}],
        "tags": {"a", "b"},
        "corner": (0, 5),
        "colour": Colour.BLUE,
        "weights": {"a": 1.0},
        "anything": [1, "x", None],
    }
    assert plot.validate({"points": [], "tags": [], "corner": [1, 1]})["colour"] is Colour.RED
    with pytest.raises(ToolArgumentError, match=r"argument 'points\.0\.y'"):
        plot.validate({"points": [{"x": 1}], "tags": [], "corner": [0, 0]})
    with pytest.raises(ToolArgumentError, match=r"argument 'corner'"):
        plot.validate({"points": [], "tags": [], "corner": [0, 0, 0]})
    with pytest.raises(ToolArgumentError, match=r"argument 'colour'"):
        plot.validate({"points": [], "tags": [], "corner": [0, 0], "colour": "green"})


def test_validation_fills_defaults_and_accepts_int_for_float() -> None:
    assert ship.validate({"order_id": "O-1", "weight_kg": 2}) == {
        "order_id": "O-1",
        "weight_kg": 2.0,
        "speed": "standard",
        "note": None,
        "fragile": False,
    }
    assert type(ship.validate({"order_id": "O-1", "weight_kg": 2})["weight_kg"]) is float
    assert restock.validate({"item": "I-1"}) == {"item": "I-1", "amount": 1}
    assert ping.validate({}) == {}


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"weight_kg": 1.0}, "missing required argument 'order_id'"),
        (
            {"order_id": 7, "weight_kg": 1.0},
            "argument 'order_id': Input should be a valid string (got 7)",
        ),
        (
            {"order_id": "O", "weight_kg": "heavy"},
            "argument 'weight_kg': Input should be a valid number",
        ),
        (
            {"order_id": "O", "weight_kg": 1, "colour": "red"},
            "unexpected argument 'colour' "
            "(this tool takes: order_id, weight_kg, speed, note, fragile)",
        ),
        (
            {"order_id": "O", "weight_kg": 1, "speed": "warp"},
            "argument 'speed': Input should be 'standard' or 'express'",
        ),
        ({"order_id": "O", "weight_kg": 1, "fragile": "yes"}, "argument 'fragile'"),
        ({"order_id": "O", "weight_kg": 1, "note": 3}, "argument 'note"),
        ({"order_id": "O", "weight_kg": "9" * 500}, '(got "9999'),
    ],
)
def test_validation_errors_are_readable_and_name_the_argument(
    arguments: Any, expected: str
) -> None:
    with pytest.raises(ToolArgumentError, match=r"^invalid arguments for 'ship': ") as info:
        ship.validate(arguments)
    assert expected in str(info.value)
    assert len(str(info.value)) < 250  # long inputs are shortened in the message


def test_every_problem_is_listed() -> None:
    with pytest.raises(ToolArgumentError) as info:
        ship.validate({"weight_kg": "x", "extra": 1})
    message = str(info.value)
    assert "missing required argument 'order_id'" in message
    assert "argument 'weight_kg'" in message and "unexpected argument 'extra'" in message
    assert message.count(";") == 2


@pytest.mark.parametrize("arguments", [["O", 1], "O-1", None, 3])
def test_arguments_must_be_an_object(arguments: Any) -> None:
    with pytest.raises(
        ToolArgumentError,
        match=rf"arguments of 'ship' must be a JSON object, got {type(arguments).__name__}",
    ):
        ship.validate(arguments)


def test_validation_is_strict() -> None:
    @tool
    def take(n: int, x: float, flag: bool, s: str) -> int:
        """Take values.

        Args:
            n: An integer.
            x: A number.
            flag: A boolean.
            s: A string.
        """
        return n

    good = {"n": 5, "x": 1.5, "flag": True, "s": "a"}
    assert take.validate(good) == good
    for key, bad in [
        ("n", True),
        ("n", "5"),
        ("n", 5.0),
        ("n", None),
        ("x", "1.5"),
        ("x", False),
        ("flag", 1),
        ("flag", "true"),
        ("s", 1),
        ("s", ["a"]),
    ]:
        with pytest.raises(ToolArgumentError, match=f"argument '{key}'"):
            take.validate({**good, key: bad})
    # an int too large for a float is refused or becomes inf; it never crashes validation
    assert take.validate({**good, "x": 10**400})["x"] == float("inf")

    # values JSON cannot carry (a lone surrogate, a huge int) are still validated (as Python)
    @tool
    def words(w: list[str]) -> int:
        """Count words.

        Args:
            w: The words.
        """
        return len(w)

    assert words.validate({"w": ["\ud800", "ok"]}) == {"w": ["\ud800", "ok"]}
    with pytest.raises(ToolArgumentError):
        take.validate({**good, "n": 10**5000, "extra": 1})


def test_bad_tool_definitions_fail_at_decoration() -> None:
    with pytest.raises(ScenarioError, match="argument 'x' has no type annotation"):

        @tool
        def untyped(x) -> None:  # type: ignore[no-untyped-def]
            """Nothing."""

    with pytest.raises(ScenarioError, match=r"\*args/\*\*kwargs cannot be described"):

        @tool
        def star(*xs: int) -> None:
            """Nothing."""

    with pytest.raises(ScenarioError, match=r"\*args/\*\*kwargs"):

        @tool
        def stars(**xs: int) -> None:
            """Nothing."""

    with pytest.raises(ScenarioError, match="effect must be 'read' or 'write', not 'delete'"):

        @tool(effect="delete")  # type: ignore[arg-type]
        def remove(x: int) -> None:
            """Nothing."""

    with pytest.raises(ScenarioError, match="is not valid"):

        @tool(name="has space")
        def spaced(x: int) -> None:
            """Nothing."""

    with pytest.raises(ScenarioError, match="cannot resolve its type annotations"):

        @tool
        def forward(x: NotDefinedAnywhere) -> None:  # type: ignore[name-defined]  # noqa: F821
            """Nothing."""

    with pytest.raises(ScenarioError, match=r"the default of 'x' \(<.*\) has no JSON form"):

        @tool
        def sentinel(x: Any = Unschemable()) -> None:  # noqa: B008
            """Nothing."""

    with pytest.raises(ScenarioError, match="cannot be expressed as JSON schema"):

        @tool
        def opaque(x: Unschemable) -> None:
            """Nothing."""


def test_parse_docstring_sections() -> None:
    text, args = parse_docstring(
        "Do it.\n\nMore detail.\n\nArgs:\n    a (int): First.\n    b: Second,\n        long.\n"
        "    *rest: Ignored star.\n\nReturns:\n    dict: The result.\n\nRaises:\n    X: never\n"
    )
    assert text == "Do it.\n\nMore detail.\n\nReturns: dict: The result."
    assert args == {"a": "First.", "b": "Second, long.", "rest": "Ignored star."}
    assert parse_docstring(None) == ("", {})
    assert parse_docstring("One line.") == ("One line.", {})


def test_a_tool_without_docstring_has_an_empty_description() -> None:
    @tool
    def bare(x: int) -> int:
        return x

    assert bare.description == ""
    assert bare.parameters["properties"]["x"] == {"type": "integer"}


def test_invoke_validates_then_injects() -> None:
    box = Box()
    rng = np.random.default_rng(0)
    result = ship.invoke({"order_id": "O-1", "weight_kg": 1}, {"box": box, "rng": rng})
    assert result == {"order_id": "O-1", "weight_kg": 1.0, "speed": "standard", "box": "Box"}
    with pytest.raises(ToolArgumentError):
        ship.invoke({"order_id": 1, "weight_kg": 1}, {"box": box, "rng": rng})


@dataclasses.dataclass
class Record:
    a: int
    b: tuple[int, ...]


class Model(pydantic.BaseModel):
    n: int


def test_format_result() -> None:
    assert format_result("plain") == "plain"
    assert format_result("") == ""
    assert format_result(None) == "OK"
    assert format_result(3) == "3" and format_result(True) == "true"
    assert format_result({"é": np.int64(3), "s": {2, 1}}) == '{"é": 3, "s": [1, 2]}'
    assert format_result(np.arange(3)) == "[0, 1, 2]"
    assert format_result([Record(1, (2,)), Model(n=4)]) == '[{"a": 1, "b": [2]}, {"n": 4}]'
    assert format_result({"when": Unschemable}).startswith('{"when": "<class')


def _tools_with_many_annotations() -> list[Tool]:
    tools: list[Tool] = [ship, plot, ping, count, restock, roll, submit]
    annotations: list[Any] = [
        int,
        float,
        str,
        bool,
        list[str],
        list[list[int]],
        dict[str, Any],
        dict[str, list[float]],
        int | None,
        int | str,
        Literal[1, 2, 3],
        Literal["a"] | None,
        tuple[str, ...],
        Point,
        Colour,
        Model,
        Annotated[int, pydantic.Field(ge=0, le=10)],
        Annotated[str, pydantic.Field(min_length=1, pattern=r"^[A-Z]-\d+$")],
    ]
    for i, annotation in enumerate(annotations):

        def fn(value: Any, other: int = 0) -> None:
            """A generated tool.

            Args:
                value: The value.
                other: Another value.
            """

        fn.__annotations__ = {"value": annotation, "other": int, "return": None}
        tools.append(tool(name=f"generated_{i}")(fn))
    return tools


@pytest.mark.parametrize("t", _tools_with_many_annotations(), ids=lambda t: t.name)
def test_every_schema_is_valid_json_schema(t: Tool) -> None:
    META.check_schema(t.parameters)
    declaration = t.schema()
    assert set(declaration["function"]) == {"name", "description", "parameters"}
    assert t.parameters["type"] == "object" and t.parameters["additionalProperties"] is False
    json.dumps(declaration)  # what the model sees must serialise
    for name in t.parameters["properties"]:
        assert name not in t.injected


def test_every_tool_of_the_test_scenario_has_a_valid_schema() -> None:
    for declaration in make_scenario().tool_schemas():
        META.check_schema(declaration["function"]["parameters"])
        assert declaration["function"]["description"]


scalar_values = (
    st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.floats() | st.text(max_size=5)
)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["order_id", "weight_kg", "speed", "note", "fragile", "other"]),
        scalar_values | st.sampled_from(["standard", "express"]),
    )
)
def test_validate_accepts_exactly_what_the_schema_accepts(arguments: dict[str, Any]) -> None:
    """``validate`` and the JSON schema the model sees agree on every argument dict."""
    schema_ok = META(ship.parameters).is_valid(arguments)
    try:
        ship.validate(arguments)
    except ToolArgumentError as exc:
        assert str(exc).startswith("invalid arguments for 'ship': ")
        assert not schema_ok
    else:
        assert schema_ok


@tool
def scalars(n: int, x: float = 0.0, flag: bool = False, s: str = "") -> int:
    """Take scalars (validated on the fast path).

    Args:
        n: An integer.
        x: A number.
        flag: A boolean.
        s: A string.
    """
    return n


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["n", "x", "flag", "s", "other"]), scalar_values))
def test_fast_path_agrees_with_the_schema(arguments: dict[str, Any]) -> None:
    """Accepted means schema-valid; refused means schema-invalid or an integral float for ``n``."""
    schema_ok = META(scalars.parameters).is_valid(arguments)
    try:
        values = scalars.validate(arguments)
    except ToolArgumentError:
        assert not schema_ok or type(arguments.get("n")) is float  # strict: 5.0 is no int
    else:
        assert schema_ok
        assert values == {"x": 0.0, "flag": False, "s": "", **arguments}
        assert type(values["x"]) is float


# ----------------------------------------------------------------------------- property names
# Names that are also JSON-schema keywords: the pass that strips pydantic's ``title`` metadata
# once dropped an argument named ``title`` (issue 14). Each must survive wherever it is a name.
KEYWORD_NAMES = [
    "title", "type", "description", "default", "properties", "required", "items", "enum",
    "const", "examples", "format", "anyOf", "allOf", "oneOf", "additionalProperties", "definitions",
    "defs", "minimum", "pattern", "ref", "not_", "schema", "id", "comment",
]  # fmt: skip


def test_an_argument_named_title_is_shown_to_the_model() -> None:
    @tool
    def make_note(title: str, body: str = "") -> str:
        """Make a note.

        Args:
            title: The note's title.
            body: The text.
        """
        return title

    parameters = make_note.parameters
    assert parameters["properties"] == {
        "title": {"type": "string", "description": "The note's title."},
        "body": {"type": "string", "description": "The text.", "default": ""},
    }
    assert parameters["required"] == ["title"]
    env = simenv.make(make_scenario(tools=[make_note, submit]))
    _, info = env.reset(seed=0)
    shown = next(t for t in info["tools"] if t["function"]["name"] == "make_note")
    assert list(shown["function"]["parameters"]["properties"]) == ["title", "body"]
    env.close()


@pytest.mark.parametrize("name", KEYWORD_NAMES)
def test_every_argument_name_survives_in_the_schema(name: str) -> None:
    namespace: dict[str, Any] = {}
    exec(  # a function whose argument has this name
        f"def note({name}: str, other: int = 0) -> str:\n"
        f'    """Make a note.\n\n    Args:\n        {name}: The {name}.\n'
        f'        other: Another.\n    """\n    return {name}\n',
        namespace,
    )
    made = tool(namespace["note"])
    parameters = made.parameters
    assert list(parameters["properties"]) == [name, "other"]
    assert parameters["properties"][name] == {"type": "string", "description": f"The {name}."}
    assert parameters["required"] == [name]
    META.check_schema(parameters)
    assert made.validate({name: "x"}) == {name: "x", "other": 0}


class Fields(pydantic.BaseModel):
    """A nested object whose fields are named like schema keywords."""

    title: str
    type: str
    description: str = "d"
    default: int = 0
    properties: dict[str, str] = pydantic.Field(default_factory=dict)
    required: bool = False
    items: list[int] = pydantic.Field(default_factory=list)
    enum: Literal["a", "b"] = "a"


class Titled(TypedDict):
    title: str
    properties: str


def test_nested_field_names_survive_and_data_keeps_its_keys() -> None:
    @tool
    def store(
        record: Fields, pair: Titled, meta: dict[str, Any] | None = None, label: str = "title"
    ) -> str:
        """Store a record.

        Args:
            record: The record.
            pair: A pair.
            meta: Anything.
            label: A label.
        """
        return "ok"

    parameters = store.parameters
    assert list(parameters["properties"]) == ["record", "pair", "meta", "label"]
    definitions = parameters["$defs"]
    assert list(definitions["Fields"]["properties"]) == [
        "title", "type", "description", "default", "properties", "required", "items", "enum",
    ]  # fmt: skip
    assert definitions["Fields"]["required"] == ["title", "type"]
    assert list(definitions["Titled"]["properties"]) == ["title", "properties"]
    assert parameters["properties"]["label"]["default"] == "title"  # data is kept as is
    fields = definitions["Fields"]  # pydantic's title metadata is gone, the names stay
    assert "title" not in fields and all("title" not in f for f in fields["properties"].values())
    META.check_schema(parameters)
    assert store.validate(
        {"record": {"title": "t", "type": "x"}, "pair": {"title": "a", "properties": "b"}}
    )


def test_schema_tools_keep_every_property_name() -> None:
    from simenv.tools.base import SchemaTool

    names = [*KEYWORD_NAMES, "$ref", "$defs", "$schema", "$id"]
    declared = {"type": "object", "properties": {n: {"type": "string"} for n in names}}
    made = SchemaTool(None, name="lookup", parameters=declared, description="Look up.")
    assert list(made.schema()["function"]["parameters"]["properties"]) == names
