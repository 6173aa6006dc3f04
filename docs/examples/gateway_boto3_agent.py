"""The same agent reporting through a stock boto3 ``sagemakerjobruntime`` client.

Every model call is ``Sample`` (the chat-completions JSON as the body, forwarded unmodified);
when the rollout ends the agent calls ``CompleteRollout`` and ``UpdateReward`` itself. boto3
signs each request (SigV4) with the credentials the gateway was started with. The trainer's
side creates the trajectory (admin plane) and hands the agent its id.

Start a gateway first (docs/gateway.md), then::

    SIMENV_GATEWAY_ADMIN_KEY=sk-admin-local AWS_ACCESS_KEY_ID=AKIDLOCAL \\
    AWS_SECRET_ACCESS_KEY=local-secret python docs/examples/gateway_boto3_agent.py
"""

from __future__ import annotations

import json
import os
import urllib.request
from typing import Any

import boto3

import simenv

GATEWAY = os.environ.get("SIMENV_GATEWAY", "http://127.0.0.1:8100")
ADMIN_KEY = os.environ["SIMENV_GATEWAY_ADMIN_KEY"]
JOB_ARN = "arn:aws:sagemaker:us-east-1:123456789012:job/rl/laptop"
SCENARIO = "support/Refunds-v1"


def new_trajectory(seed: int) -> str:
    """The trainer's side: a trajectory for one rollout (admin plane)."""
    request = urllib.request.Request(
        GATEWAY + "/admin/trajectories",
        json.dumps({"scenario_id": SCENARIO, "seed": seed}).encode(),
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        trajectory: str = json.loads(answer.read())["trajectory_id"]
        return trajectory


def play(jobs: Any, trajectory: str, seed: int) -> float:
    """The agent: the same loop, each model call a ``Sample`` of its trajectory."""
    env = simenv.make(SCENARIO)
    observation, info = env.reset(seed=seed)
    messages = list(observation)
    reward = 0.0
    for _ in range(6):
        body = {"model": "policy", "messages": messages, "tools": info["tools"], "max_tokens": 48}
        answer = jobs.sample(JobArn=JOB_ARN, TrajectoryId=trajectory, Body=json.dumps(body))
        message = json.loads(answer["Body"].read())["choices"][0]["message"]
        messages.append(message)
        observation, step_reward, terminated, truncated, _ = env.step(message)
        reward += step_reward
        messages.extend(observation)
        if terminated or truncated:
            break
    return reward


def main() -> None:
    jobs = boto3.client("sagemakerjobruntime", endpoint_url=GATEWAY, region_name="us-east-1")
    for seed in range(2):
        trajectory = new_trajectory(seed)
        reward = play(jobs, trajectory, seed)
        jobs.complete_rollout(JobArn=JOB_ARN, TrajectoryId=trajectory, Status="ready")
        jobs.update_reward(JobArn=JOB_ARN, TrajectoryId=trajectory, Rewards=[reward])
        print(f"{trajectory}: reward {reward}, completed and rewarded through the job runtime")
        try:  # a second CompleteRollout (a new ClientToken) is the service's ConflictException
            jobs.complete_rollout(JobArn=JOB_ARN, TrajectoryId=trajectory, Status="ready")
        except jobs.exceptions.ConflictException as exc:
            print(f"  as expected: {exc.response['Error']['Code']}")


if __name__ == "__main__":
    main()
