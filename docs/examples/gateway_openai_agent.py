"""An agent written with only the ``openai`` client, trained through simenv's gateway.

It plays support/Refunds-v1: the agent runs the scenario's tools itself (here, simenv's own
environment stands in for "the agent's tools") and sends every model call to the gateway. The
only change from calling OpenAI is ``base_url`` and ``api_key``. The trainer's side (create a
trajectory, then complete and reward it) is the admin plane.

Start a gateway first (docs/gateway.md), then::

    SIMENV_GATEWAY_ADMIN_KEY=sk-admin-local python docs/examples/gateway_openai_agent.py
"""

from __future__ import annotations

import json
import os
import urllib.request
from typing import Any

import openai

import simenv

GATEWAY = os.environ.get("SIMENV_GATEWAY", "http://127.0.0.1:8100")
ADMIN_KEY = os.environ["SIMENV_GATEWAY_ADMIN_KEY"]
SCENARIO = "support/Refunds-v1"


def admin(path: str, body: dict[str, Any]) -> dict[str, Any]:
    """The trainer's side: one call to the gateway's admin plane."""
    request = urllib.request.Request(
        GATEWAY + path,
        json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        result: dict[str, Any] = json.loads(answer.read())
        return result


def play(agent: openai.OpenAI, seed: int) -> float:
    """The agent: an ordinary tool-calling loop over chat completions; returns its reward."""
    env = simenv.make(SCENARIO)
    observation, info = env.reset(seed=seed)
    messages = list(observation)
    reward = 0.0
    for _ in range(6):
        answer = agent.chat.completions.create(
            model="policy", messages=messages, tools=info["tools"], max_tokens=48
        )
        message = answer.choices[0].message.model_dump(exclude_none=True)
        messages.append(message)
        observation, step_reward, terminated, truncated, _ = env.step(message)
        reward += step_reward
        messages.extend(observation)
        if terminated or truncated:
            break
    return reward


def main() -> None:
    for seed in range(2):
        made = admin("/admin/trajectories", {"scenario_id": SCENARIO, "group": 0, "seed": seed})
        agent = openai.OpenAI(base_url=f"{GATEWAY}/v1", api_key=made["key"])
        reward = play(agent, seed)
        trajectory = made["trajectory_id"]
        admin(f"/admin/trajectories/{trajectory}/complete", {"status": "ready"})
        record = admin(f"/admin/trajectories/{trajectory}/reward", {"rewards": [reward]})
        print(f"{trajectory}: {record['turns']} turns, reward {reward}, state {record['state']}")


if __name__ == "__main__":
    main()
