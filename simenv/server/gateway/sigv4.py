"""AWS Signature Version 4, verified: job-runtime requests must carry the gateway's credentials.

botocore signs every ``sagemakerjobruntime`` request (service ``sagemaker``). The gateway
rebuilds what the client signed and compares signatures in constant time:

1. the canonical request: method, the URI-encoded path, the sorted query, each signed header
   as ``name:trimmed value``, the signed header names, and the SHA-256 of the body (or the
   ``X-Amz-Content-SHA256`` header, which must then equal the body's hash);
2. the string to sign: ``AWS4-HMAC-SHA256``, the ``X-Amz-Date`` timestamp, the credential scope
   ``date/region/sagemaker/aws4_request`` and the SHA-256 of the canonical request;
3. the signing key: the HMAC-SHA256 chain ``"AWS4" + secret -> date -> region -> service ->
   "aws4_request"``, and the signature is the hex HMAC of the string to sign under it.

Refused (403 ``AccessDeniedException``): no or a malformed ``Authorization``, another access
key, a scope of another service, a date outside ``max_skew_s`` of the gateway's clock (a
captured request cannot be replayed later), an unsigned ``host`` or ``x-amz-date``, an unsigned
payload, a missing or wrong session token, and any signature that differs.
"""

from __future__ import annotations

import hashlib
import hmac
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from simenv.server.gateway.compare import same
from simenv.server.gateway.errors import Denied

__all__ = ["AwsCredentials", "verify"]

_AUTH = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]{64})\s*$"
)


@dataclass(frozen=True, slots=True)
class AwsCredentials:
    """The credentials agents sign with (any region is accepted unless ``region`` is set)."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None = None
    region: str | None = None
    service: str = "sagemaker"

    def __repr__(self) -> str:  # never print the secret
        return f"AwsCredentials(access_key_id={self.access_key_id!r}, region={self.region!r})"


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The SigV4 key chain for one day, region and service."""
    k_date = _hmac(f"AWS4{secret}".encode(), date)
    return _hmac(_hmac(_hmac(k_date, region), service), "aws4_request")


def _canonical_path(path: str) -> str:
    """botocore's: dot segments removed from the path as sent, then URI-encoded again."""
    normal = posixpath.normpath(path) if path not in ("", "/") else "/"
    if path.endswith("/") and normal != "/":
        normal += "/"
    return quote(normal.replace("//", "/"), safe="/~")


def _canonical_query(query: str) -> str:
    pairs = [p.partition("=") for p in query.split("&") if p]
    return "&".join(f"{k}={v}" for k, _, v in sorted(pairs))


def verify(
    credentials: AwsCredentials,
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: datetime | None = None,
    max_skew_s: float = 300.0,
) -> None:
    """Check a request's SigV4 signature; raises :class:`Denied` when it is not valid.

    Args:
        credentials: What the gateway was started with.
        method: The HTTP method.
        target: The request target as received (path and query, still percent-encoded).
        headers: The request headers (names in any case).
        body: The request body, as received.
        now: The gateway's clock (tests pass one).
        max_skew_s: Largest accepted distance between ``X-Amz-Date`` and ``now``.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    match = _AUTH.match(lower.get("authorization", "").strip())
    if match is None:
        raise Denied(
            "Missing or malformed SigV4 Authorization header: sign the request with the "
            "credentials the gateway was started with (boto3 does this)."
        )
    credential, signed, signature = match.groups()
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise Denied("Malformed credential scope in the Authorization header.")
    key_id, date, region, service, _ = parts
    if not same(key_id, credentials.access_key_id):
        raise Denied("The access key id is not one this gateway accepts.")
    if service != credentials.service or (credentials.region and region != credentials.region):
        raise Denied(f"The credential scope must be for service {credentials.service!r}.")
    stamp = lower.get("x-amz-date", "")
    try:
        when = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise Denied("Missing or malformed X-Amz-Date header.") from None
    if stamp[:8] != date:
        raise Denied("The X-Amz-Date day differs from the credential scope's.")
    if abs(((now or datetime.now(UTC)) - when).total_seconds()) > max_skew_s:
        raise Denied("Signature expired: X-Amz-Date is too far from the gateway's clock.")
    names = signed.split(";")
    if "host" not in names or "x-amz-date" not in names or names != sorted(set(names)):
        raise Denied("SignedHeaders must be sorted and include host and x-amz-date.")
    if any(n not in lower for n in names):
        raise Denied("A signed header is missing from the request.")
    token = lower.get("x-amz-security-token")
    if credentials.session_token is not None and (
        token is None
        or not same(token, credentials.session_token)
        or "x-amz-security-token" not in names
    ):
        raise Denied("Missing or wrong X-Amz-Security-Token.")
    body_hash = hashlib.sha256(body).hexdigest()
    declared = lower.get("x-amz-content-sha256")
    if declared is not None and declared != body_hash:
        raise Denied("The payload must be signed, and X-Amz-Content-SHA256 match the body.")
    path, _, query = target.partition("?")
    canonical = "\n".join(
        [
            method.upper(),
            _canonical_path(path),
            _canonical_query(query),
            "".join(f"{n}:{' '.join(lower[n].split())}\n" for n in names),
            signed,
            body_hash,
        ]
    )
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = signing_key(credentials.secret_access_key, date, region, service)
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    if not same(expected, signature):
        raise Denied(
            "The request signature does not match: sign with the credentials the gateway was "
            "started with."
        )
