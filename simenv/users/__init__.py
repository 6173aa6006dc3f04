"""The user participant: who the agent talks to when a task is a conversation.

A scenario's ``user`` is a factory ``user(task, initial_state, rng) -> User`` called once per
episode; a :class:`User` has one method, ``reply(context) -> str | None``: the next user
message after the agent answers without a tool call, or ``None`` to end the conversation.

- :class:`ScriptedUser`: benchmark tasks with instructions in sequence
  (``task.data["user_turns"]``), each with an optional check that :func:`instruction_reward`
  pays as a per-turn reward.
- :class:`PersonaUser`: a seeded rule-based :class:`Persona` with hidden facts it tells only
  when asked, goals in order and patience.
- :class:`LLMUser`: any policy prompted with the task's hidden instructions, its replies
  recorded and replayed through a cassette keyed by the conversation; ends on ``###STOP###``.

The contract (:class:`User`, :class:`UserContext`) is defined in :mod:`simenv.scenario`, which
the environment builds on; this package holds the kinds. The guide is ``docs/users.md``.
"""

from simenv.scenario import User, UserContext, UserFactory
from simenv.users.hidden import Hidden, hidden
from simenv.users.llm import INSTRUCTIONS_KEY, PROMPT, STOP, LLMUser, LLMUserFactory
from simenv.users.persona import NUDGES, PERSONA_KEY, Fact, Goal, Persona, PersonaUser
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
    "INSTRUCTIONS_KEY",
    "NUDGES",
    "PERSONA_KEY",
    "PROMPT",
    "STOP",
    "USER_TURNS_KEY",
    "Fact",
    "Goal",
    "Hidden",
    "Instruction",
    "LLMUser",
    "LLMUserFactory",
    "Persona",
    "PersonaUser",
    "ScriptedUser",
    "User",
    "UserContext",
    "UserFactory",
    "hidden",
    "instruction_index",
    "instruction_reward",
    "instructions",
    "scripted_task",
]
