"""Constant-time comparison of keys, tokens and signatures (every one the gateway checks)."""

from __future__ import annotations

import hmac

__all__ = ["same"]


def same(given: str, expected: str) -> bool:
    """Whether two secrets are equal, in time that does not depend on where they differ.

    Any string is accepted, lone surrogates included (a JSON body can carry them).
    """
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )
