"""Constant-time comparison of keys, tokens and signatures: the env server's, shared."""

from __future__ import annotations

from simenv.server.auth import same_secret as same

__all__ = ["same"]
