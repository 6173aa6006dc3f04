"""Rollouts: playing episodes with a policy, locally or on a cluster, and keeping the records.

- ``jobs``: :class:`Job` (one episode to play, with its group) and :func:`plan_jobs`;
- ``pools``: where environments live (:class:`EnvPool`; :class:`LocalPool` in this process);
- ``runner``: :func:`rollout` (one episode) and :func:`run` (many, stepped in lockstep batches);
- ``ray``: :class:`~simenv.rollouts.ray.RayPool`, environments as Ray actors (Ray optional);
- ``store``: the append-only JSONL episode store that makes a run resumable;
- ``recording``: re-recording a scenario's cassettes by playing its oracle, and coverage;
- ``policies/``: what acts (scripted policies, a local HF model, an OpenAI-compatible endpoint).

The common names are re-exported here: ``from simenv.rollouts import Job, plan_jobs, run``.
"""

from simenv.rollouts.jobs import Job, plan_jobs
from simenv.rollouts.pools import EnvPool, HostedEnv, LocalPool, StepResult
from simenv.rollouts.runner import rollout, run
from simenv.rollouts.store import EpisodeStore, read_episodes

__all__ = [
    "EnvPool",
    "EpisodeStore",
    "HostedEnv",
    "Job",
    "LocalPool",
    "StepResult",
    "plan_jobs",
    "read_episodes",
    "rollout",
    "run",
]
