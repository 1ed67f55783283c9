"""The built-in fine-tuning task: sort a few letters. Offline, deterministic, and checked by exact match.

    user:      sort: q d m t
    assistant: d m q t

A pretrained model cannot do it (it has read plays, not instructions), so the accuracy on held-out prompts
shows what fine-tuning taught it. Every prompt comes from a seeded generator; the held-out prompts are never
in the training split, so accuracy measures the skill, not memory of answers.
"""

from __future__ import annotations

import random
from typing import Callable, Iterator

import torch

from .chat_format import END, Message, render_ids
from .decoding import continue_ids
from .sampling import SamplingParams
from .tokenizer import BPETokenizer

LETTERS = "abcdefghijklmnopqrstuvwxyz"
MIN_LETTERS, MAX_LETTERS = 3, 5
HELD_OUT = 200  # prompts kept for measuring accuracy
SEED = 20240
REPLY_BATCH = 16  # prompts decoding together: each holds a KV cache row as long as the context


def make_example(rng: random.Random) -> tuple[str, str]:
    """(prompt, answer): MIN_LETTERS..MAX_LETTERS distinct letters in random order, and sorted."""
    letters = rng.sample(LETTERS, rng.randint(MIN_LETTERS, MAX_LETTERS))
    return "sort: " + " ".join(letters), " ".join(sorted(letters))


def conversation(prompt: str, answer: str | None = None) -> list[Message]:
    """The chat messages of one example; without `answer`, only the user's turn."""
    messages = [{"role": "user", "content": prompt}]
    return messages + [{"role": "assistant", "content": answer}] if answer is not None else messages


def held_out(n: int | None = None, seed: int = SEED) -> list[tuple[str, str]]:
    """The first n (default HELD_OUT) distinct examples of the seeded stream: the evaluation split."""
    n = HELD_OUT if n is None else n
    rng, seen, out = random.Random(seed), set(), []
    while len(out) < n:
        prompt, answer = make_example(rng)
        if prompt not in seen:
            seen.add(prompt)
            out.append((prompt, answer))
    return out


def train_examples(n: int, seed: int = SEED + 1) -> Iterator[tuple[str, str]]:
    """n training examples from another seeded stream, none of them a held-out prompt."""
    excluded = {p for p, _ in held_out()}
    rng, made = random.Random(seed), 0
    while made < n:
        prompt, answer = make_example(rng)
        if prompt not in excluded:
            made += 1
            yield prompt, answer


def greedy_reply(model: torch.nn.Module, tok: BPETokenizer, prompts: list[str], max_new_tokens: int = 16
                 ) -> list[str]:
    """The model's greedy answers to `prompts`, each cut at its first <|end|>, decoded as one left-padded batch."""
    end = tok.special_id(END)
    ids = [render_ids(tok, conversation(prompt)) for prompt in prompts]
    news = continue_ids(model, ids, SamplingParams(max_tokens=max_new_tokens, temperature=0.0), eot_id=end,
                        max_batch=REPLY_BATCH)
    return [tok.decode(new[:new.index(end)] if end in new else new) for new in news]


def accuracy(model: torch.nn.Module, tok: BPETokenizer, examples: list[tuple[str, str]] | None = None,
             log: Callable[[str], None] | None = None) -> float:
    """Exact-match accuracy of greedy answers on `examples` (default: the held-out split), in [0, 1]."""
    examples = examples if examples is not None else held_out()
    was_training = model.training
    model.eval()
    replies = greedy_reply(model, tok, [p for p, _ in examples])
    model.train(was_training)
    if log:
        for (prompt, answer), reply in list(zip(examples, replies))[:3]:
            log(f"  {prompt!r} -> {reply!r} (expected {answer!r})")
    return sum(r.strip() == a for (_, a), r in zip(examples, replies)) / len(examples)
