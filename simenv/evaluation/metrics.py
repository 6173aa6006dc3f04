"""Evaluation metrics over episode records: reward, success, pass@k, pass^k, trajectories.

Pure Python and numpy; nothing here imports a model library. The definitions, with their
formulas, are in ``docs/evaluation.md``; in short:

- Invalid episodes (``valid=False``: the environment failed, not the agent) are left out of
  every mean and counted in ``episode/invalid_rate``. Termination reasons count every episode.
- A *group* is the set of samples of one task started from one seed: the episode's ``group``
  (numbered by the runner) when it has one, else the task id.
- ``pass@k = 1 - C(n-c, k) / C(n, k)`` (at least one of k samples succeeds) and
  ``pass^k = C(c, k) / C(n, k)`` (all k succeed) are the unbiased estimators over a group's
  ``n`` valid samples with ``c`` successes, averaged over the groups with ``n >= k``.
- Intervals are percentile bootstraps of the mean, seeded so a report is reproducible. Samples
  of one group are not independent, so the bootstrap resamples groups, not episodes.
- Metric keys are namespaced: ``episode/...`` (per-episode means), ``eval/...`` (the scenario's
  evaluation), ``tools/...`` (tool use), ``termination/...`` (shares of episodes), ``users/...``
  (conversations: episodes whose scenario has a user, see :func:`user_turn_scores`).

Example::

    summary = summarize(episodes, ks=(1, 4))
    summary.metrics["eval/pass@4"], summary.per_task["refund-010"]["episode/reward"]
    compare(candidate, baseline).differences["episode/reward"].ci_low
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from simenv.evaluation.estimators import bootstrap_ci, pass_at_k, pass_hat_k
from simenv.types import Episode

__all__ = [
    "DEFAULT_KS",
    "Comparison",
    "Difference",
    "Summary",
    "compare",
    "episode_tokens",
    "group_key",
    "is_conversation",
    "jsonable",
    "outcome",
    "run_label",
    "split_runs",
    "summarize",
    "user_turn_scores",
]

_TOL = 1e-9  # a turn score above this is a success (rewards are sums of floats)

DEFAULT_KS = (1, 2, 4, 8)
"""The k of pass@k and pass^k when none are given."""

MALFORMED = "<malformed>"
"""The tool name counted for a call whose name could not be parsed."""


# ----------------------------------------------------------------------------- episode facts
def group_key(episode: Episode) -> str:
    """The group an episode belongs to: its task plus its :attr:`~simenv.Episode.group`.

    Samples of one group start from one task and one seed (a GRPO group); pass@k and pass^k
    are computed per group. Episodes without a group (e.g. from :func:`simenv.rollout`) are
    grouped by task id.
    """
    if episode.group is not None:
        return f"{episode.task_id}#{episode.group}"
    return episode.task_id


def outcome(episode: Episode) -> str:
    """``"invalid"``, ``"success"`` (evaluation >= 1) or ``"failure"``."""
    if not episode.valid:
        return "invalid"
    return "success" if episode.success else "failure"


def episode_tokens(episode: Episode) -> tuple[int, int] | None:
    """``(prompt, completion)`` token counts summed over turns, or None when not recorded.

    Read from ``metadata["usage"]`` (``prompt_tokens`` / ``completion_tokens``, as OpenAI-style
    endpoints report them) or else from the per-turn records in ``metadata["turns"]``
    (``prompt_ids`` / ``completion_ids`` lists, or ``prompt_tokens`` / ``completion_tokens``
    counts), which the HF and OpenAI policies write.
    """
    usage = episode.metadata.get("usage")
    if isinstance(usage, Mapping) and "completion_tokens" in usage:
        return int(usage.get("prompt_tokens", 0)), int(usage["completion_tokens"])
    turns = episode.metadata.get("turns")
    if not isinstance(turns, list) or not turns:
        return None
    prompt = completion = 0
    for turn in turns:
        if not isinstance(turn, Mapping):
            return None
        prompt += _count(turn, "prompt")
        completion += _count(turn, "completion")
    return prompt, completion


def is_conversation(episode: Episode) -> bool:
    """Whether the episode's scenario has a user (the user spoke again, or ended it)."""
    return episode.termination == "user_end" or any(s.user_message for s in episode.steps)


def user_turn_scores(episode: Episode) -> list[float] | None:
    """The score of the agent's work on each user turn of a conversation, in order.

    A user turn is the opening message or a later user message; its score is the turn reward
    of the answer (the turn without a tool call) that ended the agent's work on it, the
    outcome reward left out: what :func:`simenv.users.instruction_reward` pays for that
    instruction's check. A user turn never answered (the turns ran out) scores 0.0. ``None``
    for an episode that is not a conversation, or whose scenario pays no turn rewards (its
    ``reward_components`` have no ``turns``).
    """
    if not is_conversation(episode) or "turns" not in episode.reward_components:
        return None
    outcome_reward = episode.reward - episode.reward_components["turns"]
    scores: list[float] = []
    for i, step in enumerate(episode.steps):
        if step.tool_calls:
            continue
        last = i == len(episode.steps) - 1
        scores.append(step.reward - outcome_reward if last else step.reward)
    asked = 1 + sum(1 for s in episode.steps if s.user_message)
    return (scores + [0.0] * asked)[:asked]


