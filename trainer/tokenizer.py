"""The tokenizer of ``tiny``: byte-level BPE trained here, ChatML with tools, Hermes tool calls.

Nothing is downloaded. :func:`train_tokenizer` trains a byte-level BPE with ``tokenizers`` on a
corpus (by default :func:`default_corpus`: oracle transcripts of bundled scenarios, rendered
with the chat template, plus generic English), adds the special tokens below and attaches
:data:`CHAT_TEMPLATE`. Byte-level means every string round-trips: any text the environment
sends can be encoded, whatever the corpus was.

Special tokens: ``<|endoftext|>`` (padding), ``<|im_start|>``, ``<|im_end|>`` (end of turn,
the EOS), ``<tool_call>``, ``</tool_call>``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

from transformers import PreTrainedTokenizerFast

import simenv
from simenv.rollouts.policies import Oracle

__all__ = [
    "CHAT_TEMPLATE",
    "GENERIC_TEXT",
    "SPECIAL_TOKENS",
    "default_corpus",
    "render",
    "train_tokenizer",
]

IM_START, IM_END, PAD = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
TOOL_OPEN, TOOL_CLOSE = "<tool_call>", "</tool_call>"
SPECIAL_TOKENS = (PAD, IM_START, IM_END, TOOL_OPEN, TOOL_CLOSE)
PRETOKENIZE_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
"""Qwen2's pre-tokenisation: words, single digits, punctuation runs, newlines, spaces."""

CHAT_TEMPLATE = (
    "{% if tools and (not messages or messages[0].role != 'system') %}"
    "{{ '<|im_start|>system\\nTools:' }}{% for t in tools %}{{ ' ' + t.function.name }}"
    "{% endfor %}{{ '<|im_end|>\\n' }}"
    "{% endif %}"
    "{% for m in messages %}"
    "{% if m.role == 'system' %}"
    "{{ '<|im_start|>system\\n' + m.content }}"
    "{% if tools %}{{ '\\nTools:' }}{% for t in tools %}{{ ' ' + t.function.name }}{% endfor %}"
    "{% endif %}{{ '<|im_end|>\\n' }}"
    "{% elif m.role == 'assistant' %}"
    "{{ '<|im_start|>assistant\\n' + (m.content or '') }}"
    "{% for c in m.tool_calls or [] %}"
    "{% set args = c.function.arguments %}"
    '{{ \'<tool_call>{"name": "\' + c.function.name + \'", "arguments": \' }}'
    "{{ args if args is string else args | tojson }}{{ '}</tool_call>' }}"
    "{% endfor %}{{ '<|im_end|>\\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
"""ChatML. The system turn names the tools (a system turn is added when there is none); an
assistant's ``tool_calls`` render as Hermes ``<tool_call>{"name": ..., "arguments": ...}
</tool_call>`` text, the form the model writes and simenv parses. Prefix-preserving: rendering a
conversation and then its continuation only appends text."""

GENERIC_TEXT = (
    "Hello, thank you for reaching out. I have looked into your request and here is what I "
    "found. Could you please share the order number and the email address on the account?",
    "The quick brown fox jumps over the lazy dog. Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 2024.",
    "I am sorry, but this order is not eligible for a refund under our policy. Let me know if "
    "there is anything else I can help you with today.",
    'JSON looks like {"key": "value", "count": 3, "items": [1, 2, 3], "ok": true, "x": null}.',
    "Your ticket has been routed to the billing team with high priority; they will reply soon.",
)
"""Plain text mixed into the default corpus, so common words get their own merges."""


@functools.cache
def _template() -> Any:
    import jinja2

    env = jinja2.Environment()
    env.policies["json.dumps_kwargs"] = {"ensure_ascii": False}
    return env.from_string(CHAT_TEMPLATE)  # compiled once: compiling costs ~30 ms


def render(messages: Sequence[dict[str, Any]], tools: Any = None, generation: bool = False) -> str:
    """Render ``messages`` with :data:`CHAT_TEMPLATE`, without a tokenizer (to train one)."""
    return str(
        _template().render(messages=list(messages), tools=tools, add_generation_prompt=generation)
    )


def default_corpus(
    scenarios: Sequence[str] = ("support/Refunds-v1", "support/Triage-v1"), seeds: int = 1
) -> list[str]:
    """Oracle transcripts of ``scenarios`` (every train task, ``seeds`` seeds) plus generic text.

    The transcripts are rendered with :data:`CHAT_TEMPLATE`, tool calls included, so the
    tokenizer learns the words of the tools, their arguments and the ids they use.
    """
    corpus = list(GENERIC_TEXT)
    for scenario_id in scenarios:
        scenario = simenv.load_scenario(scenario_id)
        tools = [t.schema() for t in scenario.tools]
        env = simenv.make(scenario)
        for i, task in enumerate(scenario.split("train")):
            for k in range(seeds):
                episode = simenv.rollout(env, Oracle(), seed=100_000 * k + i, task_id=task.id)
                corpus.append(render(episode.messages, tools))
        env.close()
    return corpus


def train_tokenizer(corpus: Iterable[str], vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on ``corpus``, with ChatML and tool-call tokens."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    # Exactly Qwen2's pipeline: a directory with a Qwen2 config.json loads its tokenizer as
    # transformers' Qwen2Tokenizer, which rebuilds these steps; any other pipeline would
    # tokenise differently after save_pretrained + from_pretrained.
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token=IM_END, pad_token=PAD, bos_token=None
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.padding_side = "left"
    return tokenizer
