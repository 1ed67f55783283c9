"""The micro-experiments that `check` runs (check.py judges them against checks.yml).

Each experiment is a function of a Context (a scratch directory, the check's `setup` from checks.yml, a log)
that measures a few numbers with this repository's own code and returns them by figure name. Model
experiments use the tiny config's shapes (configs/tiny.yml) and random token ids, so they need no data and
take a second; the training experiments read the built-in Shakespeare, prepared once into runs/checks/data/.
Everything is seeded: the same machine gives the same numbers.
"""

from __future__ import annotations

import copy

import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .config import REPO_ROOT, load_config
from .data import TokenDataset, prepare
from .decoding import continue_ids
from .kvcache import KVCache
from .model import GPT, GPTConfig
from .sampling import SamplingParams
from .tokenizer import BPETokenizer

SEED = 1337
SHARED_DATA = Path("runs") / "checks" / "data"  # prepared corpora reused by every check and every run


@dataclass
class Context:
    work: Path  # runs/checks/<name>/, empty at the start
    setup: dict[str, Any]  # the check's knobs from checks.yml
    log: Callable[[str], None]


@dataclass
class Outcome:
    measured: dict[str, float]  # by figure name
    expected: dict[str, float] = field(default_factory=dict)  # figures whose expectation is computed here
    notes: dict[str, Any] = field(default_factory=dict)  # printed and saved beside the figures
    files: list[Path] = field(default_factory=list)  # pictures written next to the JSON


def quiet(*args: Any, **kwargs: Any) -> None:
    pass


def tiny_model(seed: int = SEED) -> GPT:
    """A freshly initialised model of the tiny config's shape, in eval mode."""
    torch.manual_seed(seed)
    return GPT(GPTConfig(**load_config("tiny").model)).eval()


def random_ids(vocab_size: int, shape: tuple[int, ...], seed: int = SEED) -> torch.Tensor:
    """Uniform random token ids of `shape` (int64)."""
    return torch.randint(0, vocab_size, shape, generator=torch.Generator().manual_seed(seed))


def shakespeare_slice(vocab_size: int, max_bytes: int | None) -> Path:
    """The built-in plays (the first max_bytes of them) prepared for vocab_size; prepared once, then reused."""
    suffix = f"-{max_bytes}b" if max_bytes else ""
    return prepare("shakespeare", None, vocab_size, SHARED_DATA / f"shakespeare-v{vocab_size}{suffix}",
                   max_bytes=max_bytes, log=quiet)


def decoded_documents(prepared: Path, split: str) -> list[str]:
    """The documents of a prepared split, decoded back to text (cut at the end-of-text tokens)."""
    tok = BPETokenizer.load(prepared / "tokenizer.json")
    ds = TokenDataset(prepared, split)
    ids = ds.read(0, len(ds)).tolist()
    docs, start = [], 0
    for i, t in enumerate(ids + [tok.eot_id]):
        if t == tok.eot_id:
            if i > start:
                docs.append(tok.decode(ids[start:i]))
            start = i + 1
    return docs


# -- tokenizer ---------------------------------------------------------------------------------------------

def tokenizer(ctx: Context) -> Outcome:
    """Train BPE on the plays' training documents; round-trip and compress the held-out ones."""
    from .sources import SourceSpec
    from .tokeval import PROBES, split_documents

    train_docs, held_out = split_documents(SourceSpec("shakespeare", None, max_bytes=ctx.setup["max_bytes"]))
    sizes = ctx.setup["vocab_sizes"]
    largest = BPETokenizer.train(train_docs, max(sizes), log=quiet)
    texts, text = held_out + list(PROBES.values()), "".join(held_out)
    measured, failed = {}, 0
    for v in sizes:
        tok = BPETokenizer(largest.merges[: v - 257])  # BPE is greedy: a smaller vocabulary is a prefix
        failed += sum(1 for t in texts if tok.decode(tok.encode_fast(t)) != t or tok.encode_fast(t) != tok.encode(t))
        measured[f"bytes_per_token_{v}"] = len(text.encode("utf-8")) / len(tok.encode_fast(text))
    measured["round_trip_failures"] = failed
    return Outcome(measured, notes={"held out": f"{len(held_out)} plays, {len(text.encode()) / 1e6:.2f} MB, plus "
                                                f"probes: {', '.join(PROBES)}"})


