"""Supervised fine-tuning (SFT) of a pretrained checkpoint on chat conversations; LoRA trains adapters only.

`finetune --method sft|lora [--data FILE]` reads conversations from JSONL (one {"messages": [{role, content},
...]} per line; every 20th conversation is held out for validation) or, without --data, the built-in task
(task.py). Each conversation is one row of the batch (rows padded to the longest, never packed together, so
no conversation attends to another), and the loss counts the assistant's tokens only: the other targets are
-100, which cross-entropy skips (chat_format.render says which tokens are trained).

The loop is train.py's: the same optimizer step, schedule, evaluation, checkpoints, Ctrl-C and --resume,
progress bar, metrics.jsonl and loss.png. What differs is set up here: the model starts from the pretrained
weights with the chat tokens added to its embedding, the data are conversation rows, and the run reports the
built-in task's exact-match accuracy before and after. A LoRA run also writes its adapters on their own, in
PEFT's layout (adapter/, see lora.py); its checkpoint holds the frozen weights and the adapters, for --resume.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path
from typing import Any, Callable

import torch

from . import distributed as D
from . import task
from .chat_format import chat_tokenizer, check_messages, render
from .checkpoint import CHECKPOINT, load_checkpoint, load_weights
from .config import Config, DataConfig, TrainConfig, derived_values, format_derived
from .faults import sigterm_as_ctrl_c
from .lock import run_lock
from .model import GPT
from .precision import LossScaler, resolve_precision
from .tokenizer import BPETokenizer
from .train import Run, build_model, make_optimizer, restore, train_loop

IGNORE = -100  # F.cross_entropy's ignore_index: a target that adds nothing to the loss or its gradient
VAL_EVERY = 20  # --data: every 20th conversation is held out for validation


@dataclasses.dataclass
class FinetuneConfig:
    method: str = "sft"  # sft (every weight trains) | lora (adapters only) | dpo (preference pairs)
    data: str | None = None  # JSONL of conversations; None = the built-in task
    examples: int = 20_000  # built-in task: training conversations generated
    max_steps: int = 400
    lr: float = 1e-3
    warmup_steps: int = 20
    micro_batch_size: int = 32
    eval_interval: int = 100
    lora_r: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ()  # () = every Linear in the blocks


class ConversationRows:
    """Conversations as (ids, trained) rows; `batch` has TokenDataset.batch's signature for train.py's loop."""

    def __init__(self, rows: list[tuple[list[int], list[bool]]], block_size: int, pad_id: int):
        self.rows = [(ids[:block_size + 1], trained[:block_size + 1]) for ids, trained in rows]
        self.pad_id = pad_id

    def __len__(self) -> int:
        return len(self.rows)

    def mean_length(self) -> float:
        return sum(len(ids) - 1 for ids, _ in self.rows) / len(self.rows)

    def batch(self, batch_size: int, block_size: int, gen: torch.Generator, rank: int = 0, world_size: int = 1
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Random rows: x (B, T) ids, y (B, T) next ids, IGNORE where not trained or padded; T = longest row."""
        pick = torch.randint(len(self.rows), (batch_size * world_size,), generator=gen)[rank::world_size].tolist()
        return self.stack([self.rows[i] for i in pick])

    def stack(self, rows: list[tuple[list[int], list[bool]]]) -> tuple[torch.Tensor, torch.Tensor]:
        """rows padded into x (B, T) and y (B, T), T the longest row."""
        T = max(len(ids) for ids, _ in rows) - 1
        x = torch.full((len(rows), T), self.pad_id, dtype=torch.long)
        y = torch.full((len(rows), T), IGNORE, dtype=torch.long)
        for b, (ids, trained) in enumerate(rows):
            n = len(ids) - 1
            x[b, :n] = torch.tensor(ids[:-1])
            y[b, :n] = torch.tensor([t if keep else IGNORE for t, keep in zip(ids[1:], trained[1:])])
        return x, y


def read_conversations(path: Path) -> list[list[dict[str, str]]]:
    """The `messages` of every line of a JSONL file; a one-line ValueError naming the line that is wrong."""
    if not path.is_file():
        raise FileNotFoundError(f"--data: no file {path}")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not JSON ({e.msg})") from None
        out.append(check_messages(record.get("messages") if isinstance(record, dict) else None, f"{path}:{n}"))
    if len(out) < 2:
        raise ValueError(f"{path}: needs at least 2 conversations (one is held out for validation)")
    return out


