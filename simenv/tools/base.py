"""Tools and their one plug-in point: ``@tool`` declares a tool, a :class:`ToolBackend` answers it.

The function's signature and Google-style docstring become the JSON schema the model sees.
Arguments are validated against that schema before the function runs; a mismatch raises
:class:`~simenv.errors.ToolArgumentError`, which the environment hands back to the agent as a
readable tool message. Parameters whose annotation is an injectable type (a
:class:`~simenv.tools.sandbox.Sandbox` subclass, ``numpy.random.Generator``, or any other
:class:`Injectable`) are filled in by the environment and never appear in the schema.

Arguments are validated as the JSON values they are, strictly: ``"5"`` is not an ``int`` and
``true`` is not a number, while a JSON array fills a ``list``, ``tuple`` or ``set``. Prefer
``Literal[...]`` to ``Enum`` for closed sets of strings: the schema then lists them inline.

How a call is answered is the tool's :attr:`Tool.backend`, a :class:`ToolBackend`: one method,
a tool call in, a :class:`~simenv.types.ToolResult` with its provenance out. The environment
calls nothing else. A typed function is its own backend (validate, call, render the value); a
replayed tool's backend is its cassette's; a tool declared by a JSON schema
(:class:`SchemaTool`: an SOP folder's tool specs, a remote service, a test double) names one.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, NotRequired, Protocol, runtime_checkable

import numpy as np
import pydantic
import pydantic_core
from typing_extensions import TypedDict

from simenv.errors import ScenarioError, ToolArgumentError
from simenv.types import ToolCall, ToolResult

__all__ = [
    "Effect",
    "Injectable",
    "SchemaTool",
    "Tool",
    "ToolBackend",
    "format_result",
    "json_default",
    "parse_docstring",
    "tool",
]

Effect = Literal["read", "write"]

_SECTION = re.compile(
    r"^(Args|Arguments|Parameters|Returns|Return|Raises|Yields|Examples?|Notes?|Attributes)\s*:\s*$"
)
_ARG_LINE = re.compile(r"^(\*{0,2}\w+)\s*(?:\(([^)]*)\))?\s*:\s*(.*)$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")


class Injectable:
    """Marker base: a parameter annotated with a subclass is injected, not shown to the agent."""


@runtime_checkable
class ToolBackend(Protocol):
    """How a tool's calls are answered: one call in, one result out (the plug-in point).

    :class:`~simenv.env.MultiTurnEnv` hands every well-formed call of a known tool to that
    tool's backend and records what comes back; it measures the latency itself. A test double
    is a class with this one method.
    """

    def call(self, call: ToolCall, injected: Mapping[str, Any]) -> ToolResult:
        """Answer one call.

        Args:
            call: The call as the agent made it: ``id``, ``name`` and the decoded ``arguments``
                (not validated yet: checking them is the backend's job).
            injected: What the environment injects for the tool's injected parameters this
                episode (the sandbox, the episode's generator), by parameter name.

        Returns:
            A :class:`~simenv.types.ToolResult` with the call's ``id`` and the tool's name,
            the text the agent reads, ``is_error``, and the provenance (``live``, ``replay``,
            ``sandbox``, ``sqlite``, ``docker`` ...).

        Raises:
            ToolError: The agent's mistake (bad arguments, nothing found): the environment
                answers ``Error: <message>`` with the tool's provenance, and the episode goes
                on. Any other exception ends the episode as invalid: an ``InfraError`` as it
                is, anything else as a bug in the backend.
        """
        ...


def _is_injected(annotation: Any) -> bool:
    if annotation is np.random.Generator:
        return True
    return isinstance(annotation, type) and issubclass(annotation, Injectable)


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into (description, {argument: description}).

    The description is everything before the first section, plus the ``Returns:`` text, so the
    model reads what the tool does and what it gives back.
    """
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    description: list[str] = []
    returns: list[str] = []
    args: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    for raw in lines:
        line = raw.rstrip()
        header = _SECTION.match(line.strip()) if not line.startswith((" ", "\t")) else None
        if header:
            section = header.group(1).lower()
            current = None
            continue
        if section is None:
            description.append(line)
        elif section in ("args", "arguments", "parameters"):
            stripped = line.strip()
            match = _ARG_LINE.match(stripped)
            indent = len(line) - len(line.lstrip())
            if match and indent <= 4:
                current = match.group(1).lstrip("*")
                args[current] = match.group(3).strip()
            elif current and stripped:
                args[current] = f"{args[current]} {stripped}".strip()
        elif section in ("returns", "return") and line.strip():
            returns.append(line.strip())
    text = "\n".join(description).strip()
    if returns:
        text = f"{text}\n\nReturns: {' '.join(returns)}".strip()
    return text, args


# JSON-schema keywords whose value maps names (property names, definition names) to schemas:
# the names are data, kept whatever they are ("title" included); only the schemas are stripped.
_SCHEMA_MAPS = frozenset(
    {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}
)
# Keywords whose value is data (a JSON value the model may send), never a schema: kept as is.
_DATA_KEYWORDS = frozenset({"default", "const", "enum", "examples"})


def _strip_titles(schema: Any) -> Any:
    """A JSON schema without pydantic's ``title`` metadata (noise in the prompt).

    ``title`` is dropped only as a keyword of a schema object; a property or definition named
    ``title`` (or ``type``, ``properties``, ...) survives, and so do data values (defaults,
    enums, consts, examples) whatever keys they hold.
    """
    if isinstance(schema, list):
        return [_strip_titles(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title":
            continue
        if key in _DATA_KEYWORDS:
            out[key] = value
        elif key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: _strip_titles(sub) for name, sub in value.items()}
        else:
            out[key] = _strip_titles(value)
    return out


def json_default(value: Any) -> Any:
    """``json.dumps``'s ``default``: numpy scalars and arrays, sets, models, dataclasses, else str.

    Shared by tool results and the HTTP rollout server, so that a value any tool or ``info``
    dict may hold (a numpy integer, a set) is encoded the same way everywhere.
    """
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)


_ENCODE_RESULT = json.JSONEncoder(ensure_ascii=False, default=json_default).encode
_ENCODE_ARGUMENTS = json.JSONEncoder(ensure_ascii=False).encode
# Argument types checked in plain Python before falling back to pydantic (which then also
# writes the error message): JSON type -> the exact Python types accepted.
_SCALARS: dict[Any, tuple[type, ...]] = {
    str: (str,),
    int: (int,),
    float: (float, int),
    bool: (bool,),
}


def format_result(value: Any) -> str:
    """Render a tool's return value as the text the agent reads.

    Strings pass through unchanged, ``None`` becomes ``"OK"``, anything else is compact JSON.
    """
    if type(value) is str:
        return value
    if value is None:
        return "OK"
    return _ENCODE_RESULT(value)


def _describe_error(err: Mapping[str, Any], params: list[str]) -> str:
    loc = ".".join(str(p) for p in err.get("loc", ())) or "arguments"
    kind = err.get("type", "")
    if kind == "missing":
        return f"missing required argument {loc!r}"
    if kind == "extra_forbidden":
        allowed = ", ".join(params) or "no arguments"
        return f"unexpected argument {loc!r} (this tool takes: {allowed})"
    got = err.get("input")
    try:
        shown = json.dumps(got, default=str)
    except (RecursionError, ValueError, TypeError):
        shown = f"a deeply nested {type(got).__name__}"
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"argument {loc!r}: {err.get('msg', 'invalid value')} (got {shown})"


class Tool:
    """A function the agent can call, with its schema, effect and injected parameters.

    Build one with :func:`tool`. Calling the ``Tool`` object directly calls the function, which
    keeps tools easy to unit-test. A tool is also the :class:`ToolBackend` of its function
    (:meth:`call`), unless it is replayed.

    Attributes:
        name: The name the agent uses.
        description: What the model reads about the tool.
        parameters: JSON schema of the agent-visible arguments.
        effect: ``"read"`` (must not change state) or ``"write"``.
        injected: Injected parameter name -> its annotation (hidden from the schema).
        provenance: Tool pattern recorded on each result (``sandbox``, ``live``, ``replay``).
        replay: The :class:`~simenv.tools.replay.Cassette` serving this tool, if any.
        fn: The wrapped function (for a replayed tool, the cassette in front of it).
        backend: What answers the tool's calls: the tool itself, or its cassette's backend.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        effect: Effect,
        name: str | None = None,
        description: str | None = None,
        provenance: str | None = None,
        replay: Any = None,
    ) -> None:
        doc_text, arg_docs = parse_docstring(fn.__doc__)
        self._declare(
            name or fn.__name__, description if description is not None else doc_text, effect
        )
        self.fn = fn
        try:
            hints = typing.get_type_hints(fn, include_extras=True)
        except Exception as exc:  # a NameError from a forward reference, typically
            raise ScenarioError(
                f"tool {self.name!r}: cannot resolve its type annotations ({exc}); define the "
                "types it names before the function"
            ) from exc
        fields: dict[str, Any] = {}
        defaults: dict[str, Any] = {}
        self.injected: dict[str, Any] = {}
        for pname, param in inspect.signature(fn).parameters.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise ScenarioError(
                    f"tool {self.name!r}: *args/**kwargs cannot be described to the model; "
                    "list each argument with a type"
                )
            annotation = hints.get(pname, inspect.Parameter.empty)
            if _is_injected(annotation):
                self.injected[pname] = annotation
                continue
            if annotation is inspect.Parameter.empty:
                raise ScenarioError(
                    f"tool {self.name!r}: argument {pname!r} has no type annotation; add one "
                    f"(e.g. `{pname}: str`) so the model knows what to send"
                )
            field_type: Any = Annotated[annotation, pydantic.Field(description=arg_docs.get(pname))]
            if param.default is not param.empty:
                defaults[pname] = param.default
                field_type = NotRequired[field_type]
            fields[pname] = field_type
        self.arg_docs = arg_docs
        self.argument_names = list(fields)
        self._defaults = defaults
        make_typed_dict: Any = TypedDict
        arguments_type = make_typed_dict(f"{self.name}_arguments", fields)
        arguments_type.__pydantic_config__ = pydantic.ConfigDict(
            extra="forbid", strict=True, arbitrary_types_allowed=True
        )
        try:
            adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(arguments_type)
            schema = _strip_titles(adapter.json_schema())
        except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError) as exc:
            raise ScenarioError(
                f"tool {self.name!r}: an argument type cannot be expressed as JSON schema "
                f"({exc}); use JSON types (str, int, float, bool, list, dict, Literal)"
            ) from exc
        self._validate_python = adapter.validate_python
        self._validate_json = adapter.validate_json
        self._fast: dict[str, tuple[type, ...]] | None = None
        if all(hints.get(p) in _SCALARS for p in fields):
            self._fast = {p: _SCALARS[hints[p]] for p in fields}
        self._required = frozenset(p for p in fields if p not in defaults)
        schema.setdefault("properties", {})
        for pname, value in defaults.items():
            try:  # the schema is JSON the model reads: an Enum or a set default must be JSON too
                schema["properties"][pname]["default"] = pydantic_core.to_jsonable_python(value)
            except ValueError as exc:
                raise ScenarioError(
                    f"tool {self.name!r}: the default of {pname!r} ({value!r}) has no JSON form "
                    f"({exc}); use a JSON value (str, int, float, bool, None, list, dict)"
                ) from exc
        schema["additionalProperties"] = False
        self.parameters: dict[str, Any] = schema
        self.provenance = provenance or ("sandbox" if self.injected else "live")
        self.replay = replay
        self.backend: ToolBackend = self
        if replay is not None:
            if effect != "read":
                raise ScenarioError(
                    f"tool {self.name!r}: only read tools can be replayed (a replayed write "
                    "would not happen); drop replay= or declare effect='read'"
                )
            self.provenance = "replay"
            self.fn = replay.wrap(self.name, fn, self.argument_names)
            self.backend = replay.backend(self)

    def _declare(self, name: str, description: str, effect: Effect) -> None:
        """Set and check what every tool declares: its name, description and effect."""
        if effect not in ("read", "write"):
            raise ScenarioError(f"tool {name!r}: effect must be 'read' or 'write', not {effect!r}")
        if not _NAME.match(name):
            raise ScenarioError(
                f"tool name {name!r} is not valid: use letters, digits, '_' or '-' "
                "(at most 64 characters, not starting with a digit)"
            )
        self.name = name
        self.description = description
        self.effect: Effect = effect

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the wrapped function directly (no validation, nothing injected)."""
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Tool({self.name!r}, effect={self.effect!r})"

    def schema(self) -> dict[str, Any]:
        """The OpenAI function-tool declaration (``{"type": "function", "function": {...}}``)."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }

    def validate(self, arguments: Any) -> dict[str, Any]:
        """Check the agent's arguments against the schema and return them with defaults filled.

        Raises:
            ToolArgumentError: The arguments do not match; the message lists every problem.
        """
        fast = self._fast
        if (
            fast is not None
            and type(arguments) is dict
            and self._required <= arguments.keys()
            and arguments.keys() <= fast.keys()
        ):
            out = dict(self._defaults)
            for key, value in arguments.items():
                accepted = fast[key]
                if type(value) is accepted[0]:
                    out[key] = value
                elif type(value) in accepted and -1e308 < value < 1e308:
                    out[key] = float(value)  # an int where a float is declared
                else:
                    break
            else:
                return out
        if not isinstance(arguments, dict):
            raise ToolArgumentError(
                f"arguments of {self.name!r} must be a JSON object, got {type(arguments).__name__}"
            )
        try:
            values: dict[str, Any] = self._validate(arguments)
        except pydantic.ValidationError as exc:
            problems = "; ".join(_describe_error(e, self.argument_names) for e in exc.errors())
            raise ToolArgumentError(f"invalid arguments for {self.name!r}: {problems}") from None
        if self._defaults:
            return {**self._defaults, **values}
        return values

    def _validate(self, arguments: dict[str, Any]) -> Any:
        # The arguments are JSON values, so validate them as JSON: in strict Python mode a JSON
        # array would never fill a tuple or a set. Values JSON cannot carry (huge ints, lone
        # surrogates, Python objects from a direct caller) are validated as Python instead.
        try:
            text = _ENCODE_ARGUMENTS(arguments).encode()
        except (TypeError, ValueError, RecursionError):
            return self._validate_python(arguments)
        return self._validate_json(text)

    def invoke(self, arguments: Any, injected: Mapping[str, Any]) -> Any:
        """Validate ``arguments`` then call the function with the injected values added."""
        return self.fn(**self.validate(arguments), **injected)

    def call(self, call: ToolCall, injected: Mapping[str, Any]) -> ToolResult:
        """The function's :class:`ToolBackend`: validate, call, render the value as text.

        Raises:
            ToolArgumentError: The arguments do not match the schema.
            ToolError: The function's own, for the agent to read.
        """
        kwargs = self.validate(call.arguments)
        if injected:
            kwargs.update(injected)
        content = format_result(self.fn(**kwargs))
        return ToolResult(call.id, self.name, content, False, self.provenance)


class SchemaTool(Tool):
    """A tool declared by its JSON schema, its calls answered by a :class:`ToolBackend`.

    For tools whose declaration is data rather than a Python signature: an SOP folder's tool
    specs, a remote service's tools, a test double. The backend gets each call's arguments as
    the agent sent them (a JSON object) and checks them itself. Calling the tool directly sends
    a call with the id ``direct`` to the backend and returns its :class:`ToolResult`.

    Args:
        backend: What answers the calls; ``None`` for a subclass that answers them itself
            (it sets ``fn`` and may override :meth:`validate`, as ``Tool.call`` uses both).
        name: The name the agent uses.
        parameters: JSON schema of the arguments (an ``object`` schema).
        description: What the model reads about the tool.
        effect: ``"read"`` or ``"write"``.
        provenance: Recorded on results the backend does not mark otherwise (its errors).
        injected: Parameter name -> the type the environment injects (a ``Sandbox``
            subclass or ``numpy.random.Generator``), handed to the backend with each call.
    """

    def __init__(
        self,
        backend: ToolBackend | None,
        *,
        name: str,
        parameters: Mapping[str, Any],
        description: str = "",
        effect: Effect = "read",
        provenance: str = "live",
        injected: Mapping[str, Any] | None = None,
    ) -> None:
        self._declare(name, description, effect)
        self.parameters = dict(parameters)
        self.injected = dict(injected or {})
        self.provenance = provenance
        self.replay = None
        properties = self.parameters.get("properties", {})
        self.arg_docs = {k: str(v.get("description", "")) for k, v in properties.items()}
        self.argument_names = list(properties)
        self._defaults: dict[str, Any] = {}
        self.backend = self if backend is None else backend
        self.fn = self._direct

    def _direct(self, **kwargs: Any) -> ToolResult:
        injected = {k: kwargs.pop(k) for k in list(kwargs) if k in self.injected}
        return self.backend.call(ToolCall("direct", self.name, kwargs), injected)

    def validate(self, arguments: Any) -> dict[str, Any]:
        """Only that the arguments are a JSON object; the backend checks the rest.

        Raises:
            ToolArgumentError: They are not an object.
        """
        if not isinstance(arguments, dict):
            raise ToolArgumentError(
                f"arguments of {self.name!r} must be a JSON object, got {type(arguments).__name__}"
            )
        return dict(arguments)


@typing.overload
def tool(fn: Callable[..., Any], /) -> Tool: ...


@typing.overload
def tool(
    fn: None = None,
    /,
    *,
    effect: Effect = "read",
    name: str | None = None,
    description: str | None = None,
    provenance: str | None = None,
    replay: Any = None,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    effect: Effect = "read",
    name: str | None = None,
    description: str | None = None,
    provenance: str | None = None,
    replay: Any = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Turn a typed function into a :class:`Tool`.

    Use bare (``@tool``) for a read-only tool, or with options
    (``@tool(effect="write")``). Every agent-visible argument needs a type annotation and should
    have a line in the docstring's ``Args:`` section: both are what the model reads.

    Args:
        fn: The function (when used bare).
        effect: ``"read"`` if the tool never changes state, ``"write"`` otherwise.
        name: Name shown to the agent; defaults to the function's name.
        description: Overrides the description taken from the docstring.
        provenance: Recorded on each result; defaults to ``sandbox`` for tools with an injected
            state and ``live`` otherwise.
        replay: A :class:`~simenv.tools.replay.Cassette` to serve this read tool from.
    """

    def wrap(f: Callable[..., Any]) -> Tool:
        return Tool(
            f,
            effect=effect,
            name=name,
            description=description,
            provenance=provenance,
            replay=replay,
        )

    return wrap(fn) if fn is not None else wrap
