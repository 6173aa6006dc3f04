"""The env server's OpenAPI 3 document, built from the same route table that answers requests.

``GET /openapi.json`` serves :func:`document`; every route of :data:`simenv.server.app.ROUTES`
is in it with its request body, its answer and its errors, and nothing else is (a test probes
every method on every path to hold both directions). The schemas below are also what
``bench/server_fuzz.py`` generates valid and invalid bodies from.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["SCHEMAS", "Operation", "document", "ref"]


def ref(name: str) -> dict[str, str]:
    """A reference to the component schema ``name``."""
    return {"$ref": f"#/components/schemas/{name}"}


_OBJECT = {"type": "object", "additionalProperties": True}

SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {
        "type": "object",
        "description": "Every error: a short type name and a message that says what to do.",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["type", "message"],
                "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
            }
        },
    },
    "ToolCall": {
        "type": "object",
        "required": ["function"],
        "properties": {
            "id": {"type": "string"},
            "type": {"type": "string", "enum": ["function"]},
            "function": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string"},
                    "arguments": {
                        "description": "JSON text of the arguments, or the object itself",
                        "oneOf": [{"type": "string"}, _OBJECT],
                    },
                },
            },
        },
    },
    "Message": {
        "type": "object",
        "description": "An OpenAI chat message.",
        "required": ["role"],
        "properties": {
            "role": {"type": "string", "enum": ["system", "user", "assistant", "tool"]},
            "content": {"type": ["string", "null"]},
            "tool_calls": {"type": "array", "items": ref("ToolCall")},
            "tool_call_id": {"type": "string"},
            "name": {"type": "string"},
        },
        "additionalProperties": True,
    },
    "AssistantMessage": {
        "type": "object",
        "description": "An assistant turn: text, tool calls or both.",
        "properties": {
            "role": {"type": "string", "enum": ["assistant"]},
            "content": {"type": ["string", "null"]},
            "tool_calls": {"type": "array", "items": ref("ToolCall")},
        },
        "additionalProperties": True,
    },
    "Tool": {**_OBJECT, "description": "An OpenAI tool schema (type, function)."},
    "Info": {**_OBJECT, "description": "The env's info dict (see MultiTurnEnv.reset/step)."},
    "Episode": {
        "type": "object",
        "description": "The episode record, as a JSONL line holds it (Episode.to_dict()).",
        "required": ["scenario_id", "task_id", "seed", "messages", "steps", "schema_version"],
        "properties": {
            "scenario_id": {"type": "string"},
            "task_id": {"type": "string"},
            "seed": {"type": "integer"},
            "messages": {"type": "array", "items": ref("Message")},
            "steps": {"type": "array", "items": _OBJECT},
            "reward": {"type": ["number", "null"]},
            "evaluation": {"type": ["number", "null"]},
            "termination": {"type": ["string", "null"]},
            "valid": {"type": "boolean"},
            "schema_version": {"type": "integer"},
        },
        "additionalProperties": True,
    },
    "CreateBody": {
        "type": "object",
        "required": ["scenario"],
        "properties": {"scenario": {"type": "string", "description": "A served scenario id."}},
    },
    "ResetBody": {
        "type": "object",
        "properties": {
            "seed": {"type": ["integer", "null"], "minimum": 0},
            "options": {
                "type": ["object", "null"],
                "properties": {"task_id": {"type": "string"}},
                "additionalProperties": True,
            },
        },
    },
    "StepBody": {
        "type": "object",
        "required": ["action"],
        "properties": {
            "action": {
                "description": "The assistant's raw text, or an assistant message",
                "oneOf": [{"type": "string"}, ref("AssistantMessage")],
            }
        },
    },
    "EndBody": {
        "type": "object",
        "properties": {"termination": {"type": ["string", "null"], "enum": ["time_limit", None]}},
    },
    "Health": {
        "type": "object",
        "required": ["ok", "simenv", "max_envs", "live"],
        "properties": {
            "ok": {"type": "boolean"},
            "simenv": {"type": "string"},
            "max_envs": {"type": "integer"},
            "live": {"type": "integer"},
        },
    },
    "Scenarios": {
        "type": "object",
        "required": ["scenarios"],
        "properties": {
            "scenarios": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "version", "summary", "tools", "max_turns", "splits"],
                    "properties": {
                        "id": {"type": "string"},
                        "version": {"type": "integer"},
                        "summary": {"type": "string"},
                        "tools": {"type": "array", "items": ref("Tool")},
                        "max_turns": {"type": "integer"},
                        "splits": {
                            "type": "object",
                            "properties": {
                                "train": {"type": "integer"},
                                "eval": {"type": "integer"},
                            },
                        },
                    },
                },
            }
        },
    },
    "EnvList": {
        "type": "object",
        "required": ["envs"],
        "properties": {
            "envs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["env_id", "scenario"],
                    "properties": {"env_id": {"type": "string"}, "scenario": {"type": "string"}},
                },
            }
        },
    },
    "Created": {
        "type": "object",
        "required": ["env_id", "scenario", "tools"],
        "properties": {
            "env_id": {"type": "string"},
            "scenario": {"type": "string"},
            "tools": {"type": "array", "items": ref("Tool")},
        },
    },
    "ResetAnswer": {
        "type": "object",
        "required": ["observation", "info"],
        "properties": {
            "observation": {"type": "array", "items": ref("Message")},
            "info": ref("Info"),
        },
    },
    "StepAnswer": {
        "type": "object",
        "required": ["observation", "reward", "terminated", "truncated", "info"],
        "properties": {
            "observation": {"type": "array", "items": ref("Message")},
            "reward": {"type": "number"},
            "terminated": {"type": "boolean"},
            "truncated": {"type": "boolean"},
            "info": ref("Info"),
        },
    },
    "EndAnswer": {
        "type": "object",
        "required": ["reward", "info"],
        "properties": {"reward": {"type": "number"}, "info": ref("Info")},
    },
    "OracleAnswer": {
        "type": "object",
        "required": ["actions"],
        "properties": {
            "actions": {
                "type": "array",
                "items": {"oneOf": [{"type": "string"}, ref("AssistantMessage")]},
            }
        },
    },
    "Closed": {
        "type": "object",
        "required": ["closed"],
        "properties": {"closed": {"type": "string"}},
    },
    "OpenAPI": {**_OBJECT, "description": "This document."},
}

_REASONS = {
    400: "a malformed body or field (the message names it)",
    401: "no token, or one this server does not accept (WWW-Authenticate says how)",
    403: "the oracle endpoint of a server started without --oracle",
    404: "no such environment for this token, scenario or path",
    405: "a method this path does not take (the Allow header lists those it does)",
    408: "the request did not arrive whole in time",
    409: "ResetNeeded: no episode is running",
    411: "a chunked body: send Content-Length",
    413: "a body over the server's limit",
    429: "max_envs environments are live",
    500: "an InfraError of the environment, or a bug (the server keeps running)",
    503: "the server is shutting down, or max_connections are open",
}

_EVERY_REQUEST = (400, 401, 405, 408, 413, 500, 503)
"""Errors any request can get from the transport or the app, whatever its route."""


@dataclass(frozen=True)
class Operation:
    """One route as the document shows it.

    Attributes:
        method: ``GET``, ``POST`` or ``DELETE``.
        path: The OpenAPI path template, e.g. ``/envs/{env_id}/step``.
        summary: One line on what it does.
        status: The status of a success.
        answer: The component schema of a success.
        body: The component schema of the request body, or None for no body.
        errors: The statuses it can fail with beyond :data:`_EVERY_REQUEST`.
    """

    method: str
    path: str
    summary: str
    status: int
    answer: str
    body: str | None = None
    errors: tuple[int, ...] = ()


def document(operations: Iterable[Operation], version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``operations``."""
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        responses: dict[str, Any] = {
            str(op.status): {
                "description": "success",
                "content": {"application/json": {"schema": ref(op.answer)}},
            }
        }
        for status in sorted({*_EVERY_REQUEST, *op.errors}):
            responses[str(status)] = {
                "description": _REASONS[status],
                "content": {"application/json": {"schema": ref("Error")}},
            }
        responses["401"]["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
        responses["405"]["headers"] = {"Allow": {"schema": {"type": "string"}}}
        entry: dict[str, Any] = {
            "summary": op.summary,
            "operationId": f"{op.method.lower()}_{op.path.strip('/').replace('/', '_')}".replace(
                "{", ""
            ).replace("}", ""),
            "responses": responses,
        }
        if op.path == "/health":
            entry["security"] = [{}, {"bearer": []}]  # liveness without a token
            entry["description"] = (
                "Without a token: liveness only ({'ok', 'simenv'}); with one, also the capacity."
            )
        if "{env_id}" in op.path:
            entry["parameters"] = [
                {
                    "name": "env_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^[0-9A-Za-z_-]+$"},
                }
            ]
        if op.body is not None:
            entry["requestBody"] = {
                "required": op.body in ("CreateBody", "StepBody"),
                "content": {"application/json": {"schema": ref(op.body)}},
            }
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "simenv env server",
            "version": version,
            "description": "simenv environments over HTTP (docs/server.md). Bodies are JSON "
            "objects; every error is {'error': {'type', 'message'}}.",
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
