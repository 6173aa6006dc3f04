"""Reward sanity: the reward-hacking guards."""

from __future__ import annotations

import math
import re
from typing import Any

from simenv.checks.episodes import CheckOptions, opened, play, sample_tasks
from simenv.checks.report import CheckResult
from simenv.env import MultiTurnEnv
from simenv.rollouts.policies.scripted import Null, Oracle, Random, Scripted
from simenv.scenario import SCORE_TOL, Scenario
from simenv.types import Episode, Task
from simenv.users.hidden import Hidden, hidden

__all__ = ["check_examples", "check_leaks", "check_reward_sanity"]

_REWARD_WORDS = re.compile(r"\b(reward|your score|correct answer is)\b", re.IGNORECASE)


def check_reward_sanity(scenario: Scenario, options: CheckOptions) -> CheckResult:
    """The null agent must not score, the oracle must, and reward agrees with evaluation.

    Proves, per task: the null policy (answers at once, calls nothing) earns at most
    ``reward_floor`` and is not judged a success; the oracle earns at least ``reward_ceiling``
    and is judged a success. Reports the random policy's mean reward, and how often reward and
    evaluation disagree on random episodes (a sign the reward can be gamed, or is too strict).
    """
    if scenario.oracle is None:
        return CheckResult("reward", "fail", "the scenario has no oracle; give Scenario(oracle=)")
    tasks = sample_tasks(scenario, options)
    random_rewards: list[float] = []
    disagreements = 0
    with opened(scenario, options) as env:
        for i, task in enumerate(tasks):
            seed = options.seed + i
            null, actions = play(env, task.id, seed, Null())
            if null.reward > scenario.reward_floor + SCORE_TOL or null.success:
                return CheckResult(
                    "reward",
                    "fail",
                    f"the do-nothing agent earned {null.reward} (floor {scenario.reward_floor}, "
                    f"evaluation {null.evaluation}): the reward pays for not doing the task",
                    task.id,
                    seed,
                    actions,
                )
            gold, actions = play(env, task.id, seed, Oracle())
            short = gold.reward < scenario.reward_ceiling - SCORE_TOL
            if not gold.valid or short or not gold.success:
                return CheckResult(
                    "reward",
                    "fail",
                    f"the oracle earned {gold.reward} (ceiling {scenario.reward_ceiling}, "
                    f"evaluation {gold.evaluation}, valid {gold.valid}): the task cannot be "
                    "solved as specified, or the reward and evaluation disagree on a solution",
                    task.id,
                    seed,
                    actions,
                )
            rand, _ = play(env, task.id, seed, Random(seed=seed))
            random_rewards.append(rand.reward)
            disagreements += (rand.reward >= scenario.reward_ceiling - SCORE_TOL) != rand.success
    mean = math.fsum(random_rewards) / len(random_rewards)
    details = {"tasks": len(tasks), "random_mean_reward": mean, "disagreements": disagreements}
    message = (
        f"{len(tasks)} tasks: null <= {scenario.reward_floor}, oracle >= "
        f"{scenario.reward_ceiling}; random policy mean reward {mean:.3f}"
    )
    if disagreements:
        return CheckResult(
            "reward",
            "warn",
            f"{message}; reward and evaluation disagreed on {disagreements} random episodes",
            details=details,
        )
    return CheckResult("reward", "pass", message, details=details)


def _secrets(scenario: Scenario, task: Task) -> list[str]:
    found: list[str] = []

    def collect(value: Any) -> None:
        if isinstance(value, str) and len(value.strip()) >= 4:
            found.append(value.strip())
        elif isinstance(value, int | float) and not isinstance(value, bool) and abs(value) >= 100:
            found.append(str(value))
        elif isinstance(value, list | tuple):
            for v in value:
                collect(v)
        elif isinstance(value, dict):
            for v in value.values():
                collect(v)

    for key, value in task.data.items():
        if any(word in key.lower() for word in scenario.secret_keys):
            collect(value)
    return found


def _seen(episode: Episode) -> list[tuple[str, str]]:
    """(where, text) for everything the agent was shown."""
    return [
        (f"{m['role']} message", str(m.get("content") or ""))
        for m in episode.messages
        if m.get("role") in ("system", "user", "tool")
    ]