def conversations(fc: FinetuneConfig) -> tuple[list, list]:
    """(train, validation) conversations: from --data, or the built-in task's train and held-out splits."""
    if fc.data is None:
        train = [task.conversation(p, a) for p, a in task.train_examples(fc.examples)]
        return train, [task.conversation(p, a) for p, a in task.held_out()]
    convs = read_conversations(Path(fc.data))
    return ([c for i, c in enumerate(convs) if i % VAL_EVERY != VAL_EVERY - 1],
            [c for i, c in enumerate(convs) if i % VAL_EVERY == VAL_EVERY - 1])


def add_chat_tokens(model: GPT, chat: BPETokenizer, cfg: Config, d: D.Dist, seed: int) -> GPT:
    """A copy of `model` whose embedding (and output head) has rows for `chat`'s new special tokens.

    The new rows keep the fresh model's random init (N(0, 0.02)): each special token gets its own direction.
    (Starting them from an existing token, e.g. "<|end|>" from "end", ties their output scores, and LoRA, which
    never trains these rows, then cannot tell the turn end from the word.)
    """
    cfg.model["vocab_size"] = max(model.config.vocab_size, chat.vocab_size)
    grown = build_model(cfg, d, seed)
    state = model.state_dict()
    with torch.no_grad():
        for name in ("tok_emb.weight", "lm_head.weight"):
            new = grown.state_dict()[name].clone()
            new[:state[name].size(0)] = state[name]
            state[name] = new
    grown.load_state_dict(state)
    return grown


def config_from_checkpoint(ck: dict[str, Any], fc: FinetuneConfig, name: str, world_size: int) -> Config:
    """The config stored in a checkpoint, with fine-tuning's schedule and batch (one micro-batch per process)."""
    c = ck["config"]
    block = c["model"]["block_size"]
    train = {**c["train"], "lr": fc.lr, "max_steps": fc.max_steps, "warmup_steps": fc.warmup_steps,
             "eval_interval": fc.eval_interval, "micro_batch_size": fc.micro_batch_size,
             "batch_tokens": fc.micro_batch_size * block * world_size, "eval_batches": 4}
    return Config(name=name, path=c["path"], model=dict(c["model"]), train=TrainConfig(**train),
                  data=DataConfig(**c["data"]))


def lora_config(fc: FinetuneConfig) -> Any:
    from .lora import LoRAConfig

    return LoRAConfig(r=fc.lora_r, alpha=fc.lora_alpha, dropout=fc.lora_dropout, target_modules=fc.lora_targets)


def starting_model(fc: FinetuneConfig, base: Path, run_dir: Path, resume: bool, d: D.Dist, seed: int
                   ) -> tuple[Config, GPT, BPETokenizer, dict[str, Any], dict[str, Any] | None]:
    """(config, model, chat tokenizer, pretraining meta, checkpoint to resume or None).

    Fresh: the pretrained weights of `base` plus the chat tokens. --resume: the fine-tuning run's own
    checkpoint, LoRA layers included, whose optimizer and step train.restore then loads.
    """
    from .generate import load_model

    pretrained, tok, base_ck = load_model(base, "cpu")
    chat = chat_tokenizer(tok)
    meta = {**base_ck["tokenizer"]["meta"], "vocab_size": chat.vocab_size,
            "prepared_dir": str(Path(base_ck["tokenizer"]["source"]).parent)}  # for eval's validation text
    if resume:
        path = run_dir / CHECKPOINT
        if not path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {path}")
        ck = load_checkpoint(path)
        cfg = config_from_checkpoint(ck, fc, run_dir.name, d.world_size)
        model = build_model(cfg, d, seed)
        if fc.method == "lora":
            from .lora import apply_lora

            apply_lora(model, lora_config(fc))
        load_weights(model, path, ck)
        return cfg, model, chat, meta, ck
    cfg = config_from_checkpoint(base_ck, fc, run_dir.name, d.world_size)
    model = add_chat_tokens(pretrained.to(d.device), chat, cfg, d, seed)
    if fc.method == "lora":
        from .lora import apply_lora

        apply_lora(model, lora_config(fc))
    return cfg, model, chat, meta, None


