"""Schema-driven fuzzing of every gateway endpoint: no body, however wrong, is answered 5xx.

Each endpoint's body is drawn from its schema (the fields it knows, each either a valid value
or any JSON value, NaN, huge integers and lone surrogates included, plus unknown fields);
job-runtime requests are signed with botocore's own signer so that they reach validation.
The check is not vacuous: when it was written it found a 500 (a role that is a list, looked
up in a set), fixed with it; and each endpoint must also answer some bodies with success.
"""

from __future__ import annotations

import contextlib
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("botocore")
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from gateway_support import ADMIN_KEY, AWS, JOB_ARN, hf_policy, running
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simenv.server.gateway import Gateway, GatewayError, GatewayServer, Limits

FUZZ = settings(
    max_examples=int(os.environ.get("GATEWAY_FUZZ_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
text = st.text(max_size=12) | st.sampled_from(["\ud800", "a\udfffb", "é中", ""])
numbers = st.integers() | st.floats(allow_nan=True, allow_infinity=True)
anything = st.recursive(
    st.none() | st.booleans() | numbers | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)


def field(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return valid | anything


call = st.fixed_dictionaries(
    {
        "id": field(text),
        "type": field(st.just("function")),
        "function": field(st.fixed_dictionaries({"name": field(text), "arguments": field(text)})),
    }
)
message = st.fixed_dictionaries(
    {
        "role": field(st.sampled_from(["system", "developer", "user", "assistant", "tool"])),
        "content": field(
            text
            | st.none()
            | st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": text}), max_size=2)
        ),
    },
    optional={
        "tool_calls": field(st.lists(call, max_size=2)),
        "tool_call_id": field(text),
        "name": field(text),
    },
)
tool = st.fixed_dictionaries(
    {
        "type": field(st.just("function")),
        "function": field(
            st.fixed_dictionaries({"name": field(text)}, optional={"parameters": anything})
        ),
    }
)
chat_body = st.fixed_dictionaries(
    {"messages": field(st.lists(message, min_size=1, max_size=3))},
    optional={
        "model": field(text),
        "tools": field(st.lists(tool, max_size=2)),
        "tool_choice": field(
            st.sampled_from(["auto", "none", "required"])
            | st.fixed_dictionaries(
                {"type": st.just("function"), "function": st.fixed_dictionaries({"name": text})}
            )
        ),
        "temperature": field(st.floats(0, 2)),
        "top_p": field(st.floats(0.01, 1)),
        "max_tokens": field(st.integers(1, 4)),
        "n": field(st.just(1)),
        "stop": field(text),
        "stream": field(st.booleans()),
        "logprobs": field(st.booleans()),
        "top_logprobs": field(st.integers(-2, 22)),
        "seed": field(st.integers(0, 2**40)),
        "stream_options": field(st.fixed_dictionaries({"include_usage": st.booleans()})),
        "return_token_ids": field(st.booleans()),
        "extra": anything,
    },
)
create_body = st.fixed_dictionaries(
    {},
    optional={
        "group": field(st.integers(0, 9)),
        "scenario_id": field(text),
        "task_id": field(text),
        "seed": field(st.integers()),
        "max_turns": field(st.integers(1, 99)),
        "max_context_tokens": field(st.integers(2, 4096)),
        "metadata": anything,
        "sampling": field(
            st.fixed_dictionaries(
                {},
                optional={
                    "temperature": field(st.floats(0, 2)),
                    "max_tokens": field(st.integers(1, 4)),
                },
            )
        ),
        "trajectory_id": field(text),
        "extra": anything,
    },
)
bodies = {
    "/v1/chat/completions": chat_body,
    "/admin/trajectories": create_body,
    "complete": st.fixed_dictionaries(
        {},
        optional={
            "status": field(st.sampled_from(["ready", "failed"])),
            "client_token": field(text),
        },
    ),
    "reward": st.fixed_dictionaries(
        {}, optional={"rewards": field(st.lists(numbers, max_size=3)), "client_token": field(text)}
    ),
    "/admin/policy-version": st.fixed_dictionaries({}, optional={"version": anything}),
    "/admin/take": st.fixed_dictionaries({}, optional={"limit": anything}),
    "/complete-rollout": st.fixed_dictionaries(
        {"TrajectoryId": field(text)},
        optional={
            "Status": field(st.sampled_from(["ready", "failed"])),
            "ClientToken": field(text),
        },
    ),
    "/update-reward": st.fixed_dictionaries(
        {"TrajectoryId": field(text)},
        optional={"Rewards": field(st.lists(numbers, max_size=3)), "ClientToken": field(text)},
    ),
    "/sample": chat_body,
    "/sample-with-response-stream": chat_body,
}


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayServer]:
    with running(
        Gateway(hf_policy(max_new_tokens=2), admin_key=ADMIN_KEY, aws=AWS, limits=Limits(10**6))
    ) as server:
        yield server


def post(server: GatewayServer, path: str, data: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(server.url + path, data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            answer.read()
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code)


def signed_headers(url: str, data: bytes, extra: dict[str, str]) -> dict[str, str]:
    request = AWSRequest(
        "POST", url, data=data, headers={"X-Amzn-SageMaker-Job-Arn": JOB_ARN, **extra}
    )
    SigV4Auth(
        Credentials(AWS.access_key_id, AWS.secret_access_key), "sagemaker", "us-east-1"
    ).add_auth(request)
    return dict(request.headers.items())


def encode(body: Any) -> bytes:
    return json.dumps(body, allow_nan=True).encode()


@pytest.mark.parametrize("endpoint", sorted(bodies))
def test_no_body_is_answered_5xx(gateway: GatewayServer, endpoint: str) -> None:
    seen: set[int] = set()
    service = gateway.gateway

    @FUZZ
    @given(bodies[endpoint])
    def check(body: Any) -> None:
        trajectory, key = service.create(sampling={"max_tokens": 1})
        data = encode(body)
        path, headers = endpoint, {"Authorization": f"Bearer {ADMIN_KEY}"}
        if endpoint in ("complete", "reward"):
            path = f"/admin/trajectories/{trajectory.id}/{endpoint}"
        elif endpoint == "/v1/chat/completions":
            headers = {"Authorization": f"Bearer {key}"}
        elif not endpoint.startswith("/admin"):
            header = (
                {"X-Amzn-SageMaker-Trajectory-Id": trajectory.id} if "sample" in endpoint else {}
            )
            if isinstance(body, dict) and "TrajectoryId" in body and body["TrajectoryId"] == "":
                body["TrajectoryId"] = trajectory.id
                data = encode(body)
            headers = signed_headers(gateway.url + path, data, header)
        status = post(gateway, path, data, headers)
        with contextlib.suppress(GatewayError):  # taken by /admin/take, or dropped
            service.store.drop(trajectory.id)
        seen.add(status)
        assert status < 500, (endpoint, body, status)

    check()
    assert seen, endpoint
    if endpoint in ("/v1/chat/completions", "/sample", "/admin/trajectories"):
        assert 200 in seen or 201 in seen, seen  # the fuzz reached the model, not only 400s
