"""Bearer tokens for simenv's HTTP servers: who may call, and who owns what they create.

One mechanism for every server simenv runs (the env server, the agent gateway): a server holds a
:class:`TokenAuth`, asks it who sent each request (:meth:`TokenAuth.principal`, from the
``Authorization: Bearer TOKEN`` header), and tags what that request creates with the answer.
A principal is a digest of the token, never the token itself, so it can be stored, logged and
compared without leaking it; the tokens are compared in constant time (:func:`hmac.compare_digest`
over every configured token, whichever matches).

Authentication is on unless it is switched off explicitly, and it can only be switched off on a
loopback address (:func:`check_exposure`): a server reachable from the network always asks for a
token. Where the tokens come from, first match wins:

1. the ``tokens`` given (``simenv serve --token T``, repeatable);
2. the environment variable :data:`TOKENS_ENV` (``SIMENV_SERVER_TOKENS``), several separated by
   commas or whitespace;
3. one generated at start (:func:`generate_token`), which the server prints once.

Clients send one token: an argument, or the environment variable :data:`CLIENT_TOKEN_ENV`
(``SIMENV_SERVER_TOKEN``), read by :func:`client_token`.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
import secrets
from collections.abc import Iterable, Mapping

__all__ = [
    "ANONYMOUS",
    "CLIENT_TOKEN_ENV",
    "TOKENS_ENV",
    "AuthError",
    "TokenAuth",
    "check_exposure",
    "client_token",
    "generate_token",
    "is_loopback",
    "resolve_tokens",
    "same_secret",
]

TOKENS_ENV = "SIMENV_SERVER_TOKENS"
"""The server's tokens (commas or whitespace between them) when none is given explicitly."""

CLIENT_TOKEN_ENV = "SIMENV_SERVER_TOKEN"
"""The token a client sends when none is passed to it."""

ANONYMOUS = "anonymous"
"""The principal of every request to a server with authentication switched off."""

MIN_TOKEN_CHARS = 16
"""Shorter tokens are refused: they could be guessed."""

_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces: what a header carries