def _count(turn: Mapping[str, Any], part: str) -> int:
    ids = turn.get(f"{part}_ids")
    if isinstance(ids, list):
        return len(ids)
    return int(turn.get(f"{part}_tokens", 0))


def run_label(episode: Episode) -> str:
    """A short name for the run an episode belongs to: the policy it was played with.

    The runner's job key carries the ``--policy`` string when one file holds several policies
    (``simenv run -p oracle -p random``); otherwise the policy record's name (and model).
    """
    job = episode.metadata.get("job")
    if isinstance(job, Mapping) and "key" in job:
        key = str(job["key"])
        suffix = f":{episode.task_id}#{job.get('sample', 0)}@{episode.seed}"
        if key.endswith(suffix) and len(key) > len(suffix):
            return key[: -len(suffix)]
    name = str(episode.policy.get("name") or "policy")
    model = episode.policy.get("model")
    return f"{name}:{model}" if model else name


def split_runs(episodes: Iterable[Episode]) -> dict[str, list[Episode]]:
    """Episodes by run (see :func:`run_label`), in order of first appearance.

    When the episodes span several scenarios, labels are prefixed with the scenario id.
    """
    episodes = list(episodes)
    several = len({e.scenario_id for e in episodes}) > 1
    runs: dict[str, list[Episode]] = {}
    for e in episodes:
        label = run_label(e)
        runs.setdefault(f"{e.scenario_id} {label}" if several else label, []).append(e)
    return runs


