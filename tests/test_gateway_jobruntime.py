"""The gateway's job-runtime path: a stock boto3 ``sagemakerjobruntime`` client, SigV4 verified.

botocore (>= 1.44) ships the service model, so ``boto3.client("sagemakerjobruntime",
endpoint_url=...)`` speaks the wire exactly: paths, headers, JSON members, and errors raised as
the service's exceptions from ``x-amzn-ErrorType``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
boto3 = pytest.importorskip("boto3")

from botocore import UNSIGNED  # noqa: E402
from botocore.auth import SigV4Auth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402
from gateway_support import ADMIN_KEY, AWS, JOB_ARN, hf_policy, running, tiny  # noqa: E402

import simenv  # noqa: E402
from simenv.server.gateway import (  # noqa: E402
    AwsCredentials,
    Gateway,
    GatewayServer,
    Limits,
    Policy,
    UpstreamSampler,
)
from simenv.server.gateway.errors import Denied  # noqa: E402
from simenv.server.gateway.sigv4 import verify  # noqa: E402

SCENARIO = "support/Refunds-v1"


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayServer]:
    service = Gateway(hf_policy(), admin_key=ADMIN_KEY, aws=AWS, job_arn=JOB_ARN, limits=Limits(6))
    with running(service) as server:
        yield server


def jobs(server: GatewayServer, secret: str = AWS.secret_access_key, **config: Any) -> Any:
    return boto3.client(
        "sagemakerjobruntime",
        endpoint_url=server.url,
        region_name="us-west-2",
        aws_access_key_id=AWS.access_key_id,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, **config),
    )


def create(server: GatewayServer, **fields: Any) -> str:
    trajectory, _ = server.gateway.create(**fields)
    return trajectory.id


def body(messages: list[Any], **extra: Any) -> bytes:
    return json.dumps({"model": "tiny", "messages": messages, "max_tokens": 8, **extra}).encode()


def test_a_boto3_agent_samples_completes_and_rewards(gateway: GatewayServer) -> None:
    client = jobs(gateway)
    tid = create(gateway, group=1, scenario_id=SCENARIO)
    env = simenv.make(SCENARIO)
    observation, info = env.reset(seed=2)
    messages = list(observation)
    texts = []
    done = False
    for turn in range(3):
        if turn < 2:
            answer = client.sample(
                JobArn=JOB_ARN, TrajectoryId=tid, Body=body(messages, tools=info["tools"])
            )
            assert answer["ContentType"] == "application/json"
            message = json.loads(answer["Body"].read())["choices"][0]["message"]
        else:  # the streamed operation: the same answer as server-sent events
            answer = client.sample_with_response_stream(
                JobArn=JOB_ARN, TrajectoryId=tid, Body=body(messages, tools=info["tools"])
            )
            assert answer["ContentType"] == "text/event-stream"
            events = [line[6:] for line in answer["Body"].read().decode().split("\n\n") if line]
            assert events[-1] == "[DONE]"
            chunks = [json.loads(e) for e in events[:-1]]
            content = "".join(
                c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]
            )
            message = {"role": "assistant", "content": content}
        texts.append(message.get("content"))
        messages.append(message)
        if done:  # the scenario ended: the agent goes on talking to it
            messages.append({"role": "user", "content": "anything else?"})
            continue
        observation, _, terminated, truncated, _ = env.step(message)
        messages.extend(observation)
        done = terminated or truncated
    client.complete_rollout(JobArn=JOB_ARN, TrajectoryId=tid, Status="ready")
    client.update_reward(JobArn=JOB_ARN, TrajectoryId=tid, Rewards=[0.0, 0.5, 1.0])
    [episode] = [e for e in gateway.gateway.take() if e.episode_id == tid]
    assert episode.valid and episode.turn_rewards == (0.0, 0.5, 1.0) and episode.group == 1
    _, tokenizer = tiny()
    for turn, text in zip(episode.metadata["turns"], texts, strict=True):
        ids = turn["completion_ids"]
        ids = ids[:-1] if ids[-1] == tokenizer.eos_token_id else ids
        decoded = tokenizer.decode(
            ids, skip_special_tokens=False, clean_up_tokenization_spaces=False
        )
        if "<tool_call>" not in decoded:
            assert decoded == text
    assert episode.metadata["gateway"]["segments"] == 1


def test_state_errors_are_the_services_exceptions(gateway: GatewayServer) -> None:
    client = jobs(gateway)
    errors = client.exceptions
    tid = create(gateway, limits=Limits(1))
    messages = [{"role": "user", "content": "hi"}]
    with pytest.raises(errors.ConflictException, match="CompleteRollout"):
        client.update_reward(JobArn=JOB_ARN, TrajectoryId=tid, Rewards=[1.0])
    client.sample(JobArn=JOB_ARN, TrajectoryId=tid, Body=body(messages))
    with pytest.raises(errors.ThrottlingException, match="turn cap"):
        client.sample(JobArn=JOB_ARN, TrajectoryId=tid, Body=body(messages))
    client.complete_rollout(JobArn=JOB_ARN, TrajectoryId=tid, Status="ready", ClientToken="c-1")
    client.complete_rollout(JobArn=JOB_ARN, TrajectoryId=tid, Status="ready", ClientToken="c-1")
    with pytest.raises(errors.ConflictException):  # the same token, other arguments
        client.complete_rollout(
            JobArn=JOB_ARN, TrajectoryId=tid, Status="failed", ClientToken="c-1"
        )
    with pytest.raises(errors.ConflictException, match="already completed"):
        client.complete_rollout(JobArn=JOB_ARN, TrajectoryId=tid, Status="ready")  # a fresh token
    with pytest.raises(errors.ConflictException, match="already completed"):
        client.sample(JobArn=JOB_ARN, TrajectoryId=tid, Body=body(messages))
    with pytest.raises(errors.ValidationException, match="has 1 turns"):
        client.update_reward(JobArn=JOB_ARN, TrajectoryId=tid, Rewards=[1.0, 2.0])
    client.update_reward(JobArn=JOB_ARN, TrajectoryId=tid, Rewards=[2.0], ClientToken="r-1")
    client.update_reward(JobArn=JOB_ARN, TrajectoryId=tid, Rewards=[2.0], ClientToken="r-1")
    with pytest.raises(errors.ConflictException):
        client.update_reward(JobArn=JOB_ARN, TrajectoryId=tid, Rewards=[3.0], ClientToken="r-2")
    assert gateway.gateway.store.get(tid).rewards == [2.0]  # the replay had no second effect
    for call in (
        lambda: client.sample(JobArn=JOB_ARN, TrajectoryId="traj-none", Body=body(messages)),
        lambda: client.complete_rollout(JobArn=JOB_ARN, TrajectoryId="traj-none", Status="ready"),
        lambda: client.update_reward(JobArn=JOB_ARN, TrajectoryId="traj-none", Rewards=[1.0]),
    ):
        with pytest.raises(errors.ResourceNotFoundException):
            call()
    other = "arn:aws:sagemaker:us-east-1:123456789012:job/rl/other-job"
    with pytest.raises(errors.ResourceNotFoundException, match="other-job"):
        client.sample(JobArn=other, TrajectoryId=tid, Body=body(messages))
    with pytest.raises(errors.ValidationException, match="Job-Arn"):
        client.sample(JobArn="not-an-arn", TrajectoryId=tid, Body=body(messages))
    with pytest.raises(errors.ValidationException, match="JSON"):
        client.sample(JobArn=JOB_ARN, TrajectoryId=create(gateway), Body=b"{not json")
    with pytest.raises(errors.ValidationException, match="numbers"):  # botocore sends "NaN"
        client.update_reward(JobArn=JOB_ARN, TrajectoryId=tid, Rewards=[float("nan")])


def test_paused_sampling_is_throttled_with_retry_after(gateway: GatewayServer) -> None:
    client = jobs(gateway)
    tid = create(gateway)
    gateway.gateway.pause()
    try:
        with pytest.raises(client.exceptions.ThrottlingException) as caught:
            client.sample(
                JobArn=JOB_ARN, TrajectoryId=tid, Body=body([{"role": "user", "content": "x"}])
            )
        assert caught.value.response["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "1"
    finally:
        gateway.gateway.resume()
    client.sample(JobArn=JOB_ARN, TrajectoryId=tid, Body=body([{"role": "user", "content": "x"}]))


def test_upstream_failure_is_an_internal_service_error() -> None:
    _, tokenizer = tiny()
    dead = Policy(tokenizer, UpstreamSampler("http://127.0.0.1:9", "m", timeout_s=2), "m")
    with running(Gateway(dead, admin_key=ADMIN_KEY, aws=AWS)) as server:
        client = jobs(server)
        tid = create(server)
        with pytest.raises(client.exceptions.InternalServiceError) as caught:
            client.sample(
                JobArn=JOB_ARN, TrajectoryId=tid, Body=body([{"role": "user", "content": "x"}])
            )
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 502


# ----------------------------------------------------------------------------- signatures
def test_a_wrong_secret_or_no_signature_is_access_denied(gateway: GatewayServer) -> None:
    tid = create(gateway)
    messages = [{"role": "user", "content": "x"}]
    for client in (
        jobs(gateway, secret="not-the-secret"),
        jobs(gateway, signature_version=UNSIGNED),
    ):
        with pytest.raises(client.exceptions.AccessDeniedException):
            client.sample(JobArn=JOB_ARN, TrajectoryId=tid, Body=body(messages))
        with pytest.raises(client.exceptions.AccessDeniedException):
            client.complete_rollout(JobArn=JOB_ARN, TrajectoryId=tid, Status="ready")
    assert (
        gateway.gateway.store.get(tid).state == "open" and not gateway.gateway.store.get(tid).turns
    )
    other_key = boto3.client(
        "sagemakerjobruntime",
        endpoint_url=gateway.url,
        region_name="us-west-2",
        aws_access_key_id="AKIDSOMEONEELSE",
        aws_secret_access_key=AWS.secret_access_key,
    )
    with pytest.raises(other_key.exceptions.AccessDeniedException):
        other_key.complete_rollout(JobArn=JOB_ARN, TrajectoryId=tid, Status="ready")
    jobs(gateway).complete_rollout(JobArn=JOB_ARN, TrajectoryId=tid, Status="ready")  # the positive


def signed(url: str, data: bytes, when: datetime | None = None, **headers: str) -> AWSRequest:
    request = AWSRequest(
        "POST", url, data=data, headers={"X-Amzn-SageMaker-Job-Arn": JOB_ARN, **headers}
    )
    auth = SigV4Auth(
        Credentials(AWS.access_key_id, AWS.secret_access_key), "sagemaker", "us-east-1"
    )
    if when is None:
        auth.add_auth(request)
    else:  # botocore's signer at a chosen time (a captured, older request)
        import botocore.auth

        original = botocore.auth.get_current_datetime
        botocore.auth.get_current_datetime = lambda: when.replace(tzinfo=None)
        try:
            auth.add_auth(request)
        finally:
            botocore.auth.get_current_datetime = original
    return request


def send(request: AWSRequest, data: bytes | None = None) -> tuple[int, str]:
    raw = urllib.request.Request(
        request.url,
        request.body if data is None else data,
        dict(request.headers.items()),
        method="POST",
    )
    try:
        with urllib.request.urlopen(raw, timeout=30) as response:
            return response.status, ""
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers.get("x-amzn-ErrorType", "")


def test_a_tampered_body_or_an_old_signature_is_refused(gateway: GatewayServer) -> None:
    tid = create(gateway)
    url = gateway.url + "/complete-rollout"
    good = json.dumps({"TrajectoryId": tid, "Status": "failed"}).encode()
    tampered = json.dumps({"TrajectoryId": tid, "Status": "ready"}).encode()
    assert send(signed(url, good), tampered) == (403, "AccessDeniedException")
    old = datetime.now(UTC) - timedelta(minutes=10)
    assert send(signed(url, good, when=old)) == (403, "AccessDeniedException")
    assert gateway.gateway.store.get(tid).state == "open"
    assert send(signed(url, good)) == (200, "")  # the positive: signed now, body intact
    assert gateway.gateway.store.get(tid).status == "failed"


def test_the_verifier_checks_scope_headers_and_session_token() -> None:
    data = b'{"TrajectoryId": "t"}'
    request = signed("http://127.0.0.1:1/complete-rollout", data)
    headers = {**dict(request.headers.items()), "Host": "127.0.0.1:1"}  # the HTTP client's
    verify(AWS, "POST", "/complete-rollout", headers, data)  # the positive
    with pytest.raises(Denied, match="signature does not match"):
        verify(AWS, "POST", "/update-reward", headers, data)  # another path
    with pytest.raises(Denied, match="signature does not match"):
        verify(AWS, "POST", "/complete-rollout", {**headers, "X-Amzn-SageMaker-Job-Arn": "x"}, data)
    with pytest.raises(Denied, match=r"region|service"):
        verify(
            AwsCredentials(AWS.access_key_id, AWS.secret_access_key, region="eu-west-1"),
            "POST",
            "/complete-rollout",
            headers,
            data,
        )
    with pytest.raises(Denied, match="Security-Token"):
        verify(
            AwsCredentials(AWS.access_key_id, AWS.secret_access_key, session_token="tok"),
            "POST",
            "/complete-rollout",
            headers,
            data,
        )
    with pytest.raises(Denied, match="expired"):
        verify(
            AWS,
            "POST",
            "/complete-rollout",
            headers,
            data,
            now=datetime.now(UTC) + timedelta(hours=1),
        )
    with pytest.raises(Denied, match="Authorization"):
        verify(AWS, "POST", "/complete-rollout", {}, data)
    with_token = AWSRequest("POST", "http://127.0.0.1:1/x", data=data)
    SigV4Auth(
        Credentials(AWS.access_key_id, AWS.secret_access_key, "tok"), "sagemaker", "r"
    ).add_auth(with_token)
    verify(
        AwsCredentials(AWS.access_key_id, AWS.secret_access_key, session_token="tok"),
        "POST",
        "/x",
        {**dict(with_token.headers.items()), "Host": "127.0.0.1:1"},
        data,
    )


def test_the_openai_path_accepts_a_signature_with_the_trajectory_header(
    gateway: GatewayServer,
) -> None:
    tid = create(gateway)
    data = body([{"role": "user", "content": "x"}])
    url = gateway.url + "/v1/chat/completions"
    assert send(signed(url, data, **{"X-Amzn-SageMaker-Trajectory-Id": tid}))[0] == 200
    assert send(signed(url, data))[0] == 400  # signed, but no trajectory named
    assert gateway.gateway.store.get(tid).turns