class AuthError(Exception):
    """A request without a valid token: HTTP 401, with the header that says how to authenticate.

    Attributes:
        status: 401.
        kind: ``Unauthorized``.
        message: What was wrong and how to fix it.
        headers: ``WWW-Authenticate`` (RFC 6750).
    """

    status = 401
    kind = "Unauthorized"

    def __init__(self, message: str, error: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        challenge = 'Bearer realm="simenv"'
        if error:
            challenge += f', error="{error}"'
        self.headers = {"WWW-Authenticate": challenge}


class TokenAuth:
    """The tokens a server accepts, or none at all (authentication off).

    Args:
        tokens: The accepted tokens; empty means authentication is off (every request is
            :data:`ANONYMOUS`), which :func:`check_exposure` allows on loopback only.

    Raises:
        ValueError: A token is shorter than :data:`MIN_TOKEN_CHARS` or holds characters an HTTP
            header cannot carry (spaces, control characters, non-ASCII).
    """

    def __init__(self, tokens: Iterable[str] = ()) -> None:
        self._tokens: list[bytes] = []
        for token in tokens:
            if not _TOKEN_CHARS.fullmatch(token):
                raise ValueError(
                    "a token must be printable ASCII without spaces (it travels in an HTTP "
                    "header); generate one with `python -c 'import secrets; "
                    "print(secrets.token_urlsafe(32))'`"
                )
            if len(token) < MIN_TOKEN_CHARS:
                raise ValueError(
                    f"a token of {len(token)} characters is too easy to guess; use at least "
                    f"{MIN_TOKEN_CHARS} (secrets.token_urlsafe(32) gives 43)"
                )
            if token.encode() not in self._tokens:
                self._tokens.append(token.encode())

    @property
    def required(self) -> bool:
        """Whether requests must carry a token."""
        return bool(self._tokens)

    def __len__(self) -> int:
        """How many tokens are accepted."""
        return len(self._tokens)

    def principal(self, authorization: str | None) -> str:
        """Who sent a request, from its ``Authorization`` header.

        Args:
            authorization: The header's value (``Bearer TOKEN``), or None when it is missing.

        Returns:
            The principal: ``token:`` and the first 16 hex digits of the token's SHA-256, the
            same for every request with that token; :data:`ANONYMOUS` when authentication is off.

        Raises:
            AuthError: Authentication is on and the header is missing, malformed or names a
                token this server does not accept.
        """
        if not self._tokens:
            return ANONYMOUS
        if not authorization:
            raise AuthError(
                "this server needs a token: send the header `Authorization: Bearer TOKEN` "
                f"(RemoteEnv(..., token=TOKEN), or set {CLIENT_TOKEN_ENV}); the token is the "
                "one `simenv serve` printed at start or was given with --token / "
                f"{TOKENS_ENV}"
            )
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise AuthError(
                f"the Authorization header must read `Bearer TOKEN`, not `{scheme[:20]} ...`",
                error="invalid_request",
            )
        offered = value.strip().encode("utf-8", "surrogateescape")
        matched = False
        for token in self._tokens:  # every one is compared: the time does not tell which
            matched |= hmac.compare_digest(offered, token)
        if not matched:
            raise AuthError(
                "the token is not one this server accepts; check it against the one the server "
                "printed at start (a restarted server generates a new one unless given --token)",
                error="invalid_token",
            )
        return "token:" + hashlib.sha256(offered).hexdigest()[:16]


def generate_token() -> str:
    """A new random token (256 bits, URL-safe text)."""
    return secrets.token_urlsafe(32)


def resolve_tokens(
    tokens: Iterable[str] | None = None,
    *,
    auth: bool = True,
    environ: Mapping[str, str] | None = None,
) -> tuple[list[str], bool]:
    """The tokens a server accepts: those given, else :data:`TOKENS_ENV`, else a new one.

    Args:
        tokens: Tokens given explicitly (``--token``).
        auth: False switches authentication off: no tokens (``--no-auth``); giving tokens as
            well is refused.
        environ: Where to read :data:`TOKENS_ENV` (``os.environ`` by default).

    Returns:
        ``(tokens, generated)``: the tokens, and whether the one token was generated here (the
        server then prints it, since nobody else knows it).

    Raises:
        ValueError: Tokens were given with ``auth=False``.
    """
    given = [t for t in tokens or () if t]
    if not auth:
        if given:
            raise ValueError("tokens were given with authentication switched off; drop one")
        return [], False
    if given:
        return given, False
    from_env = (environ if environ is not None else os.environ).get(TOKENS_ENV, "")
    listed = [t for t in re.split(r"[\s,]+", from_env) if t]
    if listed:
        return listed, False
    return [generate_token()], True


def same_secret(given: str, expected: str) -> bool:
    """Whether two secrets are equal, in time that does not depend on where they differ.

    Any string is accepted, lone surrogates included (a JSON body can carry them). The env
    server's tokens and the gateway's keys and signatures are all compared with it.
    """
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (``127.0.0.0/8``, ``::1``, ``localhost``)."""
    name = host.strip("[]")
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:  # a host name: it may resolve to anything, so it is not loopback
        return False


def check_exposure(host: str, auth: TokenAuth) -> None:
    """Refuse to serve without authentication on an address other machines can reach.

    Raises:
        ValueError: ``auth`` accepts no token and ``host`` is not a loopback address.
    """
    if not auth.required and not is_loopback(host):
        raise ValueError(
            f"authentication can only be switched off on a loopback address (127.0.0.1, ::1), "
            f"not on {host!r}, which other machines may reach: drop --no-auth (a token is then "
            f"generated and printed) or give tokens with --token / {TOKENS_ENV}"
        )


def client_token(token: str | None = None, environ: Mapping[str, str] | None = None) -> str | None:
    """The token a client sends: ``token``, else :data:`CLIENT_TOKEN_ENV`, else None (none sent)."""
    if token:
        return token
    return (environ if environ is not None else os.environ).get(CLIENT_TOKEN_ENV) or None
