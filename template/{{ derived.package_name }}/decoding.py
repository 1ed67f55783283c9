"""Batched decoding with a preallocated KV cache: what `generate`, `chat`, `serve` and `bench generate` run.

A Decoder holds up to `max_batch` sequences, one per row of a KVCache (kvcache.py):
- add() prefills new prompts together in one forward pass, left-padded to the longest, and samples each one's
  first token;
- step() runs one token for every live row in one forward pass, whatever column each row has reached;
- a finished sequence leaves at once and the last row moves into its slot, so the live rows are always
  0..n-1 and a step is one forward over a view of them.
Sequences join and leave between steps, which is all a server needs to batch concurrent requests
(continuous batching, Yu et al., 2022, "Orca"). Each sequence samples with its own SamplingParams and random
generator (sampling.py), so its tokens do not depend on what else shares the batch.

The first token after a prompt comes from the prefill; every later one from a step. A row's cache holds all of
its tokens but the newest, which is the next step's input. When a row runs out of columns it is refilled: a
left-padded row moves to column 0, and a full context keeps its newest block_size // 2 tokens and goes on, so
a prompt decodes the same alone or in a batch.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

from .kvcache import KVCache
from .model import GPT
from .sampling import SamplingParams, next_token
from .tokenizer import BPETokenizer


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
        # dtype: what the model's keys come out as (the autocast dtype under mixed precision)
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
