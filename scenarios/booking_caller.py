"""The caller of ``service/Bookings-v1``: a seeded rule-based customer (see its spec, ## User).

The customer holds hidden facts (booking reference, full name, date of birth, reason, and the
refund method or the new check-in date) and reveals one only when a sentence of the agent's
message both asks something (a question mark, "please", "could you" ...) and names that fact
("reference", "name", "date of birth", "why", "card or credit", "which date" ...). Asked for
several facts, it answers them all in one message, in a fixed order. A message that asks for
nothing it knows ends the conversation when it sounds settled or refused, and otherwise gets a
nudge, until ``PATIENCE`` replies have been spent. Its facts come from the starting state; the
episode's generator only picks the wording, so the same seed and the same agent turns give the
same replies.
"""

from __future__ import annotations

import re

import numpy as np

from simenv.users import Hidden, User, UserContext

PATIENCE = 5
"""Customer replies after the opening one before an unhelpful agent loses the customer."""

_BIRTH = re.compile(r"\b(date of birth|birth ?date)\b")
_ASKS = {
    fact: re.compile(pattern)
    for fact, pattern in {
        "booking_ref": r"\b(reference|ref|confirmation|(booking|reservation) (number|code|id))\b",
        "full_name": r"\bnames?\b",
        "date_of_birth": r"\b(date of birth|birth ?date|born|dob|birthday)\b",
        "reason": r"\b(why|reason)\b",
        "refund_method": r"\bcard\b[^.?!]*\bor\b[^.?!]*\bcredit\b"
        r"|\bcredit\b[^.?!]*\bor\b[^.?!]*\bcard\b"
        r"|\b(refund method|how would you like (the|your) (refund|money))\b",
        "new_check_in": r"\b(new|which|what|preferred|another|other)\b[^.?!]*\bdates?\b"
        r"|\bwhen\b[^.?!]*\b(check in|check-in|stay|arrive|move)\b",
    }.items()
}
_REQUEST = re.compile(
    r"\?|\b(please|could you|can you|would you|may i|tell me|give me|provide|share|confirm|"
    r"let me know|need your|need the)\b"
)
_SETTLED = re.compile(
    r"\$\s?\d|\b(cancelled|canceled|moved|rescheduled|rebooked|changed|refunded|credited|done|"
    r"all set|confirmed)\b|"
    r"\b(unable|cannot|can't|can ?not|not able|not possible|won't be able|declined?|"
    r"not eligible|ineligible)\b"
)
_SAYS = {
    "booking_ref": ("My booking reference is {}.", "It's {}.", "The reference is {}."),
    "full_name": ("The booking is under {}.", "The name is {}."),
    "date_of_birth": ("My date of birth is {}.", "I was born on {}."),
    "new_check_in": ("Could you move it to check in on {}?", "I'd like to arrive on {} instead."),
}
_REASON_SAYS = {
    "change_of_plans": ("My plans have changed.", "We've changed our plans, unfortunately."),
    "illness": ("I'm ill and can't travel.", "My doctor told me not to travel."),
    "travel_disruption": ("My flight was cancelled.", "There's a rail strike, I can't get there."),
    "work": ("Something came up at work.", "My employer moved a conference to those dates."),
}
_METHOD_SAYS = {
    "card": ("Back to my card, please.", "To the card I paid with."),
    "credit": ("Hotel credit is fine.", "I'll take the hotel credit."),
}
OPENINGS = {
    "cancel": (
        "Hi, I need to cancel my hotel booking.",
        "Hello, I'd like to cancel a reservation, please.",
        "I won't be able to make my stay. Can you cancel it?",
    ),
    "change": (
        "Hi, I'd like to change the dates of my hotel booking.",
        "Hello, can I move my reservation to another date?",
        "I need to reschedule my stay, please.",
    ),
}


class Customer(User):
    """The caller: hidden facts revealed only when asked for; ends once settled or refused."""

    def __init__(self, goal: str, facts: dict[str, str]) -> None:
        self.goal = goal
        own = ("refund_method",) if goal == "cancel" else ("new_check_in",)
        keep = ("booking_ref", "full_name", "date_of_birth", "reason", *own)
        self.facts = {k: facts[k] for k in keep}
        self.hidden = tuple(
            Hidden(f"fact {k!r}", v, (_ASKS[k].pattern,))
            for k, v in self.facts.items()
            if k not in ("reason", "refund_method")  # said in words, not as these keys
        )
        """What the leak check looks for before the agent asks (``simenv.users.hidden``)."""

    def asked(self, text: str) -> list[str]:
        """The facts the agent's message asks for, in the order the customer tells them."""
        found: set[str] = set()
        for sentence in re.split(r"(?<=[.!?])\s+|\n+", text.lower()):
            if not _REQUEST.search(sentence):
                continue
            unborn = _BIRTH.sub(" ", sentence)  # "date of birth" is not a check-in date
            for fact, pattern in _ASKS.items():
                if pattern.search(sentence if fact == "date_of_birth" else unborn):
                    found.add(fact)
        return [f for f in self.facts if f in found]

    def reply(self, context: UserContext) -> str | None:
        """Answer what was asked; end the conversation once settled or refused; else nudge."""
        asked = self.asked(context.answer)
        if asked:
            return " ".join(self._say(f, context.rng) for f in asked)
        if _SETTLED.search(context.answer.lower()) or context.user_turn >= PATIENCE:
            return None
        return f"Sorry, what do you need from me to {self.goal} my booking?"

    def _say(self, fact: str, rng: np.random.Generator) -> str:
        value = self.facts[fact]
        if fact == "reason":
            options = _REASON_SAYS[value]
        elif fact == "refund_method":
            options = _METHOD_SAYS[value]
        else:
            options = tuple(o.format(value) for o in _SAYS[fact])
        return options[int(rng.integers(0, len(options)))]