# -- data --------------------------------------------------------------------------------------------------

PLANTED = {  # one of each kind pii.py detects; the card passes Luhn, the IBAN mod 97
    "email": "ada.lovelace@example.org",
    "phone": "+44 20 7946 0958",
    "ip": "172.16.254.3",
    "card": "4111 1111 1111 1111",
    "iban": "GB82 WEST 1234 5698 7654 32",
    "secret": "AKIAIOSFODNN7EXAMPLE",
}


def _corpus(ctx: Context, pii: str) -> tuple[Path, list[Path]]:
    """Write ctx.setup['documents'] passages of the plays plus one document with PLANTED, then prepare them."""
    from .sources import SourceSpec, iter_documents

    folder = ctx.work / "corpus"
    folder.mkdir()
    files = []
    for i, doc in enumerate(iter_documents(SourceSpec("shakespeare", None))):
        if i == ctx.setup["documents"]:
            break
        files.append(folder / f"play-{i:02d}.txt")
        files[-1].write_text(doc.text[: ctx.setup["chars"]], encoding="utf-8")
    files.append(folder / "planted.txt")
    files[-1].write_text("Write to " + ", call ".join(PLANTED.values()) + " today.\n", encoding="utf-8")
    out = prepare("files", str(folder / "*.txt"), ctx.setup["vocab_size"], ctx.work / "prepared", pii=pii,
                  log=quiet, workers=1)
    return out, files


def data_pii(ctx: Context) -> Outcome:
    """A planted-PII document goes through prepare --pii redact: counted in report.json, absent from the shards."""
    out, _ = _corpus(ctx, "redact")
    counts = json.loads((out / "report.json").read_text())["pii"]["counts"]
    text = "".join(decoded_documents(out, "train") + decoded_documents(out, "val"))
    left = [kind for kind, value in PLANTED.items() if value in text]
    return Outcome({"pii_found": sum(counts.values()), "pii_left": len(left)},
                   notes={"counts": counts, "left in the shards": left or "none"})


def data_manifest(ctx: Context) -> Outcome:
    """manifest.json records every input file's sha256; meta.json records the manifest's own hash."""
    from .manifest import manifest_sha256

    out, files = _corpus(ctx, "report")
    manifest = json.loads((out / "manifest.json").read_text())
    recorded = {Path(i["path"]).name: i["sha256"] for s in manifest["sources"] for i in s["inputs"]}
    wrong = [f.name for f in files if recorded.get(f.name) != hashlib.sha256(f.read_bytes()).hexdigest()]
    meta = json.loads((out / "meta.json").read_text())
    if meta["manifest_sha256"] != manifest_sha256(manifest):
        wrong.append("meta.json manifest_sha256")
    return Outcome({"hash_mismatches": len(wrong), "inputs_recorded": len(recorded)},
                   expected={"inputs_recorded": len(files)}, notes={"mismatches": wrong or "none"})


def data_shards(ctx: Context) -> Outcome:
    """Decoding the shards gives every document back, each in exactly one split."""
    out, files = _corpus(ctx, "report")
    train, val = decoded_documents(out, "train"), decoded_documents(out, "val")
    originals = [f.read_text(encoding="utf-8") for f in files]
    lost = [f.name for f, text in zip(files, originals) if (train + val).count(text) != 1]
    return Outcome({"documents_lost": len(lost), "documents_in_both_splits": len(set(train) & set(val))},
                   notes={"train / val documents": f"{len(train)} / {len(val)}", "lost": lost or "none"})


# -- model -------------------------------------------------------------------------------------------------

