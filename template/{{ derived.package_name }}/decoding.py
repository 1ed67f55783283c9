"""Batched decoding with a preallocated KV cache: what `generate`, `chat`, `serve` and `bench generate` run.
Three sections: the KV cache the model reads and writes, the sampling of one token, and the Decoder.

A Decoder holds up to `max_batch` sequences, one per row of a KVCache (below):
- add() prefills new prompts together in one forward pass, left-padded to the longest, and samples each one's
  first token;
- step() runs one token for every live row in one forward pass, whatever column each row has reached;
- a finished sequence leaves at once and the last row moves into its slot, so the live rows are always
  0..n-1 and a step is one forward over a view of them.
Sequences join and leave between steps, which is all a server needs to batch concurrent requests
(continuous batching, Yu et al., 2022, "Orca"). Each sequence samples with its own SamplingParams and random
generator (SamplingParams, below), so its tokens do not depend on what else shares the batch.

The first token after a prompt comes from the prefill; every later one from a step. A row's cache holds all of
its tokens but the newest, which is the next step's input. When a row runs out of columns it is refilled: a
left-padded row moves to column 0, and a full context keeps its newest block_size // 2 tokens and goes on, so
a prompt decodes the same alone or in a batch.
"""

from __future__ import annotations

import codecs
import copy
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

from .model import GPT
from .tokenizer import BPETokenizer


# -- the KV cache ------------------------------------------------------------------------------------------------------
# A preallocated key/value cache for batched decoding (Pope et al., 2022, section 3.1).
#
# Generating token t runs the model on that one token instead of all t: each attention layer stores the keys and
# values of the positions it has seen, and the new token's query reads them back. Storage for `length` positions
# is allocated once (no torch.cat per token), as rows x columns:
# - a row is one sequence of the batch; rows may sit at different columns (a server adds and drops requests
#   between steps), so each row has its own `end`, the next column it writes;
# - left padding: prompts of different lengths are right-aligned in one batch, and columns before a row's
#   `start` are padding, never attended to.
# A token's position (RoPE angle or learned-position row) is its column minus its row's start, so padding does
# not shift the positions; this is what lets a batched answer equal the answer of the same prompt alone.
#
# The model calls positions(), mask(), append() and advance() inside one forward; decoding.py owns the rest.


