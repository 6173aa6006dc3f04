"""The one error tree of simenv.

Every error simenv raises on purpose derives from :class:`SimenvError`::

    SimenvError
     ├── ToolError            the agent's fault: a ``role: "tool"`` message; the episode goes on
     │    └── ToolArgumentError   arguments that do not match the tool's schema
     ├── InfraError           the environment's fault: the episode ends with ``valid = False``
     ├── ScenarioError        a scenario definition is wrong (raised when it is built or loaded)
     ├── RegistrationError    an id cannot be registered, found or loaded
     └── ResetNeeded          ``step`` was called before ``reset`` or after the episode ended

Messages say what happened, why, and how to fix it. ``ToolError`` messages are read by the model,
so they are written for it: short, specific, and telling it what to do next.
"""

from __future__ import annotations

__all__ = [
    "InfraError",
    "RegistrationError",
    "ResetNeeded",
    "ScenarioError",
    "SimenvError",
    "ToolArgumentError",
    "ToolError",
]


class SimenvError(Exception):
    """Root of every error simenv raises on purpose."""


class ToolError(SimenvError):
    """The agent used a tool wrongly; the message is shown to the agent and the episode goes on."""


class ToolArgumentError(ToolError):
    """The arguments of a tool call do not match the tool's JSON schema."""


class InfraError(SimenvError):
    """The environment itself failed (not the agent); the episode is marked invalid.

    The trainer drops invalid episodes instead of scoring them 0, so an outage never teaches the
    policy that a correct action was bad.
    """


class ScenarioError(SimenvError):
    """A scenario definition is wrong: raised when it is built or loaded, never mid-episode."""


class RegistrationError(SimenvError):
    """An id could not be registered, found or loaded."""


class ResetNeeded(SimenvError, RuntimeError):
    """``step`` was called before the first ``reset`` or after the episode ended."""