def model_init_loss(ctx: Context) -> Outcome:
    """Before training, every next token is about equally likely: the loss is ln(vocab_size)."""
    model = tiny_model()
    V, T = model.config.vocab_size, model.config.block_size
    with torch.no_grad():
        _, loss = model(random_ids(V, (8, T)), random_ids(V, (8, T), seed=SEED + 1))
    return Outcome({"initial_loss": loss.item()}, expected={"initial_loss": math.log(V)}, notes={"vocab_size": V})


def model_causality(ctx: Context) -> Outcome:
    """Change the token in the middle: the logits before it must not move, those from it on must."""
    model = tiny_model()
    V, T = model.config.vocab_size, model.config.block_size
    x = random_ids(V, (2, T))
    y = x.clone()
    t = T // 2
    y[:, t] = (y[:, t] + 1) % V
    with torch.no_grad():
        a, _ = model(x)  # (2, T, V)
        b, _ = model(y)
    return Outcome({"earlier_logits_change": (a[:, :t] - b[:, :t]).abs().max().item(),
                    "later_logits_change": (a[:, t:] - b[:, t:]).abs().max().item()},
                   notes={"changed position": f"{t} of {T}"})


def model_kv_cache(ctx: Context) -> Outcome:
    """Logits of a prompt plus tokens fed one by one through the KV cache equal one full forward pass."""
    model = tiny_model()
    T = model.config.block_size
    x = random_ids(model.config.vocab_size, (2, T))
    half = T // 2
    with torch.no_grad():
        full, _ = model(x)  # (2, T, V)
        cache = KVCache.for_model(model.config, 2)
        pieces = [model(x[:, :half], cache=cache)[0]]
        pieces += [model(x[:, i : i + 1], cache=cache)[0] for i in range(half, T)]
    return Outcome({"max_difference": (torch.cat(pieces, dim=1) - full).abs().max().item()},
                   notes={"positions": f"{half} as a prompt, then {T - half} one at a time"})


# -- optimisation and training -----------------------------------------------------------------------------

def lr_schedule(ctx: Context) -> Outcome:
    """The tiny config's schedule: the peak at the end of warmup, lr * min_lr_ratio at the end, no rise between."""
    from .train import lr_at

    t = load_config("tiny").train
    curve = [lr_at(s, t) for s in range(t.max_steps + 1)]
    decay = curve[t.warmup_steps - 1 :]
    return Outcome({"peak_fraction": curve[t.warmup_steps - 1] / t.lr, "final_fraction": curve[-1] / t.lr,
                    "rises_after_peak": sum(b > a for a, b in zip(decay, decay[1:]))},
                   expected={"final_fraction": t.min_lr_ratio},
                   notes={"schedule": f"lr {t.lr:g}, warmup {t.warmup_steps}, {t.max_steps} steps"})


