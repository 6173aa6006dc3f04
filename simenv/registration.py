"""Scenario ids -> scenarios -> environments: ``register``, ``make``, ``spec``, ``registry``.

Scenarios are found three ways:

* ``register(scenario)`` in code;
* the entry-point group ``simenv.scenarios`` of installed distributions (each entry point names
  a ``Scenario``, a list of them, or a module with ``SCENARIO`` / ``SCENARIOS``), loaded the first
  time an id is looked up;
* a file path: ``make("path/to/my_scenario.py")`` loads the module and uses its ``SCENARIO``;
  the path of an SOP folder (``simenv.yaml`` inside, docs/sop.md) builds its scenario, and
  :func:`import_sop` registers one under its id for every later process too.

Registered scenarios are also registered with Gymnasium, so ``gymnasium.make(id)`` works (and
``gymnasium.make("scenarios:<id>")`` for the bundled ones).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import gymnasium as gym

from simenv.env import MultiTurnEnv
from simenv.errors import RegistrationError
from simenv.scenario import Scenario, parse_id
from simenv.sop.build import is_sop_folder, load_sop
from simenv.sop.index import remember
from simenv.types import Action, Episode, Message
from simenv.wrappers import OrderEnforcing, RecordEpisode, TimeLimit

__all__ = [
    "ENTRY_POINT_GROUP",
    "ScenarioSpec",
    "gymnasium_entry_point",
    "import_sop",
    "load_scenario",
    "make",
    "register",
    "registry",
    "spec",
]

ENTRY_POINT_GROUP = "simenv.scenarios"


@dataclass(frozen=True)
class ScenarioSpec:
    """What the registry knows about one id.

    Attributes:
        id: ``namespace/Name-vN``.
        scenario: The scenario object.
        source: Where it came from (``code``, ``entry point NAME``, or a file path).
    """

    id: str
    scenario: Scenario
    source: str


_lock = threading.RLock()
_specs: dict[str, ScenarioSpec] = {}
_entry_points_loaded = False


def gymnasium_entry_point(scenario_id: str, **kwargs: Any) -> gym.Env[list[Message], Action]:
    """What ``gymnasium.make(id)`` calls: :func:`make` with the same keyword arguments."""
    return make(scenario_id, **kwargs)


_GYM_ENTRY_POINT = "simenv.registration:gymnasium_entry_point"


def register(scenario: Scenario, *, source: str = "code", override: bool = False) -> ScenarioSpec:
    """Register a scenario under its id (and with Gymnasium).

    Args:
        scenario: The scenario.
        source: Shown by ``simenv list`` and in error messages.
        override: Replace an existing registration with the same id.

    Raises:
        RegistrationError: The id is taken by a different scenario and ``override`` is False.
    """
    if not isinstance(scenario, Scenario):
        raise RegistrationError(
            f"register() takes a simenv.Scenario, got {type(scenario).__name__}"
        )
    with _lock:
        existing = _specs.get(scenario.id)
        if existing is not None and existing.scenario is not scenario and not override:
            raise RegistrationError(
                f"scenario id {scenario.id!r} is already registered from {existing.source}; "
                "bump its -vN, pick another id, or pass override=True"
            )
        theirs = gym.registry.get(scenario.id)
        if theirs is not None and theirs.entry_point != _GYM_ENTRY_POINT:
            raise RegistrationError(
                f"scenario id {scenario.id!r} is already a gymnasium environment "
                f"({theirs.entry_point}); pick another id, e.g. with a namespace 'myteam/...'"
            )
        entry = ScenarioSpec(scenario.id, scenario, source)
        _specs[scenario.id] = entry
        if theirs is not None:
            return entry
        gym.register(
            id=scenario.id,
            entry_point=_GYM_ENTRY_POINT,
            kwargs={"scenario_id": scenario.id},
            disable_env_checker=True,
            order_enforce=False,
        )
    return entry


def _scenarios_in(obj: Any, where: str) -> list[Scenario]:
    if isinstance(obj, Scenario):
        return [obj]
    if isinstance(obj, ModuleType):
        found = getattr(obj, "SCENARIOS", None) or getattr(obj, "SCENARIO", None)
        if found is None:
            raise RegistrationError(
                f"{where} defines neither SCENARIO nor SCENARIOS; add `SCENARIO = Scenario(...)`"
            )
        return _scenarios_in(found, where)
    if isinstance(obj, list | tuple) and all(isinstance(s, Scenario) for s in obj):
        return list(obj)
    if callable(obj):
        return _scenarios_in(obj(), where)
    raise RegistrationError(f"{where} gave {type(obj).__name__}, not a Scenario or list of them")


def _load_entry_points() -> None:
    global _entry_points_loaded
    with _lock:
        if _entry_points_loaded:
            return
        _entry_points_loaded = True
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            where = f"entry point {ep.name!r} ({ep.value}) of group {ENTRY_POINT_GROUP!r}"
            try:
                loaded = ep.load()
            except Exception as exc:
                raise RegistrationError(
                    f"could not load {where}: {type(exc).__name__}: {exc}; fix or uninstall the "
                    "distribution that declares it"
                ) from exc
            for scenario in _scenarios_in(loaded, where):
                existing = _specs.get(scenario.id)
                if existing is None or existing.scenario is not scenario:
                    register(scenario, source=f"entry point {ep.name}", override=True)


def _load_path(path: Path) -> list[Scenario]:
    if is_sop_folder(path):  # docs/sop.md
        scenario = load_sop(path)
        register(scenario, source=str(path), override=True)
        return [scenario]
    target = path / "__init__.py" if path.is_dir() else path
    if not target.is_file():
        raise RegistrationError(f"{path}: no such scenario file (expected a .py file or package)")
    module_name = f"_simenv_user_{abs(hash(str(target.resolve())))}"
    module = sys.modules.get(module_name)
    if module is None:
        spec_ = importlib.util.spec_from_file_location(module_name, target)
        if spec_ is None or spec_.loader is None:
            raise RegistrationError(f"{path}: cannot be imported as a Python module")
        module = importlib.util.module_from_spec(spec_)
        sys.modules[module_name] = module
        try:
            spec_.loader.exec_module(module)
        except Exception:
            del sys.modules[module_name]
            raise
    scenarios = _scenarios_in(module, str(path))
    for scenario in scenarios:
        register(scenario, source=str(path), override=True)
    return scenarios


def import_sop(path: str | Path, scenario_id: str | None = None) -> Scenario:
    """Check an SOP folder, register its scenario and remember it so its id works later.

    The id -> folder pair is kept in ``$SIMENV_HOME/sop_imports.json`` (default
    ``~/.simenv``), read back in any process by the ``simenv.scenarios`` entry point
    (:func:`simenv.sop.index.imported_scenarios`).

    Args:
        path: The SOP folder.
        scenario_id: ``namespace/Name-vN``; default: ``id:`` in ``simenv.yaml``, else
            ``sop/<FolderName>-v1``.

    Raises:
        ScenarioError: The folder is broken (the message names the file and the fix).
    """
    scenario = load_sop(path, scenario_id)
    register(scenario, source=f"SOP folder {path}", override=True)
    remember(scenario.id, path)
    return scenario


def _looks_like_path(name: str) -> bool:
    return name.endswith(".py") or Path(name).is_dir() or "\\" in name or name.startswith(".")


def spec(scenario_id: str) -> ScenarioSpec:
    """The registration of ``scenario_id`` (loading entry points or a path if needed).

    Raises:
        RegistrationError: Unknown id (the message suggests close matches).
    """
    with _lock:
        if scenario_id in _specs:
            return _specs[scenario_id]
        if _looks_like_path(scenario_id):
            scenarios = _load_path(Path(scenario_id))
            if len(scenarios) != 1:
                ids = [s.id for s in scenarios]
                raise RegistrationError(
                    f"{scenario_id} defines {len(scenarios)} scenarios {ids}; name one by id"
                )
            return _specs[scenarios[0].id]
        _load_entry_points()
        if scenario_id in _specs:
            return _specs[scenario_id]
    try:
        name = parse_id(scenario_id)[1]
    except Exception:
        name = scenario_id
    close = [i for i in _specs if name.lower() in i.lower()]
    hint = f" Did you mean: {', '.join(sorted(close))}?" if close else ""
    raise RegistrationError(
        f"no scenario {scenario_id!r} is registered.{hint} Run `simenv list` for the known ids; "
        "a scenario in a file can be given by its path."
    )


def load_scenario(scenario_id: str) -> Scenario:
    """The scenario registered as ``scenario_id`` (or defined in the file at that path)."""
    return spec(scenario_id).scenario


def registry() -> list[str]:
    """Every registered id, sorted (entry points included)."""
    _load_entry_points()
    with _lock:
        return sorted(_specs)


def make(
    scenario: str | Scenario,
    *,
    split: Literal["train", "eval"] | None = None,
    max_turns: int | None = None,
    sink: Callable[[Episode], None] | None = None,
    policy: dict[str, Any] | None = None,
    render_mode: str | None = None,
    env_class: type[MultiTurnEnv] = MultiTurnEnv,
) -> gym.Env[list[Message], Action]:
    """Build the environment for a scenario id, path or object, with the standard wrappers.

    The stack, inside out: ``MultiTurnEnv`` -> ``TimeLimit`` -> ``OrderEnforcing`` ->
    ``RecordEpisode``.

    Args:
        scenario: A registered id, a path to a scenario file, or a ``Scenario``.
        split: Draw tasks from this split when ``reset`` names none.
        max_turns: Override the scenario's turn limit.
        sink: Receives every finished :class:`Episode`.
        policy: Policy description stored in episode records.
        render_mode: ``None`` or ``"ansi"``.
        env_class: A ``MultiTurnEnv`` subclass to build instead (a custom environment).
    """
    resolved = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    env: gym.Env[list[Message], Action] = env_class(resolved, split=split, render_mode=render_mode)
    env = TimeLimit(env, max_turns)
    env = OrderEnforcing(env)
    return RecordEpisode(env, sink=sink, policy=policy)
