"""`chat`: a conversation at the terminal, rendered by the one chat format (chat_format.py).

fit_history() keeps the conversation within the context window by dropping its oldest turns first; the server's
/v1/chat/completions renders its messages with the same chat_format.render_ids.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from .chat_format import STOP, Message, render_ids
from .decoding import Decoder, Sequence, TextStream, run
from .generate import load_model
from .model import GPT
from .sampling import SamplingParams
from .tokenizer import BPETokenizer


def fit_history(tok: BPETokenizer, messages: list[Message], budget: int) -> list[int]:
    """The prompt's token ids for the longest tail of `messages` that fits in `budget` tokens.

    A system message at the start stays; the oldest other messages go first. If the newest message alone is
    too long, its newest `budget` tokens are kept.
    """
    system = messages[:1] if messages and messages[0]["role"] == "system" else []
    rest = messages[len(system) :]
    for first in range(len(rest)):
        ids = render_ids(tok, system + rest[first:])
        if len(ids) <= budget:
            return ids
    return render_ids(tok, rest[-1:])[-budget:]


def chat(model: GPT, tok: BPETokenizer, params: SamplingParams, read: Callable[[str], str] = input,
         write: Callable[[str], object] = sys.stdout.write) -> list[Message]:
    """Talk at the terminal until end of input (Ctrl-D); each answer streams as it is decoded. Turn n samples
    with seed + n, so the same conversation replays the same. Returns the conversation."""
    params = replace(params, stop=tuple(params.stop) + STOP)
    budget = model.config.block_size - params.max_tokens
    if budget < 1:
        raise ValueError(f"--max-new-tokens {params.max_tokens} leaves no room for the conversation in the "
                         f"{model.config.block_size}-token context")
    decoder = Decoder(model, max_batch=1, eot_id=tok.eot_id)
    messages: list[Message] = []
    while True:
        try:
            line = read("you> ")
        except EOFError:
            write("\n")
            return messages
        if not line.strip():
            continue
        messages.append({"role": "user", "content": line})
        turn = params if params.seed is None else replace(params, seed=params.seed + len(messages) // 2)
        seq = Sequence(fit_history(tok, messages, budget), turn, TextStream(tok, params.stop))
        write("model>")
        for events in run(decoder, [seq]):
            write("".join(event.text for event in events))
        write("\n")
        messages.append({"role": "assistant", "content": seq.stream.text.strip()})


def run_chat(path: Path, params: SamplingParams, device: str = "auto") -> None:
    """`chat`: load the checkpoint and talk."""
    model, tok, _ = load_model(path, device)
    chat(model, tok, params)
