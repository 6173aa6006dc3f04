"""Policies: one method, ``act(conversations) -> actions``, over a batch of episodes.

Scripted policies live here: :class:`Oracle` (the scenario's gold turns), :class:`Null`
(answers at once, calls nothing), :class:`Random` (random and malformed calls) and
:class:`Scripted` (a fixed list of turns). :func:`from_string` turns a CLI policy name into one.
"""

from simenv.policies.base import Conversation, Policy
from simenv.policies.hf import HF
from simenv.policies.openai import OpenAI
from simenv.policies.scripted import Null, Oracle, Random, Scripted, from_string

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
