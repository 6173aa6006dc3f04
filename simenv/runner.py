"""Deprecated: moved to :mod:`simenv.rollouts`; this alias is kept for one release."""

import warnings

from simenv.rollouts.jobs import Job, plan_jobs
from simenv.rollouts.pools import EnvPool, HostedEnv, LocalPool, StepResult, step_envs
from simenv.rollouts.runner import rollout, run

__all__ = [
    "EnvPool",
    "HostedEnv",
    "Job",
    "LocalPool",
    "StepResult",
    "plan_jobs",
    "rollout",
    "run",
    "step_envs",
]

warnings.warn(
    "simenv.runner moved to simenv.rollouts; import it from there"
    " (the old path is kept for one release, see CHANGELOG.md)",
    DeprecationWarning,
    stacklevel=2,
)