# ----------------------------------------------------------------------------- summary
@dataclass(frozen=True)
class Summary:
    """The metrics of one run.

    Attributes:
        episodes: Episodes in the run, invalid ones included.
        valid: Valid episodes (the ones every mean is taken over).
        tasks: Distinct task ids.
        groups: Distinct groups (task and seed; see :func:`group_key`).
        ks: The k asked for.
        metrics: Flat, namespaced numbers (``episode/reward``, ``eval/pass@4`` ...); a metric
            that cannot be measured (no valid episode, no token record, no group with
            ``n >= k``) is absent rather than zero.
        pass_groups: For each k, how many groups had at least k valid samples and so count in
            ``eval/pass@k`` and ``eval/pass^k``.
        per_task: The same means per task id (no intervals), plus ``episode/count``.
        tools: Per tool name: ``calls``, ``errors``, ``error_rate``, ``calls_per_episode``
            and mean ``latency_s``.
        termination: Episodes per termination reason (invalid ones included).
        conversational: Whether the run's episodes are conversations (their scenario has a
            user): reports then lead with pass^k, the reliability over k trials.
    """

    episodes: int
    valid: int
    tasks: int
    groups: int
    ks: tuple[int, ...]
    metrics: dict[str, float]
    pass_groups: dict[int, int]
    per_task: dict[str, dict[str, float]]
    tools: dict[str, dict[str, float]]
    termination: dict[str, int]
    conversational: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (non-finite numbers become None)."""
        out: dict[str, Any] = jsonable(asdict(self))
        return out


def summarize(
    episodes: Sequence[Episode],
    ks: Sequence[int] = DEFAULT_KS,
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> Summary:
    """The metrics of a run, overall and per task.

    Args:
        episodes: The run's episodes, several samples per task allowed.
        ks: The k of pass@k and pass^k.
        confidence: Coverage of the bootstrap intervals.
        resamples: Bootstrap resamples.
        seed: Seed of the bootstrap.

    Returns:
        A :class:`Summary`; ``metrics`` holds ``episode/reward`` with ``episode/reward_ci_low``
        and ``episode/reward_ci_high``, ``eval/success`` with its interval, ``eval/pass@k``,
        ``eval/pass^k``, turns, tool use, tokens, termination shares and the invalid rate.

    Raises:
        ValueError: A k is less than 1.
    """
    if any(k < 1 for k in ks):
        raise ValueError(f"every k must be at least 1, got {list(ks)}")
    ks = tuple(sorted(set(ks)))
    valid = [e for e in episodes if e.valid]
    metrics = _means(valid, len(episodes))
    if valid:
        rewards = [e.reward for e in valid]
        labels = [group_key(e) for e in valid]
        metrics["episode/reward_std"] = float(np.std(rewards))
        for i, (key, values) in enumerate(
            (("episode/reward", rewards), ("eval/success", [float(e.success) for e in valid]))
        ):
            low, high = bootstrap_ci(
                values, clusters=labels, confidence=confidence, resamples=resamples, seed=seed + i
            )
            metrics[f"{key}_ci_low"], metrics[f"{key}_ci_high"] = low, high
    pass_k, pass_groups = _pass_metrics(valid, ks)
    metrics.update(pass_k)
    tools = _tool_stats(valid)
    for name, stats in tools.items():
        metrics[f"tools/{name}/calls_per_episode"] = stats["calls_per_episode"]
        metrics[f"tools/{name}/error_rate"] = stats["error_rate"]
    termination = dict(Counter(e.termination for e in episodes).most_common())
    for reason, count in termination.items():
        metrics[f"termination/{reason}"] = count / len(episodes)
    by_task: dict[str, list[Episode]] = defaultdict(list)
    for e in episodes:
        by_task[e.task_id].append(e)
    per_task = {}
    for task, group in sorted(by_task.items()):
        ok = [e for e in group if e.valid]
        row = {"episode/count": float(len(group)), **_means(ok, len(group))}
        row.update(_pass_metrics(ok, ks)[0])
        per_task[task] = row
    return Summary(
        episodes=len(episodes),
        valid=len(valid),
        tasks=len(by_task),
        groups=len({group_key(e) for e in episodes}),
        ks=ks,
        metrics=dict(sorted(metrics.items(), key=_rank)),
        pass_groups=pass_groups,
        per_task=per_task,
        tools=tools,
        termination=termination,
        conversational=any(is_conversation(e) for e in episodes),
    )


_ORDER = (
    "episode/reward",
    "eval/success",
    "eval/score",
    "eval/pass@",
    "eval/pass^",
    "episode/turns",
    "episode/prompt_tokens",
    "episode/completion_tokens",
    "tools/calls_per_episode",
    "tools/error_rate",
    "tools/",
    "users/",
    "episode/invalid_rate",
    "termination/",
)


def _rank(item: tuple[str, float]) -> tuple[int, int]:
    """Sort key that puts related metrics together, headline ones first (pass@k by k)."""
    key = item[0]
    for rank, prefix in enumerate(_ORDER):
        if key.startswith(prefix):
            k = key[len(prefix) :]
            return rank, int(k) if prefix.startswith("eval/pass") and k.isdigit() else 0
    return len(_ORDER), 0


def _means(valid: Sequence[Episode], total: int) -> dict[str, float]:
    """Per-episode means over the valid episodes, and the invalid rate over all of them."""
    out: dict[str, float] = {}
    if total:
        out["episode/invalid_rate"] = (total - len(valid)) / total
    if not valid:
        return out
    n = len(valid)
    out["episode/reward"] = sum(e.reward for e in valid) / n
    out["eval/success"] = sum(e.success for e in valid) / n
    out["eval/score"] = sum(e.evaluation or 0.0 for e in valid) / n
    out["episode/turns"] = sum(e.turns for e in valid) / n
    calls = sum(len(s.tool_calls) for e in valid for s in e.steps)
    out["tools/calls_per_episode"] = calls / n
    if calls:
        out["tools/error_rate"] = sum(e.tool_errors for e in valid) / calls
    talks = [e for e in valid if is_conversation(e)]
    if talks:
        out["users/turns"] = sum(
            1 + sum(1 for s in e.steps if s.user_message) for e in talks
        ) / len(talks)
        scored = [x for x in map(user_turn_scores, talks) if x is not None]
        if scored:
            turns = [score for scores in scored for score in scores]
            out["users/turn_success"] = sum(score > _TOL for score in turns) / len(turns)
    tokens = [t for t in map(episode_tokens, valid) if t is not None]
    if tokens:
        out["episode/prompt_tokens"] = sum(p for p, _ in tokens) / len(tokens)
        out["episode/completion_tokens"] = sum(c for _, c in tokens) / len(tokens)
    return out


def _pass_metrics(
    valid: Sequence[Episode], ks: Sequence[int]
) -> tuple[dict[str, float], dict[int, int]]:
    """pass@k and pass^k averaged over the groups with at least k valid samples."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # group -> [n, c]
    for e in valid:
        tally = counts[group_key(e)]
        tally[0] += 1
        tally[1] += e.success
    out: dict[str, float] = {}
    used: dict[int, int] = {}
    for k in ks:
        eligible = [(n, c) for n, c in counts.values() if n >= k]
        used[k] = len(eligible)
        if eligible:
            out[f"eval/pass@{k}"] = sum(pass_at_k(n, c, k) for n, c in eligible) / len(eligible)
            out[f"eval/pass^{k}"] = sum(pass_hat_k(n, c, k) for n, c in eligible) / len(eligible)
    return out, used