def set_up(fc: FinetuneConfig, base: Path, run_dir: Path, resume: bool, d: D.Dist, seed: int,
           say: Callable[..., None]) -> tuple[Run, BPETokenizer]:
    """A train.Run over conversation rows, starting from the pretrained model (or this run's checkpoint)."""
    cfg, raw, chat, meta, ck = starting_model(fc, base, run_dir, resume, d, seed)
    block = cfg.model["block_size"]
    model = D.parallelize(raw, d, compile=False)
    if fc.method == "dpo":
        from .dpo import DPOObjective, pair_rows

        train_ds, val_ds = pair_rows(chat, fc.data, block)
        model = DPOObjective(model, IGNORE)  # the loop's loss becomes DPO's; checkpoints still hold `raw`
    else:
        train_convs, val_convs = conversations(fc)
        train_ds = ConversationRows([render(chat, c) for c in train_convs], block, chat.eot_id)
        val_ds = ConversationRows([render(chat, c) for c in val_convs], block, chat.eot_id)
    precision = resolve_precision(cfg.train.precision, d.device)
    dv = derived_values(cfg, d.world_size, raw.num_params(), raw.flops_per_token())
    # Rows are shorter than block_size: count the tokens they hold, for tokens/s and the printed batch.
    dv["tokens_per_step"] = cfg.train.batch_tokens = round(fc.micro_batch_size * d.world_size * train_ds.mean_length())
    run = Run(cfg=cfg, d=d, dir=run_dir, raw=raw, model=model, opt=make_optimizer(raw, cfg.train.weight_decay, fc.lr, d.device),
              scaler=LossScaler(precision), gen=torch.Generator().manual_seed(seed), precision=precision, seed=seed,
              data_dir=run_dir, meta=meta, train_ds=train_ds, val_ds=val_ds,
              val_bytes_per_token=answer_bytes_per_token(chat, val_ds), derived=dv,
              micro_batch=fc.micro_batch_size, accum=1)
    if ck is not None:
        restore(run, ck)
        say(f"resuming from {run.ckpt_path} at step {run.step}")
    if d.is_master:
        run_dir.mkdir(parents=True, exist_ok=True)
        chat.save(run_dir / "tokenizer.json")
    say(format_derived(cfg, dv, d.world_size, str(d.device), precision))
    say(f"  {'data':<9} {fc.data or 'built-in task (task.py)'}: {len(train_ds):,} train / {len(val_ds):,} validation "
        f"conversations, {train_ds.mean_length():.1f} tokens each on average; method {fc.method}")
    return run, chat


def answer_bytes_per_token(tok: BPETokenizer, ds: ConversationRows) -> float:
    """Mean UTF-8 bytes per trained token (special tokens count 0), for bits per byte of the answers."""
    n_bytes = n_tokens = 0
    for ids, trained in ds.rows:
        for i, keep in zip(ids, trained):
            if keep:
                n_tokens += 1
                n_bytes += 0 if i >= tok.eot_id else len(tok.token_bytes(i))
    return n_bytes / max(n_tokens, 1)


def finetune(fc: FinetuneConfig, base: Path, *, out_dir: str | Path | None = None, device: str = "auto",
             resume: bool = False, seed: int = 1337, log: Callable[..., None] = print) -> dict[str, Any]:
    """Fine-tune checkpoint `base` per `fc`; returns the summary (also printed), with the built-in task's
    held-out accuracy before and after when no --data is given."""
    d = D.setup(device)
    run_dir = Path(out_dir) if out_dir else base.parent.parent / f"{base.parent.name}-{fc.method}"
    try:
        with run_lock(run_dir) if d.is_master else contextlib.nullcontext():
            say = log if d.is_master else (lambda *a, **k: None)
            with sigterm_as_ctrl_c():
                run, chat = set_up(fc, base, run_dir, resume, d, seed, say)
                builtin = fc.data is None and d.is_master
                before = task.accuracy(run.raw, chat) if builtin else None
                summary = train_loop(run, say, append=resume)
                if fc.method == "lora" and d.is_master:
                    from .lora import save_adapter, trainable_share

                    trainable, total = trainable_share(run.raw)
                    summary["trainable_share"] = round(trainable / total, 5)
                    summary["adapter"] = str(save_adapter(run.raw, lora_config(fc), run_dir / "adapter", str))
                if fc.method == "dpo":
                    summary["reward_margin"] = run.model.margins.mean().item()  # of the last validation batch
                    say(f"DPO reward margin (chosen - rejected, validation): {summary['reward_margin']:.3f}")
                if builtin:
                    summary["task_accuracy_before"] = before
                    summary["task_accuracy_after"] = task.accuracy(run.raw, chat, log=say)
                    say(f"built-in task, exact match on {task.HELD_OUT} held-out prompts: "
                        f"{before:.1%} -> {summary['task_accuracy_after']:.1%}")
                if d.is_master:
                    (run_dir / "finetune.json").write_text(json.dumps(summary, indent=1) + "\n")
                return summary
    finally:
        D.cleanup(d)
