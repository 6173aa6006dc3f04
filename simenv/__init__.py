"""simenv: trustworthy multi-turn environments for training LLM agents with RL.

The public API is what ``__all__`` lists; everything else is internal. A scenario is declared
with :class:`Scenario`, :class:`Task`, :func:`tool` and :class:`Sandbox`; :func:`make` builds its
environment; :func:`rollout` plays an episode with a policy from :mod:`simenv.rollouts.policies`.
"""

from simenv.env import MultiTurnEnv
from simenv.errors import (
    InfraError,
    RegistrationError,
    ResetNeeded,
    ScenarioError,
    SimenvError,
    ToolArgumentError,
    ToolError,
)
from simenv.registration import load_scenario, make, register, registry, spec
from simenv.rollouts.runner import rollout
from simenv.scenario import Example, Outcome, Scenario
from simenv.tools.base import Tool, tool
from simenv.tools.sandbox import Sandbox
from simenv.types import Episode, Message, Step, Task, ToolCall, ToolResult

__version__ = "0.1.0"

__all__ = [
    "Episode",
    "Example",
    "InfraError",
    "Message",
    "MultiTurnEnv",
    "Outcome",
    "RegistrationError",
    "ResetNeeded",
    "Sandbox",
    "Scenario",
    "ScenarioError",
    "SimenvError",
    "Step",
    "Task",
    "Tool",
    "ToolArgumentError",
    "ToolCall",
    "ToolError",
    "ToolResult",
    "__version__",
    "load_scenario",
    "make",
    "register",
    "registry",
    "rollout",
    "spec",
    "tool",
]
