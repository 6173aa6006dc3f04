"""The HF policy on the tiny model, built here: multi-turn episodes, recorded tokens, loading."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers  # noqa: F401 - the HF policy of every test here

import simenv
from simenv.rollouts import Job, run
from simenv.rollouts.policies import HF, from_string
from simenv.rollouts.policies.base import Conversation
from trainer.models import build_tiny

SCENARIO = "support/Refunds-v1"


def talkative(model: Any, tokenizer: Any) -> None:
    """Make the untrained model open tool calls and end turns often (weights only).

    A random model almost never writes ``<tool_call>``, so every episode would end after one
    turn. One embedding coordinate is set to a constant, so the final hidden state always points
    along it, and the (tied) output rows of ``<tool_call>`` and ``<|im_end|>`` get a larger
    value there: those tokens come often, every call is malformed, and the environment answers
    it with a tool error, so episodes last several turns. It is still an ordinary Qwen2.
    """
    embeddings = model.get_input_embeddings().weight
    with torch.no_grad():
        embeddings[:, 0] = 0.3
        embeddings[tokenizer.convert_tokens_to_ids("<tool_call>"), 0] += 1.8
        embeddings[tokenizer.convert_tokens_to_ids("<|im_end|>"), 0] += 1.2


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Path]:
    model, tokenizer = build_tiny(seed=0)
    talkative(model, tokenizer)
    path = tmp_path_factory.mktemp("tiny")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return model.eval(), tokenizer, path


@pytest.fixture(scope="module")
def episodes(tiny: tuple[Any, Any, Path]) -> list[simenv.Episode]:
    """Two tasks x three samples, stepped in lockstep: one batched generation per turn."""
    model, tokenizer, _ = tiny
    policy = HF(model, tokenizer, temperature=0.7, max_new_tokens=24, seed=1)
    scenario = dataclasses.replace(simenv.load_scenario(SCENARIO), max_turns=5)
    tasks = scenario.split("train")[:2]
    jobs = [Job(t.id, 11 + i, i, g) for i, t in enumerate(tasks) for g in range(3)]
    return run(scenario, policy, jobs)


def conversations(n: int) -> list[Conversation]:
    env = simenv.make(SCENARIO)
    out = []
    for i in range(n):
        observation, info = env.reset(seed=i)
        out.append(Conversation(list(observation), {**info, "sample": i}))
    return out


def test_plays_multi_turn_episodes_and_records_every_turn(
    tiny: tuple[Any, Any, Path], episodes: list[simenv.Episode]
) -> None:
    eos = tiny[1].eos_token_id
    assert max(e.turns for e in episodes) >= 3
    assert any(m["role"] == "tool" for e in episodes for m in e.messages)
    for e in episodes:
        turns = e.metadata["turns"]
        assert len(turns) == e.turns and e.policy["name"] == "hf"
        for turn in turns:
            completion = turn["completion_ids"]
            assert len(completion) == len(turn["logprobs"]) > 0
            assert all(lp <= 0.0 for lp in turn["logprobs"])
            # a turn ends with the end-of-turn token (recorded) or at max_new_tokens
            assert completion[-1] == eos or len(completion) == 24
    # the samples of a group start from one state but sample differently
    first = [e.metadata["turns"][0]["completion_ids"] for e in episodes[:3]]
    assert len({tuple(c) for c in first}) > 1


def test_prompts_extend_the_previous_prompt_and_completion(
    tiny: tuple[Any, Any, Path], episodes: list[simenv.Episode]
) -> None:
    tokenizer = tiny[1]
    for e in episodes:
        turns = e.metadata["turns"]
        tools = [t.schema() for t in simenv.load_scenario(SCENARIO).tools]
        opening = tokenizer.apply_chat_template(
            e.messages[:2], tools=tools, add_generation_prompt=True, tokenize=False
        )
        assert turns[0]["prompt_ids"] == tokenizer(opening, add_special_tokens=False)["input_ids"]
        for before, after in itertools.pairwise(turns):
            prefix = before["prompt_ids"] + before["completion_ids"]
            assert after["prompt_ids"][: len(prefix)] == prefix
            new = tokenizer.decode(after["prompt_ids"][len(prefix) :])
            assert new.startswith("\n<|im_start|>tool\n") or new.startswith("<|im_end|>\n")
            assert new.endswith("<|im_end|>\n<|im_start|>assistant\n")


def test_falls_back_to_the_full_rendering_when_the_template_rewrites_history(
    tiny: tuple[Any, Any, Path],
) -> None:
    model, tokenizer, _ = tiny
    forgetful = copy.deepcopy(tokenizer)  # shows earlier assistant turns as a placeholder
    forgetful.chat_template = tokenizer.chat_template.replace("(m.content or '')", "'[...]'")
    policy = HF(model, forgetful, max_new_tokens=16, seed=1)
    episode = simenv.rollout(simenv.make(SCENARIO, max_turns=3), policy, seed=11)
    turns = episode.metadata["turns"]
    assert len(turns) >= 2
    for before, after in itertools.pairwise(turns):
        prefix = before["prompt_ids"] + before["completion_ids"]
        assert after["prompt_ids"][: len(prefix)] != prefix
        assert "<|im_start|>assistant\n[...]<|im_end|>" in forgetful.decode(after["prompt_ids"])


def test_recorded_logprobs_match_a_forward_pass(
    tiny: tuple[Any, Any, Path], episodes: list[simenv.Episode]
) -> None:
    model = tiny[0]
    worst = 0.0
    for e in episodes:
        for turn in e.metadata["turns"]:
            prompt, completion = turn["prompt_ids"], turn["completion_ids"]
            ids = torch.tensor([prompt + completion])
            with torch.no_grad():
                logits = model(ids).logits[0, len(prompt) - 1 : -1].float() / 0.7
            expected = torch.log_softmax(logits, -1).gather(-1, torch.tensor(completion)[:, None])
            diff = (expected.squeeze(-1) - torch.tensor(turn["logprobs"])).abs().max().item()
            worst = max(worst, diff)
    print(f"max |recorded - recomputed| logprob: {worst:.2e}")
    assert worst < 1e-5


def test_batched_generation_gives_each_episode_its_own_result(
    tiny: tuple[Any, Any, Path],
) -> None:
    model, tokenizer, _ = tiny
    batched, single = conversations(4), conversations(4)
    HF(model, tokenizer, max_new_tokens=12, seed=5, batch_size=3).act(batched)
    policy = HF(model, tokenizer, max_new_tokens=12, seed=5)
    for conversation in single:
        policy.act([conversation])
    for a, b in zip(batched, single, strict=True):
        ta, tb = a.memo["turns"][0], b.memo["turns"][0]
        assert ta["prompt_ids"] == tb["prompt_ids"]
        assert ta["completion_ids"] == tb["completion_ids"]
        assert ta["logprobs"] == pytest.approx(tb["logprobs"], abs=1e-5)


def test_greedy_and_nucleus_sampling(tiny: tuple[Any, Any, Path]) -> None:
    model, tokenizer, _ = tiny
    greedy, narrow = conversations(2), conversations(2)
    HF(model, tokenizer, temperature=0, max_new_tokens=8).act(greedy)
    HF(model, tokenizer, temperature=1.0, top_p=1e-6, max_new_tokens=8).act(narrow)
    for g, n in zip(greedy, narrow, strict=True):
        assert g.memo["turns"][0]["completion_ids"] == n.memo["turns"][0]["completion_ids"]
        assert n.memo["turns"][0]["logprobs"] == [0.0] * len(n.memo["turns"][0]["logprobs"])


def test_loads_a_saved_directory_and_the_policy_string(tiny: tuple[Any, Any, Path]) -> None:
    model, tokenizer, path = tiny
    in_memory, loaded = conversations(2), conversations(2)
    HF(model, tokenizer, max_new_tokens=10, seed=2).act(in_memory)
    policy = from_string(f"hf:{path}", seed=2)
    assert isinstance(policy, HF) and policy.describe()["name"] == "hf"
    text = "\n".join(str(m["content"]) for m in in_memory[0].messages) + " café 2024 {}"
    assert policy.tokenizer(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert policy.tokenizer.chat_template == tokenizer.chat_template
    policy.max_new_tokens = 10
    policy.act(loaded)
    for a, b in zip(in_memory, loaded, strict=True):
        assert a.memo["turns"] == b.memo["turns"]
    with pytest.raises(FileNotFoundError, match="downloads nothing"):
        from_string(f"hf:{path / 'missing'}")


def test_rejects_bad_parameters(tiny: tuple[Any, Any, Path]) -> None:
    model, tokenizer, _ = tiny
    with pytest.raises(ValueError, match="top_p"):
        HF(model, tokenizer, top_p=0.0)
    with pytest.raises(ValueError, match="temperature"):
        HF(model, tokenizer, temperature=-1.0)
    with pytest.raises(ValueError, match="needs its tokenizer"):
        HF(model)


def test_simenv_runs_without_torch() -> None:
    code = (
        "import sys\n"
        "for name in ('torch', 'transformers', 'peft'): sys.modules[name] = None\n"
        "import simenv, simenv.cli\n"
        "from simenv.rollouts.policies import HF, Oracle\n"
        "e = simenv.rollout(simenv.make('support/Refunds-v1'), Oracle(), seed=0)\n"
        "assert e.success, e\n"
        "try:\n"
        "    HF('/nowhere')\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "simenv[train]" in out.stdout
