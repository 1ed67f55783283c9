"""Choosing the next token from the model's scores (logits), one sequence at a time.

The steps, in the order they apply (the order of Hugging Face `generate`'s logits processors):
1. repetition penalty (CTRL, Keskar et al., 2019): every token already in the sequence has its logit divided by
   the penalty if positive, multiplied by it if negative, so it becomes less likely either way;
2. temperature: logits / T. Below 1 sharpens the distribution (safer, more repetitive), above 1 flattens it;
   T = 0 means greedy decoding, always the highest score;
3. top-k (Fan et al., 2018): keep only the k highest logits;
4. top-p, nucleus sampling (Holtzman et al., 2020): keep the smallest set of most likely tokens whose
   probabilities add up to at least p;
5. draw one token from softmax(logits) with the sequence's own random generator, so a seed fixes the result
   whatever else shares the batch.
tests/test_decoding.py holds steps 1, 3 and 4 against transformers' logits processors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingParams:
    """How one sequence is continued. Also what the server reads from a request."""

    max_tokens: int = 200  # new tokens at most (finish_reason "length")
    temperature: float = 0.8  # 0: greedy
    top_k: int | None = 50  # None: no top-k
    top_p: float = 1.0  # 1: no nucleus cut
    repetition_penalty: float = 1.0  # 1: off
    stop: tuple[str, ...] = ()  # the text ends before the first of these (finish_reason "stop")
    seed: int | None = None  # None: a fresh random seed

    def __post_init__(self) -> None:
        checks = [
            (self.max_tokens >= 1, f"max_tokens must be at least 1, got {self.max_tokens}"),
            (math.isfinite(self.temperature) and self.temperature >= 0,
             f"temperature must be a number >= 0, got {self.temperature}"),
            (self.top_k is None or self.top_k >= 1, f"top_k must be at least 1, got {self.top_k}"),
            (0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}"),
            (math.isfinite(self.repetition_penalty) and self.repetition_penalty > 0,
             f"repetition_penalty must be a number > 0, got {self.repetition_penalty}"),
            (all(self.stop), "stop strings must not be empty"),
            (self.seed is None or 0 <= self.seed < 2**64, f"seed must be an integer in [0, 2**64), got {self.seed}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def generator(self, device: torch.device) -> torch.Generator:
        """This sequence's random numbers: seeded by `seed`, else by fresh entropy."""
        gen = torch.Generator(device=device)
        if self.seed is None:
            gen.seed()
        else:
            gen.manual_seed(self.seed)
        return gen


def penalize_repeats(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """logits (V,) with the tokens in `seen` (N,) made less likely: / penalty if positive, * penalty if not."""
    scores = logits[seen]
    return logits.scatter(0, seen, torch.where(scores > 0, scores / penalty, scores * penalty))


def keep_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """logits (V,) with all but the k highest set to -inf (ties with the k-th are kept)."""
    kth = torch.topk(logits, min(k, logits.size(-1))).values[-1]
    return logits.masked_fill(logits < kth, float("-inf"))


def keep_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """logits (V,) keeping the most likely tokens until their probabilities reach p: a token stays if the
    tokens above it hold less than p (so the most likely one always stays)."""
    sorted_logits, order = torch.sort(logits, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    before = probs.cumsum(dim=-1) - probs  # probability mass of the tokens ranked above each one
    ranked_drop = before >= p
    ranked_drop[0] = False  # even when p rounds to 0 in the logits' dtype (5e-324 is 0 in float32)
    drop = torch.zeros_like(logits, dtype=torch.bool).scatter(0, order, ranked_drop)
    return logits.masked_fill(drop, float("-inf"))


def next_token(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator,
               seen: list[int]) -> int:
    """The next token for one sequence. logits: (V,) scores; seen: the sequence so far (prompt and output)."""
    logits = logits.float()
    if params.repetition_penalty != 1.0 and seen:
        logits = penalize_repeats(logits, torch.tensor(seen, device=logits.device), params.repetition_penalty)
        big = torch.finfo(logits.dtype).max  # a penalty near 0 must not turn a score into inf (softmax: NaN)
        logits = logits.clamp(-big, big)
    if params.temperature == 0:
        return int(logits.argmax())
    # The best score is subtracted first, and the division is in float64 (where the temperature is given): with a
    # tiny temperature the others go to -inf and the best stays 0, never inf - inf or 0 / 0.
    logits = ((logits - logits.max()).double() / params.temperature).float()
    if params.top_k is not None:
        logits = keep_top_k(logits, params.top_k)
    if params.top_p < 1.0:
        logits = keep_top_p(logits, params.top_p)
    return int(torch.multinomial(logits.softmax(dim=-1), 1, generator=generator))
