"""Episodes from the gateway train the tiny model: the trainer's own functions, no re-tokenising.

Agents (a stock ``openai`` client) play a bundled scenario's tools through a gateway that
serves the trainer's live model; the trainer takes the rewarded trajectories, checks that the
recorded logprobs are its own, pauses the gateway, takes a few policy steps, bumps the policy
version and resumes, and the next turns are tagged with the new version.
"""

from __future__ import annotations

import json
import urllib.request

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
openai = pytest.importorskip("openai")

from gateway_support import ADMIN_KEY, AWS, running  # noqa: E402

import simenv  # noqa: E402
from simenv.rollouts.policies import HF  # noqa: E402
from simenv.server.gateway import Gateway, GatewayServer, Policy  # noqa: E402
from trainer.config import TrainConfig  # noqa: E402
from trainer.models import build_tiny, token_logprobs, with_lora  # noqa: E402
from trainer.samples import collate, episode_samples  # noqa: E402
from trainer.train import estimator, policy_update, training_samples  # noqa: E402

SCENARIO = "support/Refunds-v1"


def play(server: GatewayServer, group: int, seed: int) -> None:
    """One agent: create (admin), play two turns of the scenario, complete and reward."""
    trajectory, key = server.gateway.create(group=group, scenario_id=SCENARIO, seed=seed)
    agent = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
    env = simenv.make(SCENARIO)
    observation, info = env.reset(seed=seed)
    messages = list(observation)
    done = False
    for _ in range(2):
        answer = agent.chat.completions.create(
            model="tiny", messages=messages, tools=info["tools"], max_tokens=10
        )
        message = answer.choices[0].message.model_dump(exclude_none=True)
        messages.append(message)
        if done:  # the scenario ended; the agent keeps talking
            messages.append({"role": "user", "content": "and then?"})
            continue
        observation, _, terminated, truncated, _ = env.step(message)
        messages.extend(observation)
        done = terminated or truncated
    server.gateway.complete(trajectory.id, "ready", None)
    length = sum(len(str(m.get("content") or "")) for m in messages[-4:])
    server.gateway.reward(trajectory.id, [float(length % 3)], None)


def test_gateway_episodes_train_a_few_steps_and_the_version_moves_on() -> None:
    base, tokenizer = build_tiny(seed=0)
    model = with_lora(base, rank=4)
    hf = HF(model, tokenizer, temperature=1.0, max_new_tokens=10, seed=3)
    gateway = Gateway(Policy.from_hf(hf, name="tiny"), admin_key=ADMIN_KEY, aws=AWS)
    cfg = TrainConfig(lr=5e-3, micro_batch=8)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    before = [p.detach().clone() for p in model.parameters() if p.requires_grad]
    updates = 0
    with running(gateway) as server:
        for step in range(2):
            for group in range(2):
                for sample in range(3):
                    play(server, group, seed=10 * group + sample)
            episodes = server.gateway.take()
            assert len(episodes) == 6 and all(e.valid for e in episodes)
            assert {v for e in episodes for v in e.policy["versions"]} == {str(step)}
            samples = [s for i, e in enumerate(episodes) for s in episode_samples(e, i)]
            batch = collate(samples, tokenizer.pad_token_id)
            with torch.no_grad():
                logp = token_logprobs(model, batch.input_ids, batch.attention_mask, batch.loss_mask)
            assert ((logp - batch.logprobs) * batch.loss_mask).abs().max().item() < 1e-4
            request = urllib.request.Request(
                server.url + "/admin/pause",
                json.dumps({"wait_s": 10}).encode(),
                headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=30) as answer:
                assert json.loads(answer.read())["idle"]
            chosen, _ = training_samples(episodes, estimator(cfg))
            if chosen:
                updates += 1
                stats = policy_update(model, optimizer, chosen, cfg, tokenizer.pad_token_id)
                assert all(torch.isfinite(torch.tensor(v)) for v in stats.values())
            server.gateway.set_policy_version(step + 1)
            server.gateway.resume()
    assert updates >= 1
    after = [p.detach() for p in model.parameters() if p.requires_grad]
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