def training_overfit(ctx: Context) -> Outcome:
    """AdamW on one fixed batch of random tokens: the model must memorise it."""
    from .train import forward_loss, make_optimizer

    model = tiny_model().train()
    s, V, T = ctx.setup, model.config.vocab_size, model.config.block_size
    x, y = random_ids(V, (s["batch"], T)), random_ids(V, (s["batch"], T), seed=SEED + 1)
    opt = make_optimizer(model, 0.0, s["lr"], torch.device("cpu"))
    for _ in range(s["steps"]):
        loss = forward_loss(model, x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return Outcome({"final_loss": loss.item()},
                   notes={"batch": f"{s['batch']} x {T} random tokens, {s['steps']} steps at lr {s['lr']:g}"})


def _losses(run: Path) -> dict[int, float]:
    from .tracking import read_metrics

    return {r["step"]: r["loss"] for r in read_metrics(run / "metrics.jsonl") if "loss" in r}


def training_resume(ctx: Context) -> Outcome:
    """Train straight through; restart a copy of the mid-run checkpoint with --resume: the same losses."""
    from .checkpoint import HISTORY
    from .train import train

    s = ctx.setup
    data = shakespeare_slice(load_config("tiny").model["vocab_size"], s["max_bytes"])
    cfg = load_config("tiny", overrides={"data": {"dir": str(data)}, "train": {
        "max_steps": s["steps"], "eval_interval": s["stop_at"], "eval_batches": 2, "precision": "fp32"}})
    straight = ctx.work / "straight"
    train(cfg, out_dir=straight, device="cpu", log=quiet)
    resumed = ctx.work / "resumed"  # the run as it was when stopped at its step-`stop_at` checkpoint
    shutil.copytree(straight / HISTORY / f"step-{s['stop_at']:06d}", resumed)
    train(cfg, out_dir=resumed, device="cpu", resume=True, log=quiet)
    a, b = _losses(straight), _losses(resumed)
    gap = max(abs(a[k] - b[k]) for k in b) if b and set(b) <= set(a) else math.inf
    return Outcome({"resumed_from_step": min(b, default=1) - 1, "loss_difference": gap},
                   notes={"losses": {k: [a.get(k), b[k]] for k in sorted(b)}})


def unigram_entropy(prepared: Path) -> float:
    """Entropy (nats per token) of the training tokens' frequencies: the loss of a model that knows only how
    often each token occurs and nothing of its context (Shannon, 1948)."""
    ds = TokenDataset(prepared, "train")
    counts = np.bincount(ds.read(0, len(ds)))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def training_1m(ctx: Context) -> Outcome:
    """About a million tokens of the plays through the laptop-CPU preset's model (fp32), then evaluate it."""
    from .config import data_dir
    from .tracking import plot_losses
    from .train import train

    s, p = ctx.setup, ctx.setup["preset"]  # the laptop-CPU preset's shapes and batch, whatever this budget
    steps = math.ceil(s["tokens"] / p["batch_tokens"])
    shape = {k: p[k] for k in ("vocab_size", "block_size", "n_layer", "n_head", "n_kv_head", "n_embd", "ffn_hidden")}
    cfg = load_config("tiny", overrides={"model": shape, "data": {"max_bytes": None}, "train": {
        "micro_batch_size": p["micro_batch_size"], "batch_tokens": p["batch_tokens"], "lr": p["lr"],
        "warmup_steps": s["warmup_steps"], "max_steps": steps, "eval_interval": s["eval_interval"],
        "eval_batches": s["eval_batches"], "precision": "fp32"}})
    run = ctx.work / "run"
    summary = train(cfg, out_dir=run, device="cpu", seed=s["seed"], log=ctx.log)
    unigram = unigram_entropy(data_dir(cfg))
    estimate = p["flops_per_token"] * steps * p["batch_tokens"] / (s["peak_tflops_fp32"] * 1e12 * s["mfu"])
    png = plot_losses(run / "metrics.jsonl", ctx.work.parent / f"{ctx.work.name}.png",
                      "check training_1m: the validation loss must end below the unigram entropy", band=(0.0, unigram))
    return Outcome({"below_unigram": unigram - summary["val_loss_after"], "wall_time_s": summary["time_s"]},
                   expected={"wall_time_s": estimate}, files=[png],
                   notes={"validation": f"loss {summary['val_loss_after']:.4f} nats/token, "
                                        f"{summary['val_bpb_after']:.4f} bits/byte; "
                                        f"unigram entropy {unigram:.4f} nats/token",
                          "steps": f"{steps} x {p['batch_tokens']:,} tokens, fp32", "run": str(run)})


def mixed_precision(ctx: Context) -> Outcome:
    """The same batch in fp32 and under bf16 autocast: nearly the same loss and gradient direction."""
    from .precision import autocast

    model = tiny_model().train()
    V, T = model.config.vocab_size, model.config.block_size
    x, y = random_ids(V, (4, T)), random_ids(V, (4, T), seed=SEED + 1)
    losses, grads = [], []
    for precision in ("fp32", "bf16"):
        with autocast(precision, torch.device("cpu")):
            _, loss = model(x, y)
        loss.backward()
        losses.append(loss.item())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
        model.zero_grad(set_to_none=True)
    cosine = torch.nn.functional.cosine_similarity(grads[0], grads[1], dim=0).item()
    return Outcome({"loss_difference": abs(losses[1] - losses[0]), "gradient_cosine": cosine})


def sampling(ctx: Context) -> Outcome:
    """Decoding with a seed: the same seed gives the same tokens, another seed others."""
    model = tiny_model()
    prompt = random_ids(model.config.vocab_size, (1, 8)).tolist()

    def sample(seed: int) -> torch.Tensor:
        params = SamplingParams(max_tokens=ctx.setup["tokens"], temperature=0.8, top_k=50, seed=seed)
        return torch.tensor(continue_ids(model, prompt, params)[0])

    first = sample(1)
    return Outcome({"same_seed_differences": (sample(1) != first).sum().item(),
                    "other_seed_differences": (sample(2) != first).sum().item()})


def batched_decoding(ctx: Context) -> Outcome:
    """Greedy decoding of prompts of different lengths as one left-padded batch, against each prompt alone."""
    model, s = tiny_model(), ctx.setup
    prompts = [random_ids(model.config.vocab_size, (n,), seed=SEED + n).tolist() for n in s["lengths"]]
    params = SamplingParams(max_tokens=s["tokens"], temperature=0)
    together = continue_ids(model, prompts, params)
    alone = [continue_ids(model, [p], params)[0] for p in prompts]
    return Outcome({"differing_tokens": sum(a != b for x, y in zip(together, alone) for a, b in zip(x, y))},
                   notes={"prompts": f"lengths {s['lengths']}, {s['tokens']} new tokens each"})


def quantization(ctx: Context) -> Outcome:
    """int8 and int4 weight-only quantization of a fresh tiny model: its logits stay close to fp32's."""
    from .quantize import pack_int4, quantize_int4, quantize_model, unpack_int4, weight_bytes

    model, g = tiny_model(), ctx.setup["group_size"]
    x = random_ids(model.config.vocab_size, (2, model.config.block_size))
    with torch.no_grad():
        ref, _ = model(x)
    measured: dict[str, float] = {}
    for bits, group in ((8, None), (4, g)):
        quantized = copy.deepcopy(model)
        names = quantize_model(quantized, bits, group)
        with torch.no_grad():
            got, _ = quantized(x)
        measured[f"int{bits}_logit_error"] = ((got.float() - ref).abs().max() / ref.abs().max()).item()
        if bits == 8:
            measured["int8_weight_share"] = weight_bytes(quantized, names) / weight_bytes(model, names)
    w = next(m.weight for m in model.modules() if isinstance(m, torch.nn.Linear) and m.in_features % g == 0)
    q, _, _ = quantize_int4(w.detach(), g)
    measured["int4_pack_mismatches"] = (unpack_int4(pack_int4(q)) != q).sum().item()
    return Outcome(measured)


def export_hf(ctx: Context) -> Outcome:
    """A fresh tiny model converted to its transformers class (what `export --format hf` writes): same logits."""
    from .export import hf_architecture, to_hf_model

    model = tiny_model()
    hf = to_hf_model(model, eot_id=model.config.vocab_size - 1)
    x = random_ids(model.config.vocab_size, (2, model.config.block_size))
    with torch.no_grad():
        difference = (model(x)[0] - hf(x).logits).abs().max().item()
    return Outcome({"max_logit_difference": difference}, notes={"transformers_class": hf_architecture(model.config)})


def distributed(ctx: Context) -> Outcome:
    """The tiny config for a few steps in 2 gloo processes (torchrun) and in 1 process: the same losses."""
    from .train import train

    s = ctx.setup
    data = shakespeare_slice(load_config("tiny").model["vocab_size"], s["max_bytes"])
    config = ctx.work / "ddp.yml"
    config.write_text(f"extends: tiny\ntrain:\n  max_steps: {s['steps']}\n  eval_batches: 2\n  precision: fp32\n"
                      f"data:\n  dir: {data.resolve()}\n")
    train(load_config(config), out_dir=ctx.work / "one", device="cpu", log=quiet)
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    ctx.log("  starting 2 processes with torchrun (gloo)...")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", __package__, "train", "--config", str(config), "--device", "cpu",
                        "--out", str(ctx.work / "two")], check=False, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        last = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode
        raise RuntimeError(f"torchrun failed: {last}")
    found = re.search(r"x (\d+) proc", r.stdout)
    a, b = _losses(ctx.work / "one"), _losses(ctx.work / "two")
    return Outcome({"processes": int(found.group(1)) if found else 0,
                    "loss_difference": max(abs(a[k] - b[k]) for k in a) if a.keys() == b.keys() else math.inf})