def _tool_stats(valid: Sequence[Episode]) -> dict[str, dict[str, float]]:
    calls: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    latency: defaultdict[str, float] = defaultdict(float)
    for e in valid:
        for step in e.steps:
            results = {r.tool_call_id: r for r in step.tool_results}
            for call in step.tool_calls:
                name = call.name or MALFORMED
                calls[name] += 1
                result = results.get(call.id)
                if call.error is not None or (result is not None and result.is_error):
                    errors[name] += 1
                if result is not None:
                    latency[name] += result.latency_s
    return {
        name: {
            "calls": float(count),
            "errors": float(errors[name]),
            "error_rate": errors[name] / count,
            "calls_per_episode": count / len(valid),
            "latency_s": latency[name] / count,
        }
        for name, count in calls.most_common()
    }


# ----------------------------------------------------------------------------- comparison
@dataclass(frozen=True)
class Difference:
    """A paired difference of one metric between two runs, over the tasks both ran.

    Attributes:
        metric: ``episode/reward`` or ``eval/success``.
        run: Mean over shared tasks of the run's per-task means.
        baseline: The same for the baseline.
        difference: ``run - baseline`` (the mean of the per-task differences).
        ci_low: Lower end of the bootstrap interval of ``difference`` (tasks resampled).
        ci_high: Upper end.
        wins: Tasks where the run is higher.
        losses: Tasks where the baseline is higher.
        ties: Tasks where they are equal.
    """

    metric: str
    run: float
    baseline: float
    difference: float
    ci_low: float
    ci_high: float
    wins: int
    losses: int
    ties: int


@dataclass(frozen=True)
class Comparison:
    """A paired comparison of a run with a baseline on the tasks both ran.

    Attributes:
        tasks: Tasks with valid episodes in both runs (the pairs).
        only_run: Tasks only the run has (left out).
        only_baseline: Tasks only the baseline has (left out).
        differences: One :class:`Difference` per metric.
        per_task: For each shared task, ``run - baseline`` per metric.
    """

    tasks: int
    only_run: tuple[str, ...]
    only_baseline: tuple[str, ...]
    differences: dict[str, Difference]
    per_task: dict[str, dict[str, float]]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (non-finite numbers become None)."""
        out: dict[str, Any] = jsonable(asdict(self))
        return out


_PAIRED = {"episode/reward": lambda e: e.reward, "eval/success": lambda e: float(e.success)}


def compare(
    run: Sequence[Episode],
    baseline: Sequence[Episode],
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> Comparison:
    """Compare a run with a baseline on the same tasks, pairing them task by task.

    Each task's value is the mean over its valid episodes in each run; the difference is the
    mean over shared tasks of ``run - baseline``, and its interval a bootstrap over tasks
    (pairs stay together, so task difficulty cancels out).

    Args:
        run: The candidate's episodes.
        baseline: The baseline's episodes.
        confidence: Coverage of the intervals.
        resamples: Bootstrap resamples.
        seed: Seed of the bootstrap.

    Returns:
        A :class:`Comparison` of ``episode/reward`` and ``eval/success``.
    """
    mine, theirs = _task_means(run), _task_means(baseline)
    shared = sorted(set(mine) & set(theirs))
    differences = {}
    per_task: dict[str, dict[str, float]] = {t: {} for t in shared}
    for i, metric in enumerate(_PAIRED):
        deltas = [mine[t][metric] - theirs[t][metric] for t in shared]
        for task, delta in zip(shared, deltas, strict=True):
            per_task[task][metric] = delta
        low, high = bootstrap_ci(deltas, confidence=confidence, resamples=resamples, seed=seed + i)
        n = max(len(shared), 1)
        differences[metric] = Difference(
            metric=metric,
            run=sum(mine[t][metric] for t in shared) / n if shared else math.nan,
            baseline=sum(theirs[t][metric] for t in shared) / n if shared else math.nan,
            difference=sum(deltas) / n if shared else math.nan,
            ci_low=low,
            ci_high=high,
            wins=sum(d > 0 for d in deltas),
            losses=sum(d < 0 for d in deltas),
            ties=sum(d == 0 for d in deltas),
        )
    return Comparison(
        tasks=len(shared),
        only_run=tuple(sorted(set(mine) - set(theirs))),
        only_baseline=tuple(sorted(set(theirs) - set(mine))),
        differences=differences,
        per_task=per_task,
    )


def _task_means(episodes: Sequence[Episode]) -> dict[str, dict[str, float]]:
    by_task: dict[str, list[Episode]] = defaultdict(list)
    for e in episodes:
        if e.valid:
            by_task[e.task_id].append(e)
    return {
        task: {metric: sum(map(value, group)) / len(group) for metric, value in _PAIRED.items()}
        for task, group in by_task.items()
    }


def jsonable(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None, recursively (for strict JSON).

    Tuples become lists; other values are returned as they are.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value