def check_leaks(scenario: Scenario, options: CheckOptions) -> CheckResult:
    """Neither the gold answer nor the reward reaches the agent for free.

    Gold answers are the values of ``task.data`` whose keys name one of the scenario's
    ``secret_keys`` (``answer``, ``gold``, ``expected``, ``solution`` by default). They must not
    appear in the prompts, the tool descriptions, or any tool result of the null and random
    policies' episodes; no tool result may talk about the reward or the score. In a
    conversation, the user's hidden texts (:func:`simenv.users.hidden`) are secrets too: its
    hidden instructions always, a persona's facts until an agent message asks for them.
    """
    schemas = " ".join(f"{t.description} {t.parameters}" for t in scenario.tools)
    checked = 0
    with opened(scenario, options) as env:
        base = env.unwrapped
        assert isinstance(base, MultiTurnEnv)
        for i, task in enumerate(sample_tasks(scenario, options)):
            seed = options.seed + i
            secrets = _secrets(scenario, task)
            for policy in (Null(), Random(seed=seed)):
                episode, actions = play(env, task.id, seed, policy)
                found = _user_leak(episode, hidden(base.user), schemas)
                if found is not None:
                    return CheckResult("leaks", "fail", found, task.id, seed, actions)
                for where, text in [("tool descriptions", schemas), *_seen(episode)]:
                    checked += 1
                    leaked = next((s for s in secrets if s in text), None)
                    if leaked is not None:
                        return CheckResult(
                            "leaks",
                            "fail",
                            f"the gold answer {leaked!r:.60} appears in the {where} without "
                            "the task being done: the agent can copy it instead of solving",
                            task.id,
                            seed,
                            actions,
                        )
                    if where == "tool message" and _REWARD_WORDS.search(text):
                        return CheckResult(
                            "leaks",
                            "fail",
                            f"a tool result talks about the reward or score ({text[:80]!r}); "
                            "the agent must not see how it is graded",
                            task.id,
                            seed,
                            actions,
                        )
    return CheckResult("leaks", "pass", f"no gold answer or reward in {checked} texts shown")


def _user_leak(episode: Episode, secrets: list[Hidden], schemas: str) -> str | None:
    """Where a user's hidden text shows before the agent asked for it, or ``None``.

    Walks the transcript in order: a text whose ``asked_by`` an agent message matches may show
    from then on; the others (hidden instructions) never.
    """
    if not secrets:
        return None
    secrets = sorted(secrets, key=lambda h: bool(h.asked_by))  # the never-shown ones first
    asked: set[int] = set()
    seen = [("tool descriptions", "tool", schemas)] + [
        (f"{m.get('role')} message {n}", str(m.get("role")), str(m.get("content") or ""))
        for n, m in enumerate(episode.messages)
    ]
    for where, role, text in seen:
        if role == "assistant":
            asked.update(
                k
                for k, h in enumerate(secrets)
                if any(re.search(p, text, re.IGNORECASE) for p in h.asked_by)
            )
            continue
        for k, h in enumerate(secrets):
            if k not in asked and h.text in text:
                when = "before the agent asked for it" if h.asked_by else "(it must never show)"
                return (
                    f"the user's {h.what} {h.text!r:.60} appears in the {where} {when}: the "
                    "agent learns what it should have to ask for, or the user's script"
                )
    return None


def check_examples(scenario: Scenario, options: CheckOptions) -> CheckResult:
    """Each worked example in the scenario's spec earns the reward it states."""
    if not scenario.examples:
        return CheckResult("examples", "warn", "no worked examples; add a golden and a failing one")
    with opened(scenario, options) as env:
        for ex in scenario.examples:
            episode, _ = play(env, ex.task_id, ex.seed, Scripted(ex.actions))
            if abs(episode.reward - ex.reward) > SCORE_TOL:
                return CheckResult(
                    "examples",
                    "fail",
                    f"example {ex.title!r} states reward {ex.reward} but earns {episode.reward}",
                    ex.task_id,
                    ex.seed,
                    list(ex.actions),
                )
    return CheckResult("examples", "pass", f"{len(scenario.examples)} examples earn their reward")
