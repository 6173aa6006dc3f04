"""The agent gateway's cost: added latency per turn, latency under 64 agents, recording memory.

1. **Added latency per turn.** The same prompts (support/Refunds-v1's first turns, rendered
   with the tiny model's chat template), the same greedy sampling and the same
   ``max_tokens``, generated (a) by calling the HF policy in-process (``HF.generate`` on the
   prompt ids) and (b) through the gateway with a stock ``openai`` client on a kept-alive
   127.0.0.1 connection (HTTP, JSON, rendering, tokenising, tool-call parsing, recording).
   Calls alternate (in-process, gateway, ...) in one run; the difference of the medians is the
   gateway's cost per turn.
2. **64 concurrent trajectories.** A second process runs 64 agents at once (one thread and one
   kept-alive connection each, ``http.client``), each playing ``--turns`` turns with its
   history growing; per-turn latency p50/p99 and turns/s. The HF sampler batches the waiting
   calls, so this is mostly the tiny model's batched generation.
3. **Recording memory per 1,000 turns** (``tracemalloc``): 1,000 turns recorded as 10
   trajectories of 100 turns and as 1 of 1,000 (a conversation growing every turn); the
   second would be quadratic if each turn kept its whole prompt.

Run: ``python bench/gateway.py [--turns N] [--write]``; ``--write`` updates the section of
docs/benchmarks.md between the ``gateway`` markers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from typing import Any

import numpy as np
import torch
from _report import machine, write_section

import simenv
from simenv.rollouts.policies import HF
from simenv.server.gateway import AwsCredentials, Gateway, Policy, make_server
from simenv.server.gateway.chat import finish, parse_request
from simenv.server.gateway.policy import Sampled
from simenv.server.gateway.trajectories import Limits, TrajectoryStore
from trainer.models import build_tiny

SCENARIO = "support/Refunds-v1"
MAX_TOKENS = 16


def prompts(n: int) -> list[tuple[list[Any], list[Any]]]:
    env = simenv.make(SCENARIO)
    out = []
    for seed in range(n):
        observation, info = env.reset(seed=seed)
        out.append((list(observation), info["tools"]))
    return out


def added_latency(policy: Policy, url: str, gateway: Gateway, calls: int) -> dict[str, float]:
    import openai

    hf = policy.sampler.hf  # type: ignore[attr-defined]
    direct, through = [], []
    cases = prompts(calls)
    base = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    for k, (messages, tools) in enumerate(cases * 2):
        _, key = gateway.create(sampling={"temperature": 0.0, "max_tokens": MAX_TOKENS})
        agent = base.with_options(api_key=key)  # the same kept-alive connection
        start = time.perf_counter()  # in-process: the policy renders, tokenises, generates
        prompt = policy.encode(policy.render(messages, tools))
        hf.generate(
            [prompt], [np.random.default_rng(k)], temperature=0.0, max_new_tokens=MAX_TOKENS
        )
        direct.append(time.perf_counter() - start)
        start = time.perf_counter()
        agent.chat.completions.create(model="tiny", messages=messages, tools=tools)
        through.append(time.perf_counter() - start)
    direct, through = direct[calls:], through[calls:]  # the first pass warms both up
    med_d, med_t = statistics.median(direct), statistics.median(through)
    return {"direct_ms": med_d * 1e3, "gateway_ms": med_t * 1e3, "added_ms": (med_t - med_d) * 1e3}


AGENTS = textwrap.dedent(
    """
    import http.client, json, sys, threading, time
    host, port, turns = sys.argv[1], int(sys.argv[2]), int(sys.argv[4])
    keys = json.loads(sys.argv[3])
    latencies, barrier = [], threading.Barrier(len(keys))

    def agent(n, key):
        connection = http.client.HTTPConnection(host, port, timeout=600)
        headers = {"Authorization": "Bearer " + key, "Content-Type": "application/json"}
        messages = [{"role": "user", "content": f"agent {n}: please refund order O-{n}"}]
        barrier.wait()
        for turn in range(turns):
            body = json.dumps({"model": "tiny", "messages": messages, "max_tokens": 16})
            start = time.perf_counter()
            connection.request("POST", "/v1/chat/completions", body, headers)
            answer = json.loads(connection.getresponse().read())
            latencies.append(time.perf_counter() - start)
            messages.append(answer["choices"][0]["message"])
            messages.append({"role": "user", "content": f"agent {n}, turn {turn}: go on"})

    threads = [threading.Thread(target=agent, args=(n, k)) for n, k in enumerate(keys)]
    start = time.perf_counter()
    [t.start() for t in threads]
    [t.join() for t in threads]
    print(json.dumps({"latencies": latencies, "wall_s": time.perf_counter() - start}))
    """
)


def concurrent(url: str, gateway: Gateway, agents: int, turns: int) -> dict[str, float]:
    keys = [gateway.create(sampling={"temperature": 1.0})[1] for _ in range(agents)]
    host, port = url.removeprefix("http://").split(":")
    result = subprocess.run(
        [sys.executable, "-c", AGENTS, host, port, json.dumps(keys), str(turns)],
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    )
    data = json.loads(result.stdout)
    lat = sorted(data["latencies"])
    return {
        "p50_ms": lat[len(lat) // 2] * 1e3,
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3,
        "turns_per_s": len(lat) / data["wall_s"],
        "turns": len(lat),
    }


def recording_memory(policy: Policy, trajectories: int, turns: int) -> float:
    """Bytes allocated by the store per turn recorded (tracemalloc), rendering excluded."""
    eos = policy.tokenizer.eos_token_id
    completion = [
        *policy.encode(
            '<tool_call>{"name": "find_customer", "arguments": {"email": "a@b.c"}}</tool_call>'
        ),
        eos,
    ]
    plans = []
    for t in range(trajectories):  # prepare every prompt first: only recording is measured
        messages: list[Any] = [{"role": "user", "content": f"trajectory {t}: refund my order"}]
        steps = []
        for k in range(turns):
            request = parse_request({"messages": list(messages)})
            steps.append(request)
            messages += [
                {"role": "assistant", "content": f"turn {k}"},
                {"role": "user", "content": f"result {k}: the order total is {k * 7}"},
            ]
        plans.append(steps)
    store = TrajectoryStore()
    sampled = Sampled(completion, [-0.5] * len(completion))
    made = [store.create(limits=Limits(turns))[0] for _ in range(trajectories)]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for trajectory, steps in zip(made, plans, strict=True):
        for k, request in enumerate(steps):
            # the rendering: the segment's text plus this turn's new messages (cheap stand-in
            # for the template, so the measurement is the store, not jinja)
            last = trajectory.segments[-1].text if trajectory.segments else ""
            rendered = last + f"<|im_start|>user\nresult {k}<|im_end|>\n<|im_start|>assistant\n"
            segment, prompt = trajectory.prompt(rendered, policy.encode)
            done = finish(policy, sampled, request, 0)
            trajectory.record(segment, prompt, rendered, done, request.raw, request.messages)
            del prompt
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / (trajectories * turns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--agents", type=int, default=64)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, tokenizer = build_tiny(seed=0)
    hf = HF(model.eval(), tokenizer, max_new_tokens=MAX_TOKENS, seed=0)
    policy = Policy.from_hf(hf, name="tiny")
    gateway = Gateway(policy, admin_key="bench", aws=AwsCredentials("AKIDBENCH", "bench"))
    server = make_server(gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hf.generate([policy.encode("warm up")], [np.random.default_rng(0)], max_new_tokens=4)
    added = added_latency(policy, server.url, gateway, args.calls)
    print("added latency", added)
    crowd = concurrent(server.url, gateway, args.agents, args.turns)
    print("concurrent", crowd)
    server.shutdown()
    server.server_close()
    spread = recording_memory(policy, 10, 100)
    long = recording_memory(policy, 1, 1000)
    print("memory per turn", spread, long)
    a, c = added, crowd
    lines = [
        f"`python bench/gateway.py --write` (tiny model, torch {torch.__version__}, CPU "
        f"capability {torch.backends.cpu.get_cpu_capability()}, 1 torch thread; {machine()})",
        "",
        f"| per turn, same prompts, greedy, `max_tokens` {MAX_TOKENS} "
        f"(median of {args.calls}) | latency |",
        "|---|---|",
        f"| the HF policy in-process (render, tokenise, `HF.generate`) | {a['direct_ms']:.1f} ms |",
        f"| **through the gateway** (`openai` client, kept-alive 127.0.0.1) "
        f"| {a['gateway_ms']:.1f} ms |",
        "| added by the gateway (HTTP, JSON, the worker hand-off, parsing, recording) "
        f"| **{a['added_ms']:.1f} ms** |",
        "",
        f"| {args.agents} concurrent trajectories from a second process, {args.turns} turns "
        f"each ({c['turns']} turns) | |",
        "|---|---|",
        f"| per-turn latency p50 | {c['p50_ms']:.0f} ms |",
        f"| per-turn latency p99 | {c['p99_ms']:.0f} ms |",
        f"| throughput | {c['turns_per_s']:.1f} turns/s |",
        "",
        "| recording memory (tracemalloc, the store only) | per 1,000 turns |",
        "|---|---|",
        f"| 10 trajectories of 100 turns | {spread * 1000 / 2**20:.2f} MiB |",
        "| 1 trajectory of 1,000 turns (history growing every turn) "
        f"| {long * 1000 / 2**20:.2f} MiB |",
    ]
    body = "\n".join(lines)
    print(body)
    if args.write:
        write_section("gateway", body)


if __name__ == "__main__":
    main()
