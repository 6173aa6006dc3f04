"""The user participant: who the agent talks to when a task is a conversation.

A scenario's ``user`` is a factory ``user(task, initial_state, rng) -> User`` called once per
episode; a :class:`User` has one method, ``reply(context) -> str | None``: the next user
message after the agent answers without a tool call, or ``None`` to end the conversation.

- :class:`ScriptedUser`: benchmark tasks with instructions in sequence
  (``task.data["user_turns"]``), each with an optional check that :func:`instruction_reward`
  pays as a per-turn reward.

The contract (:class:`User`, :class:`UserContext`) is defined in :mod:`simenv.scenario`, which
the environment builds on; this package holds the kinds. The guide is ``docs/users.md``.
"""

from simenv.scenario import User, UserContext, UserFactory
from simenv.users.scripted import (
    CONDITIONS,
    USER_TURNS_KEY,
    Instruction,
    ScriptedUser,
    instruction_index,
    instruction_reward,
    instructions,
    scripted_task,
)

__all__ = [
    "CONDITIONS",
    "USER_TURNS_KEY",
    "Instruction",
    "ScriptedUser",
    "User",
    "UserContext",
    "UserFactory",
    "instruction_index",
    "instruction_reward",
    "instructions",
    "scripted_task",
]