class KVCache:
    """Keys and values of n_layer layers for `batch` rows of up to `length` columns, each (heads, head_dim)."""

    def __init__(self, n_layer: int, batch: int, length: int, heads: int, head_dim: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"):
        self.length = length
        shape = (n_layer, batch, heads, length, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.start = torch.zeros(batch, dtype=torch.long, device=device)  # first non-padding column per row
        self.end = torch.zeros(batch, dtype=torch.long, device=device)  # next column to write per row
        self.width = 0  # max(end): columns any row has written (a Python int: no device sync per layer)

    @classmethod
    def for_model(cls, config, batch: int, dtype: torch.dtype = torch.float32,
                  device: torch.device | str = "cpu") -> KVCache:
        """An empty cache of `batch` rows for a model of this GPTConfig, as long as its context window."""
        return cls(config.n_layer, batch, config.block_size, config.n_kv_head, config.n_embd // config.n_head,
                   dtype, device)

    def rows(self, first: int, last: int) -> KVCache:
        """Rows first..last-1 as a cache of their own that shares this one's storage (slices are views)."""
        view = copy.copy(self)
        view.k, view.v = self.k[:, first:last], self.v[:, first:last]
        view.start, view.end = self.start[first:last], self.end[first:last]
        view.width = int(view.end.max()) if last > first else 0
        return view

    def reset(self, row: int, start: int = 0) -> None:
        """Empty `row` for a new sequence whose first real column is `start` (the left padding)."""
        self.start[row], self.end[row] = start, 0

    def move(self, src: int, dst: int) -> None:
        """Copy row `src` (keys, values, start, end) into row `dst`: keeps the live rows at the front."""
        self.k[:, dst], self.v[:, dst] = self.k[:, src], self.v[:, src]
        self.start[dst], self.end[dst] = self.start[src], self.end[src]

    def positions(self, T: int) -> torch.Tensor:
        """Positions of the next T tokens of every row: (B, T), column minus start, 0 on padding columns."""
        cols = self.end[:, None] + torch.arange(T, device=self.end.device)  # (B, T)
        return (cols - self.start[:, None]).clamp(min=0)

    def mask(self, T: int) -> torch.Tensor:
        """Which columns each of the next T queries may attend to, as an additive mask (B, 1, T, width + T) in
        the cache's dtype: 0 where it may look, -inf where not. (Additive, because scaled_dot_product_attention
        took 0.06 ms with it against 0.12 ms with a boolean mask for one query over 40 keys: 1 thread, AVX2 CPU.)

        A real token sees the real columns up to its own (causal, no padding); a padding token sees only
        itself, so its row of the softmax is never empty (an all-masked row would be NaN and leak into the
        padding's keys). Columns past a row's end hold stale values from an earlier sequence: never seen.
        """
        cols = self.end[:, None, None] + torch.arange(T, device=self.end.device)[:, None]  # (B, T, 1)
        keys = torch.arange(self.width + T, device=self.end.device)  # (width + T,)
        real = keys >= self.start[:, None, None]  # (B, 1, width + T)
        visible = ((keys <= cols) & real) | (keys == cols)  # (B, T, width + T)
        hidden = torch.zeros(visible.shape, dtype=self.k.dtype, device=self.k.device)
        return hidden.masked_fill_(~visible, float("-inf")).unsqueeze(1)

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v (B, heads, T, D) at each row's columns end..end+T-1; return every layer column in use,
        (B, heads, width + T, D). The mask hides what a row must not see."""
        B, T = k.size(0), k.size(2)
        if self.width + T > self.length:
            raise ValueError(f"the cache holds {self.length} positions, {self.width + T} were asked for")
        cols = self.end[:, None] + torch.arange(T, device=k.device)  # (B, T)
        rows = torch.arange(B, device=k.device)[:, None]  # (B, 1)
        # Advanced indices on rows and columns with heads between them: the indexed view is (B, T, heads, D).
        self.k[layer][rows, :, cols] = k.transpose(1, 2).to(self.k.dtype)
        self.v[layer][rows, :, cols] = v.transpose(1, 2).to(self.v.dtype)
        return self.k[layer, :, :, : self.width + T], self.v[layer, :, :, : self.width + T]

    def advance(self, T: int) -> None:
        """Every row has written T more columns (called once per forward, after all layers)."""
        self.end += T
        self.width = int(self.end.max())


class TextStream:
    """A sequence's new tokens as text, piece by piece, cut before the first stop string.

    Token boundaries need not be character boundaries (a UTF-8 character may span tokens), and the start of a
    stop string must not be shown before it is known whether the whole string follows, so push() returns only
    what is final.
    """

    def __init__(self, tok: BPETokenizer, stop: tuple[str, ...] = ()):
        self.tok, self.stop = tok, stop
        self.utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")  # holds incomplete characters
        self.text = ""  # all text decoded so far (up to the stop string, once found)
        self.shown = 0  # how much of `text` push() has returned
        self.stopped = False

    def push(self, token: int) -> str:
        """Add one token; return the text that is now final (maybe "")."""
        self.text += self.utf8.decode(self.tok.token_bytes(token))
        hits = [i for i in (self.text.find(s, self.shown) for s in self.stop) if i >= 0]  # none starts earlier
        if hits:
            self.text, self.stopped = self.text[: min(hits)], True
            return self._show(len(self.text))
        held = max((n for s in self.stop for n in range(len(s) - 1, 0, -1) if self.text.endswith(s[:n])), default=0)
        return self._show(len(self.text) - held)

    def flush(self) -> str:
        """At the end: whatever was held back (an incomplete character, a partial stop string)."""
        if not self.stopped:
            self.text += self.utf8.decode(b"", final=True)
        return self._show(len(self.text))

    def _show(self, upto: int) -> str:
        piece, self.shown = self.text[self.shown : upto], max(self.shown, upto)
        return piece


@dataclass(eq=False)  # a sequence is itself, not its fields: two equal prompts are two sequences
class Sequence:
    """One prompt being continued. `tokens` is the prompt and the output so far; `finish_reason` is set when
    it is done: "stop" (end-of-text token or a stop string), "length" (max_tokens) or "error" (decoding it failed)."""

    prompt: list[int]
    params: SamplingParams
    stream: TextStream | None = None  # None: token ids only (benchmarks); stop strings need a stream
    tokens: list[int] = field(default_factory=list)
    generated: int = 0
    finish_reason: str | None = None
    generator: torch.Generator | None = None

    @property
    def output(self) -> list[int]:
        return self.tokens[len(self.prompt) :]


@dataclass
class Event:
    """What one sequence got from add() or step(): a token, its final text (maybe ""), and whether it ended;
    or, with `error`, why decoding it failed (it has left the batch; the other sequences go on)."""

    seq: Sequence
    token: int
    text: str
    finished: bool
    error: Exception | None = None

    @classmethod
    def failure(cls, seq: Sequence, error: Exception) -> Event:
        seq.finish_reason = "error"
        return cls(seq, -1, "", True, error)


class Decoder:
    """Up to max_batch sequences decoding together on `model` (in eval mode) with one KV cache."""

    def __init__(self, model: GPT, max_batch: int, eot_id: int | None = None, dtype: torch.dtype | None = None):
        self.model, self.eot_id, self.max_batch = model, eot_id, max_batch
        self.device = next(model.parameters()).device
        # dtype: what the model's keys come out as (16-bit under mixed precision)
        self.cache = KVCache.for_model(model.config, max_batch, dtype or next(model.parameters()).dtype, self.device)
        self.rows: list[Sequence] = []

    @property
    def free(self) -> int:
        """How many more sequences add() can take now."""
        return self.max_batch - len(self.rows)

    @torch.no_grad()
    def add(self, seqs: list[Sequence]) -> list[Event]:
        """Prefill `seqs` into the next free rows and sample their first tokens. A prompt longer than the
        context keeps its newest block_size tokens."""
        if len(seqs) > self.free:
            raise ValueError(f"{len(seqs)} sequences do not fit in the {self.free} free rows")
        first = len(self.rows)
        for seq in seqs:
            seq.tokens = list(seq.prompt)
            seq.generator = seq.params.generator(self.device)
        self.rows.extend(seqs)
        logits = self._prefill(first, [seq.tokens[-self.cache.length :] for seq in seqs])
        return self._accept(seqs, logits)

    @torch.no_grad()
    def step(self) -> list[Event]:
        """One new token for every live row, in one forward pass over rows 0..n-1."""
        for row, seq in enumerate(self.rows):
            if int(self.cache.end[row]) == self.cache.length:  # no column left
                self._prefill(row, [seq.tokens[-self._keep(row) - 1 : -1]])
        view = self.cache.rows(0, len(self.rows))
        idx = torch.tensor([[seq.tokens[-1]] for seq in self.rows], device=self.device)  # (n, 1)
        logits, _ = self.model(idx, cache=view)  # (n, 1, V)
        return self._accept(list(self.rows), logits[:, -1])

    def remove(self, seq: Sequence) -> None:
        """Free `seq`'s row (finished, or its client went away): the last row moves into it."""
        row, last = self.rows.index(seq), len(self.rows) - 1
        if row != last:
            self.cache.move(last, row)
            self.rows[row] = self.rows[last]
        self.rows.pop()

    def _keep(self, row: int) -> int:
        """How many cached tokens a full row keeps: all of them if left padding took columns (the row moves to
        column 0, as if it had never been padded), else the newest half of the context."""
        start = int(self.cache.start[row])
        return self.cache.length - start if start > 0 else self.cache.length // 2

    def _prefill(self, first: int, prompts: list[list[int]]) -> torch.Tensor:
        """Run `prompts`, left-padded, into rows first.. of the cache -> their last logits (len(prompts), V)."""
        longest = max(len(p) for p in prompts)
        idx = torch.tensor([[0] * (longest - len(p)) + p for p in prompts], device=self.device)  # (k, longest)
        for i, p in enumerate(prompts):
            self.cache.reset(first + i, start=longest - len(p))
        view = self.cache.rows(first, first + len(prompts))
        logits, _ = self.model(idx, cache=view)  # (k, longest, V)
        return logits[:, -1]

    def _accept(self, seqs: list[Sequence], logits: torch.Tensor) -> list[Event]:
        """Sample each sequence's next token from its logits (k, V); finished sequences leave."""
        events = []
        for seq, row_logits in zip(seqs, logits):
            try:
                token = next_token(row_logits, seq.params, seq.generator, seq.tokens)
            except Exception as e:  # noqa: BLE001 - one row's sampling failure (its parameters) ends that row alone
                self.remove(seq)
                events.append(Event.failure(seq, e))
                continue
            seq.tokens.append(token)
            seq.generated += 1
            ended = token == self.eot_id
            text = seq.stream.push(token) if seq.stream is not None and not ended else ""
            if ended or (seq.stream is not None and seq.stream.stopped):
                seq.finish_reason = "stop"
            elif seq.generated >= seq.params.max_tokens:
                seq.finish_reason = "length"
            if seq.finish_reason is not None:
                text += seq.stream.flush() if seq.stream is not None else ""
                self.remove(seq)
            events.append(Event(seq, token, text, seq.finish_reason is not None))
        return events


def generate(model: GPT, tok: BPETokenizer, prompts: list[list[int]], params: SamplingParams | list[SamplingParams],
             max_batch: int | None = None, dtype: torch.dtype | None = None,
             on_text: Callable[[int, str], None] | None = None) -> list[Sequence]:
    """Continue each prompt (token ids); all of them in one batch unless max_batch is smaller.

    params: one SamplingParams for all prompts or one each. on_text(i, text) receives prompt i's text as it is
    decided (streaming). Returns the finished Sequences in prompt order.
    """
    each = params if isinstance(params, list) else [params] * len(prompts)
    seqs = [Sequence(p, sp, TextStream(tok, sp.stop)) for p, sp in zip(prompts, each)]
    decoder = Decoder(model, max_batch or len(seqs), tok.eot_id, dtype)
    for events in run(decoder, list(seqs)):
        for event in events:
            if on_text is not None and event.text:
                on_text(seqs.index(event.seq), event.text)
    return seqs


def continue_ids(model: GPT, prompts: list[list[int]], params: SamplingParams, eot_id: int | None = None,
                 max_batch: int | None = None) -> list[list[int]]:
    """Each prompt's new token ids, without text: what `check`, `eval`'s samples, the fine-tuning task's accuracy
    and `bench generate` decode. Without eot_id nothing stops a sequence early: each gets params.max_tokens."""
    seqs = [Sequence(p, params) for p in prompts]
    for _ in run(Decoder(model, max_batch or len(seqs), eot_id), list(seqs)):
        pass
    return [seq.output for seq in seqs]


def run(decoder: Decoder, waiting: list[Sequence]) -> Iterable[list[Event]]:
    """Feed `waiting` into the decoder as rows free up, and step until every sequence has finished."""
    while waiting or decoder.rows:
        if waiting and decoder.free:
            batch, waiting[:] = waiting[: decoder.free], waiting[decoder.free :]
            yield _raise_failure(decoder.add(batch))
        if decoder.rows:
            yield _raise_failure(decoder.step())


def _raise_failure(events: list[Event]) -> list[Event]:
    """`events`, unless one of them failed: then its error, as a caller of run() decodes for itself alone."""
    for event in events:
        if event.error is not None:
            raise event.error
    return events


# -- sampling --------------------------------------------------------------------------------------------------------
# Choosing the next token from the model's scores (logits), one sequence at a time.
#
# The steps, in the order they apply (the order of Hugging Face `generate`'s logits processors):
# 1. repetition penalty (CTRL, Keskar et al., 2019): every token already in the sequence has its logit divided by
#    the penalty if positive, multiplied by it if negative, so it becomes less likely either way;
# 2. temperature: logits / T. Below 1 sharpens the distribution (safer, more repetitive), above 1 flattens it;
#    T = 0 means greedy decoding, always the highest score;
# 3. top-k (Fan et al., 2018): keep only the k highest logits;
# 4. top-p, nucleus sampling (Holtzman et al., 2020): keep the smallest set of most likely tokens whose
#    probabilities add up to at least p;
# 5. draw one token from softmax(logits) with the sequence's own random generator, so a seed fixes the result
#    whatever else shares the batch.
# tests/test_decoding.py holds steps 1, 3 and 4 against transformers' logits processors.


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
