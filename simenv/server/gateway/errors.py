"""The gateway's errors: each one renders itself for both wire formats it answers in.

::

    GatewayError                      (a status, the job-runtime exception name, a message)
    ├── Invalid                 400   ValidationException: a malformed body, header or field
    ├── Denied                  403   AccessDeniedException: a wrong key or signature
    ├── NotFound                404   ResourceNotFoundException: no such trajectory or path
    ├── Conflict                409   ConflictException: the trajectory's state forbids it
    ├── Quota                   402   ServiceQuotaExceededException: too many live trajectories
    ├── Throttled               429   ThrottlingException: paused, over the turn cap, busy
    └── UpstreamFailed          502   InternalServiceError: the model behind the gateway failed

On the job-runtime path (``/sample`` ...) the exception name goes in ``x-amzn-ErrorType`` and
the body is ``{"Message": ...}``, which botocore turns into ``client.exceptions.<Name>``; on
the OpenAI path the body is ``{"error": {"message", "type", "code"}}`` as OpenAI's SDKs expect.
A bug inside the gateway answers 500 ``InternalServiceError``; bad input never does.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "Conflict",
    "Denied",
    "GatewayError",
    "Invalid",
    "NotFound",
    "Quota",
    "Throttled",
    "UpstreamFailed",
]


class GatewayError(Exception):
    """A request the gateway refuses, with the status and names of both wire formats.

    Args:
        message: What happened and how to fix it (at most 1,024 characters on the wire).
        retry_after_s: When set, sent as ``Retry-After`` (whole seconds).
    """

    status: ClassVar[int] = 500
    aws_type: ClassVar[str] = "InternalServiceError"
    openai_type: ClassVar[str] = "server_error"

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message[:1024]
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        """Response headers: the exception name, and ``Retry-After`` when set."""
        out = {"x-amzn-ErrorType": self.aws_type}
        if self.retry_after_s is not None:
            out["Retry-After"] = str(max(1, round(self.retry_after_s)))
        return out

    def aws_body(self) -> dict[str, Any]:
        """The job-runtime body: ``{"Message": ...}`` (botocore reads ``Message``)."""
        return {"Message": self.message}

    def openai_body(self) -> dict[str, Any]:
        """The OpenAI body: ``{"error": {"message", "type", "param", "code"}}``."""
        return {
            "error": {
                "message": self.message,
                "type": self.openai_type,
                "param": None,
                "code": self.aws_type,
            }
        }


class Invalid(GatewayError):
    """A malformed body, header or field (named in the message)."""

    status = 400
    aws_type = "ValidationException"
    openai_type = "invalid_request_error"


class Denied(GatewayError):
    """A missing or wrong key or signature, or a key used on another trajectory."""

    status = 403
    aws_type = "AccessDeniedException"
    openai_type = "permission_error"


class NotFound(GatewayError):
    """No such trajectory, job or path."""

    status = 404
    aws_type = "ResourceNotFoundException"
    openai_type = "not_found_error"


class Conflict(GatewayError):
    """The trajectory's state forbids the call (sampling a completed one, rewarding an open one)."""

    status = 409
    aws_type = "ConflictException"
    openai_type = "conflict_error"


class Quota(GatewayError):
    """Too many live trajectories (the status is the service model's: 402)."""

    status = 402
    aws_type = "ServiceQuotaExceededException"
    openai_type = "quota_error"


class Throttled(GatewayError):
    """Sampling is paused, the trajectory is at its turn cap, or the gateway is saturated."""

    status = 429
    aws_type = "ThrottlingException"
    openai_type = "rate_limit_error"


class UpstreamFailed(GatewayError):
    """The model behind the gateway (an upstream server) failed or answered nonsense."""

    status = 502
    aws_type = "InternalServiceError"
    openai_type = "upstream_error"
