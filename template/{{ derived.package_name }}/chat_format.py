"""The chat format, in one place: how a conversation becomes token ids for fine-tuning, `chat`, `serve` and the export.

A conversation is a list of messages {"role": "system" | "user" | "assistant", "content": str}, rendered as

    <|endoftext|><|user|>sort: c a b<|end|><|assistant|>a b c<|end|>

<|endoftext|> opens it as it opens every pretraining document. The role tokens and <|end|> are special tokens
added after <|endoftext|> without retraining the BPE (BPETokenizer.with_special_tokens); the fine-tuned model
grows its embedding by that many rows. Message text is encoded with encode_ordinary, so a user who types
"<|assistant|>" gets ordinary characters, not a role switch. A model that was only pretrained has no chat tokens:
`chat` and `serve` give it the same format with the markers spelled out as ordinary text, which it continues as
it continues any text. A reply ends at <|end|> (STOP), the token or its text.

CHAT_TEMPLATE is the same format as a Jinja template for Hugging Face's `tokenizer_config.json`, so
transformers' `apply_chat_template` gives the ids `render` gives (tests/test_chat_format.py checks it).
"""

from __future__ import annotations

from typing import Any, Sequence

from .tokenizer import BPETokenizer

ROLES = ("system", "user", "assistant")
END = "<|end|>"
SPECIAL_TOKENS = (*(f"<|{role}|>" for role in ROLES), END)
STOP = (END,)  # the stop string of a reply: decoding the <|end|> token gives this text too

CHAT_TEMPLATE = (
    "{{ '<|endoftext|>' }}"
    "{% for message in messages %}{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)

Message = dict[str, str]


def chat_tokenizer(tok: BPETokenizer) -> BPETokenizer:
    """`tok` plus the role and turn-end tokens (a no-op for a tokenizer that has them already)."""
    return tok.with_special_tokens(SPECIAL_TOKENS)


def check_messages(messages: Any, where: str = "conversation") -> list[Message]:
    """The messages, or a one-line ValueError naming `where` and what is wrong."""
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"{where}: 'messages' must be a non-empty list of {{role, content}} objects")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise ValueError(f"{where}: message {i} needs a role ({', '.join(ROLES)}) and a string content")
    return messages


def marker_ids(tok: BPETokenizer, name: str) -> list[int]:
    """Chat token `name` as ids: its own id when the tokenizer has the chat tokens, else its text as ordinary
    tokens (the format as plain text, for a model that was only pretrained)."""
    return [tok.special[name]] if name in tok.special else tok.encode_ordinary(name)


def render(tok: BPETokenizer, messages: Sequence[Message], add_generation_prompt: bool = False
           ) -> tuple[list[int], list[bool]]:
    """(ids, trained): the conversation's token ids, and for each id whether fine-tuning learns to predict it.

    Only the assistant's content and its <|end|> are trained: the model learns to answer and to stop, never to
    write the user's part. add_generation_prompt appends <|assistant|> so that the model writes the next turn.
    """
    ids, trained = [tok.eot_id], [False]
    end = marker_ids(tok, END)
    for m in messages:
        role, content = marker_ids(tok, f"<|{m['role']}|>"), tok.encode_ordinary(m["content"])
        ids += [*role, *content, *end]
        trained += [False] * len(role) + [m["role"] == "assistant"] * (len(content) + len(end))
    if add_generation_prompt:
        reply = marker_ids(tok, "<|assistant|>")
        ids += reply
        trained += [False] * len(reply)
    return ids, trained


def render_ids(tok: BPETokenizer, messages: Sequence[Message], add_generation_prompt: bool = True) -> list[int]:
    """The ids of a conversation; by default ending with <|assistant|>, ready for the model's reply."""
    return render(tok, messages, add_generation_prompt)[0]
