"""Policies: one method, ``act(conversations) -> actions``, over a batch of episodes.

Scripted: :class:`Oracle` (the scenario's gold turns), :class:`Null` (answers at once, calls
nothing), :class:`Random` (random and malformed calls) and :class:`Scripted` (a fixed list of
turns). Models: :class:`HF` (a local transformers model, recording tokens and logprobs for the
trainer; torch is imported only when one is built) and :class:`OpenAI` (any OpenAI-compatible
endpoint). :func:`from_string` turns a CLI policy name into one.
"""

from simenv.rollouts.policies.base import Conversation, Policy
from simenv.rollouts.policies.hf import HF
from simenv.rollouts.policies.openai import OpenAI
from simenv.rollouts.policies.scripted import Null, Oracle, Random, Scripted, from_string

__all__ = [
    "HF",
    "Conversation",
    "Null",
    "OpenAI",
    "Oracle",
    "Policy",
    "Random",
    "Scripted",
    "from_string",
]