def lora_init(ctx: Context) -> Outcome:
    """LoRA on a fresh tiny model: nothing changes at init (B = 0); merged equals unmerged once B is not zero."""
    from .lora import LoRAConfig, apply_lora, lora_layers, set_merged

    model = tiny_model()
    x = random_ids(model.config.vocab_size, (2, model.config.block_size))
    with torch.no_grad():
        base = model(x)[0]
        apply_lora(model, LoRAConfig())
        at_init = model(x)[0]
        for layer in lora_layers(model).values():  # as after training
            layer.lora_B.normal_(0, 0.05, generator=torch.Generator().manual_seed(SEED))
        unmerged = model(x)[0]
        set_merged(model, True)
        merged = model(x)[0]
    return Outcome({"init_difference": (at_init - base).abs().max().item(),
                    "merged_difference": (merged - unmerged).abs().max().item()},
                   notes={"adapted_change": f"{(unmerged - base).abs().max().item():.3g} (the random B matter)"})


def sft_task(ctx: Context) -> Outcome:
    """Pretrain the tiny config on the plays, then SFT with `finetune`'s defaults on the built-in task: held-out
    exact match before/after."""
    from .finetune import FinetuneConfig, finetune
    from .train import train

    s = ctx.setup
    data = shakespeare_slice(load_config("tiny").model["vocab_size"], None)
    cfg = load_config("tiny", overrides={"train": {"max_steps": s["pretrain_steps"]}, "data": {"dir": str(data)}})
    train(cfg, out_dir=ctx.work / "pretrained", device="cpu", seed=s["seed"], log=quiet)
    summary = finetune(FinetuneConfig(), ctx.work / "pretrained" / "ckpt.pt",  # the defaults, config.FINETUNE
                       out_dir=ctx.work / "sft", device="cpu", seed=s["seed"], log=ctx.log)
    return Outcome({"accuracy_before": summary["task_accuracy_before"],
                    "accuracy_after": summary["task_accuracy_after"]},
                   notes={"finetune_s": summary["time_s"], "run": str(ctx.work / "sft")})


def first_sample(ctx: Context) -> Outcome:
    """The quick start (prepare, train --config tiny, generate): its sample's share of words of the training text."""
    from .first_sample import run_first_sample

    figures, notes = run_first_sample(ctx.work, ctx.setup, ctx.log)
    return Outcome(figures, notes=notes)

EXPERIMENTS: dict[str, Callable[[Context], Outcome]] = {
    "data_manifest": data_manifest, "data_pii": data_pii, "tokenizer": tokenizer, "data_shards": data_shards,
    "model_causality": model_causality, "model_kv_cache": model_kv_cache, "model_init_loss": model_init_loss,
    "training_overfit": training_overfit, "lr_schedule": lr_schedule, "training_resume": training_resume,
    "training_1m": training_1m, "mixed_precision": mixed_precision, "distributed": distributed, "sampling": sampling,
    "quantization": quantization, "batched_decoding": batched_decoding, "lora_init": lora_init, "sft_task": sft_task,
    "export_hf": export_hf, "first_sample": first_sample,
}
