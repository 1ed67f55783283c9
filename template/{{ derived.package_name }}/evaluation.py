"""`eval`: validation loss, perplexity and bits per byte, multiple-choice accuracy, the built-in task, samples.

Multiple choice scores each choice by the log-likelihood the model gives it after the context, as
EleutherAI's lm-evaluation-harness does (Gao et al., 2021): `acc` picks the highest sum of log-probabilities,
`acc_norm` the highest sum divided by the choice's length in bytes (length normalisation, so long answers are
not penalised for having more tokens). The continuation is " " + choice, its tokens being those of
context + continuation after the context's own tokens, as the harness splits them.

Results go to JSON and a Markdown table; `eval --compare A B` puts two checkpoints side by side.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from . import task
from .chat_format import END
from .data import TokenDataset
from .decoding import continue_ids
from .sampling import SamplingParams
from .tokenizer import BPETokenizer
from .train import EVAL_SEED, bytes_per_token


def bits_per_byte(loss: float, bytes_per_token: float) -> float:
    """Nats per token -> bits per byte: loss / ln 2 / bytes per token (Gao et al., 2020, The Pile, section 5)."""
    return loss / math.log(2) / bytes_per_token


@torch.no_grad()
def validation(model: torch.nn.Module, ds: TokenDataset, bytes_per_token: float, batches: int, batch_size: int = 8
               ) -> dict[str, float]:
    """Mean next-token loss over `batches` fixed random windows of `ds`, its perplexity and bits per byte."""
    block = model.config.block_size
    gen = torch.Generator().manual_seed(EVAL_SEED)
    dev = next(model.parameters()).device
    losses = []
    for _ in range(batches):
        x, y = ds.batch(batch_size, block, gen)
        losses.append(model(x.to(dev), y.to(dev))[1].item())
    loss = sum(losses) / len(losses)
    return {"val_loss": loss, "perplexity": math.exp(loss), "bits_per_byte": bits_per_byte(loss, bytes_per_token)}


def read_choices(path: Path) -> list[dict[str, Any]]:
    """Multiple-choice items from JSONL, as {"context", "choices", "gold"}. Reads HellaSwag's layout (ctx,
    endings, label), ARC's (question, choices {text, label}, answerKey) and the plain one (context or query,
    choices, gold). A line in none of them, or whose gold label names no choice, is a one-line ValueError naming it."""
    items = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"--mc: cannot read {path}: {e}") from None
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = _choice_item(json.loads(line))
        except (ValueError, KeyError, TypeError, AttributeError) as e:  # not JSON, or fields missing or mistyped
            raise ValueError(f"{path}:{n}: not a HellaSwag (ctx, endings, label), ARC (question, choices, answerKey) "
                             f"or plain (context, choices, gold) item ({type(e).__name__}: {e})") from None
        items.append(item)
    if not items:
        raise ValueError(f"{path} holds no multiple-choice item")
    return items


def _choice_item(r: dict[str, Any]) -> dict[str, Any]:
    """One item in the plain layout; KeyError, TypeError or ValueError when `r` is in no layout or is inconsistent."""
    if "endings" in r:
        item = {"context": r["ctx"], "choices": r["endings"], "gold": int(r["label"])}
    elif isinstance(r.get("choices"), dict):
        labels = list(r["choices"]["label"])
        item = {"context": r["question"], "choices": r["choices"]["text"], "gold": labels.index(r["answerKey"])}
    else:
        item = {"context": r.get("context", r.get("query")), "choices": r["choices"], "gold": int(r["gold"])}
    choices = item["choices"]
    if not isinstance(item["context"], str) or not isinstance(choices, list) or len(choices) < 2 \
            or not all(isinstance(c, str) for c in choices):
        raise TypeError("the context must be a string and the choices a list of 2 or more strings")
    if not 0 <= item["gold"] < len(choices):
        raise ValueError(f"gold label {item['gold']} names no choice (there are {len(choices)})")
    return item


@torch.no_grad()
def continuation_logprob(model: torch.nn.Module, tok: BPETokenizer, context: str, continuation: str) -> float:
    """Sum of log p(continuation tokens | context); the context is cut on the left to fit block_size."""
    ctx = tok.encode_ordinary(context)
    cont = tok.encode_ordinary(context + continuation)[len(ctx):]
    ids = (ctx + cont)[-(model.config.block_size + 1):]
    dev = next(model.parameters()).device
    logits, _ = model(torch.tensor([ids[:-1]], device=dev))  # (1, T, V)
    logp = F.log_softmax(logits[0, -len(cont):].float(), dim=-1)  # (len(cont), V)
    return logp.gather(1, torch.tensor(ids[-len(cont):], device=dev)[:, None]).sum().item()


def multiple_choice(model: torch.nn.Module, tok: BPETokenizer, items: list[dict[str, Any]]) -> dict[str, float]:
    """acc (highest log-likelihood) and acc_norm (highest log-likelihood per byte) over `items`."""
    acc = acc_norm = 0
    for item in items:
        scores = [continuation_logprob(model, tok, item["context"], " " + c) for c in item["choices"]]
        per_byte = [s / len((" " + c).encode("utf-8")) for s, c in zip(scores, item["choices"])]
        acc += max(range(len(scores)), key=scores.__getitem__) == item["gold"]
        acc_norm += max(range(len(per_byte)), key=per_byte.__getitem__) == item["gold"]
    return {"acc": acc / len(items), "acc_norm": acc_norm / len(items), "items": len(items)}


def samples(model: torch.nn.Module, tok: BPETokenizer, ds: TokenDataset, n: int = 3, length: int = 24
            ) -> list[dict[str, str]]:
    """Greedy continuations of the first tokens of n validation windows: what the model writes."""
    gen = torch.Generator().manual_seed(EVAL_SEED)
    x, _ = ds.batch(n, length, gen)
    prompts = x.tolist()
    out = continue_ids(model, prompts, SamplingParams(max_tokens=length, temperature=0.0))
    return [{"prompt": tok.decode(p), "continuation": tok.decode(new)} for p, new in zip(prompts, out)]


def evaluate_checkpoint(path: Path, mc: dict[Path, list[dict[str, Any]]], batches: int = 20, device: str = "auto",
                        log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every metric of one checkpoint (mc: each multiple-choice file's items); the built-in task only for a chat
    model (one with the chat tokens)."""
    from .generate import load_model

    model, tok, ck = load_model(path, device)
    # The prepared data: beside the tokenizer of a pretraining run; a fine-tuned run records its base's.
    ddir = Path(ck["tokenizer"]["meta"].get("prepared_dir") or Path(ck["tokenizer"]["source"]).parent)
    if not (ddir / "meta.json").is_file():
        origin = f" (imported from {ck['imported_from']})" if ck.get("imported_from") else ""
        raise ValueError(f"{path}{origin} names no prepared data to validate on ({ddir} has no meta.json): eval "
                         "needs the run's training data; for an imported model, run lm-evaluation-harness on it")
    val = TokenDataset(ddir, "val")
    result: dict[str, Any] = {"checkpoint": str(path), "step": ck["step"]}
    result.update(validation(model, val, bytes_per_token(ddir, val), batches))
    for f, items in mc.items():
        result[f"mc:{f.stem}"] = multiple_choice(model, tok, items)
    if END in tok.special:
        result["task_accuracy"] = task.accuracy(model, tok)
    result["samples"] = samples(model, tok, val)
    log(f"{path}: val loss {result['val_loss']:.4f}, perplexity {result['perplexity']:.2f}, "
        f"{result['bits_per_byte']:.3f} bits/byte")
    return result


