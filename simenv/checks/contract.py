"""API contract and tool checks."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from simenv.checks.episodes import CheckOptions, opened, play, sample_tasks
from simenv.checks.report import CheckResult
from simenv.env import MultiTurnEnv
from simenv.errors import ResetNeeded
from simenv.registration import make
from simenv.rollouts.policies.scripted import Oracle, random_value
from simenv.scenario import Scenario
from simenv.tools.sandbox import diff_values

__all__ = ["check_api", "check_tools"]

PROBE = '<tool_call>{"name": "__simenv_probe__", "arguments": {}}</tool_call>'
"""A call to a tool that does not exist: answered with an error, never ends the episode."""

_INFO_KEYS = ("scenario_id", "task_id", "seed", "episode_id", "tools")


def _gymnasium_check(scenario: Scenario, options: CheckOptions) -> str | None:
    from gymnasium.utils.env_checker import check_env

    env = options.env_class(scenario)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # render-fps and spec notices are not failures
            check_env(env, skip_render_check=True)
    except AssertionError as exc:
        return f"gymnasium's check_env failed: {exc}"
    finally:
        env.close()
    return None


def check_api(scenario: Scenario, options: CheckOptions) -> CheckResult:
    """Gymnasium's ``check_env`` plus simenv's contract.

    Proves: reset/step return what the spaces contain; ``info`` has the documented keys;
    ``terminated``/``truncated`` are bools and never merged; truncation happens exactly at
    ``max_turns``; a final answer terminates (in a conversation: gets a ``role: "user"`` reply,
    until the user ends it or the turns run out); stepping before reset or after the end raises
    ``ResetNeeded``; ``close()`` is idempotent.
    """
    problem = _gymnasium_check(scenario, options)
    if problem:
        return CheckResult("api", "fail", problem)
    task = scenario.tasks[0].id
    with opened(scenario, options) as env:
        try:
            env.step("hello")
            return CheckResult("api", "fail", "step() before reset() did not raise ResetNeeded")
        except ResetNeeded:
            pass
        observation, info = env.reset(seed=options.seed, options={"task_id": task})
        if observation not in env.observation_space:
            return CheckResult("api", "fail", "reset's observation is not in the space")
        missing = [k for k in _INFO_KEYS if k not in info]
        if missing:
            return CheckResult("api", "fail", f"reset's info lacks {missing}")
        for turn in range(1, scenario.max_turns + 1):
            observation, reward, terminated, truncated, _ = env.step(PROBE)
            if type(terminated) is not bool or type(truncated) is not bool:
                return CheckResult("api", "fail", "terminated/truncated must be Python bools")
            if not isinstance(reward, float | int) or observation not in env.observation_space:
                return CheckResult("api", "fail", f"step {turn}: bad reward or observation")
            if terminated:
                return CheckResult(
                    "api",
                    "fail",
                    "a call to an unknown tool ended the episode; it must come back as an "
                    "error message and the episode go on",
                    task,
                    options.seed,
                    [PROBE] * turn,
                )
            if truncated != (turn == scenario.max_turns):
                return CheckResult(
                    "api",
                    "fail",
                    f"truncated={truncated} at turn {turn}; it must become True exactly at "
                    f"max_turns={scenario.max_turns}",
                    task,
                    options.seed,
                    [PROBE] * turn,
                )
        try:
            env.step("hello")
            return CheckResult("api", "fail", "step() after the end did not raise ResetNeeded")
        except ResetNeeded:
            pass
        env.reset(seed=options.seed, options={"task_id": task})
        if scenario.user is not None:
            problem = _conversation_problem(env, scenario)
            if problem:
                return CheckResult("api", "fail", problem, task, options.seed)
        else:
            _, _, terminated, truncated, _ = env.step("My final answer.")
            if not terminated or truncated:
                return CheckResult("api", "fail", "an answer without a tool call must terminate")
    # Its own environment: `opened` closes the one above again, and a close() that raises on a
    # second call would turn this check's finding into a crash of the check.
    closing = make(scenario, env_class=options.env_class)
    closing.reset(seed=options.seed, options={"task_id": task})
    closing.close()
    try:
        closing.close()
    except Exception as exc:
        return CheckResult("api", "fail", f"a second close() raised {exc!r}")
    return CheckResult("api", "pass", "gymnasium check_env and the simenv contract hold")


def _conversation_problem(env: Any, scenario: Scenario) -> str | None:
    """What is wrong with how a conversation answers plain answers, or ``None``."""
    for turn in range(1, scenario.max_turns + 1):
        observation, _, terminated, truncated, info = env.step("My final answer.")
        if terminated or truncated:
            if terminated and info.get("termination") not in ("user_end", "infra_error"):
                return (
                    f"an answer in a conversation ended the episode with termination "
                    f"{info.get('termination')!r}; it must be 'user_end' when the user ends it"
                )
            return None
        last = observation[-1] if observation else {}
        if last.get("role") != "user" or not isinstance(last.get("content"), str):
            return (
                f"turn {turn}: an answer without a tool call neither ended the conversation "
                f"nor got a role 'user' reply (the observation ends with {last!r:.80})"
            )
    return "the conversation did not end at max_turns"


def _schema_problems(name: str, schema: dict[str, Any]) -> list[str]:
    problems = []
    if schema.get("type") != "object" or not isinstance(schema.get("properties"), dict):
        problems.append(f"{name}: parameters must be an object schema with properties")
        return problems
    for required in schema.get("required", []):
        if required not in schema["properties"]:
            problems.append(f"{name}: required {required!r} is not a property")
    import jsonschema  # a dependency of simenv; imported here to keep `import simenv.checks` fast

    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "the top level"
        problems.append(f"{name}: not valid JSON Schema (at {where}): {exc.message}")
    return problems


def check_tools(scenario: Scenario, options: CheckOptions) -> CheckResult:
    """Schemas, descriptions, hidden injections, and read tools that must not write.

    Proves: every tool schema is valid JSON Schema; every tool and argument has a description;
    injected parameters are not in the schema; calling a ``read`` tool (with the oracle's
    arguments and with random ones) leaves the state hash unchanged.
    """
    problems: list[str] = []
    for t in scenario.tools:
        problems += _schema_problems(t.name, t.parameters)
        if not t.description.strip():
            problems.append(f"{t.name}: no description; write its docstring for the model")
        for arg, spec in t.parameters.get("properties", {}).items():
            if not str(spec.get("description") or "").strip():
                problems.append(f"{t.name}: argument {arg!r} has no description (Args: section)")
        for hidden in t.injected:
            if hidden in t.parameters.get("properties", {}):
                problems.append(f"{t.name}: injected {hidden!r} is visible in the schema")
    if problems:
        return CheckResult("tools", "fail", "; ".join(problems))
    if scenario.sandbox is None:
        return CheckResult("tools", "pass", "schemas and descriptions are complete (no state)")
    return _read_tools_do_not_write(scenario, options)


def _call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    function = {"name": name, "arguments": arguments}
    return {"role": "assistant", "tool_calls": [{"id": "probe", "function": function}]}


def _read_tools_do_not_write(scenario: Scenario, options: CheckOptions) -> CheckResult:
    read_tools = {t.name: t for t in scenario.tools if t.effect == "read"}
    rng = np.random.default_rng(options.seed)
    calls = 0
    with opened(scenario, options) as env:
        base = env.unwrapped
        assert isinstance(base, MultiTurnEnv)
        for i, task in enumerate(sample_tasks(scenario, options)):
            seed = options.seed + i
            seen: list[tuple[str, dict[str, Any]]] = []
            if scenario.oracle is not None:
                episode, _ = play(env, task.id, seed, Oracle())
                seen = [(c.name, c.arguments) for s in episode.steps for c in s.tool_calls]
            seen += [
                (name, {k: random_value(v, rng) for k, v in t.parameters["properties"].items()})
                for name, t in read_tools.items()
            ]
            env.reset(seed=seed, options={"task_id": task.id})
            for name, arguments in seen:
                if name not in read_tools:
                    continue
                assert base.state is not None
                before = base.state.snapshot()
                base.step(_call(name, arguments))
                calls += 1
                if base.state.snapshot() != before:
                    change = "; ".join(diff_values(before, base.state.state(), limit=5))
                    return CheckResult(
                        "tools",
                        "fail",
                        f"read tool {name!r} changed the state ({change}); declare it "
                        "effect='write' or make it leave the state alone",
                        task.id,
                        seed,
                        [_call(name, arguments)],
                    )
                if base._needs_reset:
                    env.reset(seed=seed, options={"task_id": task.id})
    return CheckResult(
        "tools",
        "pass",
        f"schemas and descriptions complete; {calls} read-tool calls left the state unchanged",
        details={"read_calls": calls},
    )