def markdown(results: list[dict[str, Any]]) -> str:
    """One column per checkpoint, one row per metric; then each checkpoint's samples."""
    rows = ["val_loss", "perplexity", "bits_per_byte", "task_accuracy"]
    rows += sorted({k for r in results for k in r if k.startswith("mc:")})
    lines = ["| metric | " + " | ".join(r["checkpoint"] for r in results) + " |",
             "| --- |" + " --- |" * len(results)]
    for key in rows:
        cells = []
        for r in results:
            v = r.get(key)
            cells.append("" if v is None else f"{v['acc_norm']:.3f} (acc {v['acc']:.3f})" if isinstance(v, dict)
                         else f"{v:.4f}")
        if any(cells):
            lines.append(f"| {key} | " + " | ".join(cells) + " |")
    for r in results:
        lines += ["", f"Samples of {r['checkpoint']}:", ""]
        lines += [f"- {s['prompt']!r} -> {s['continuation']!r}" for s in r["samples"]]
    return "\n".join(lines) + "\n"


def run_eval(paths: list[Path], mc_files: list[Path], out: Path, batches: int = 20, device: str = "auto",
             log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Evaluate one or two checkpoints; write out (JSON) and out with .md (the table); print the table."""
    for f in mc_files:
        if not f.is_file():
            raise FileNotFoundError(f"--mc: no file {f}")
    mc = {f: read_choices(f) for f in mc_files}  # every file checked before a model is loaded
    results = [evaluate_checkpoint(p, mc, batches, device, log) for p in paths]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    table = markdown(results)
    out.with_suffix(".md").write_text(table)
    log(table)
    return results
