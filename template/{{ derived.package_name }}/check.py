"""`check`: the roadmap's micro-experiments, each measured against its expected output.

checks.yml (at the repository root, rendered from llm-blueprint's tracks/checks.yml for this track and budget)
says, for every check, the roadmap step it belongs to, what it measures and, per figure, the expected value
with its tolerance and the reason for both: a formula (ln(vocab_size) for the initial loss), a value measured
over several seeds with the spread they showed, or a reference figure with its source. An experiment is the
code that measures: a function of a Context registered with `@experiment` under its check's name, by the
module it checks (the core's are at the end of this file, a capability's in its own module). This module
runs experiments, judges every figure (PASS, or FAIL with the gap and the file and function most likely at
fault), writes runs/checks/<name>.json and prints a table at the end.

    check list                 one line per check: name, step, about how long, fast or not
    check run NAME [NAME ...]  run some checks
    check all [--fast]         run every check (or only the fast ones, as the tests do)

The model experiments use the tiny config's shapes (configs/tiny.yml) and random token ids, so they need no data
and take a second; the training experiments read the built-in Shakespeare, prepared once into runs/checks/data/.
Everything is seeded: the same machine gives the same numbers.
"""

# About 500 lines, more than the 400 or so of the other modules: the runner and the core's own experiments stay in
# one file, so a reader finds what `check` measures, and how, in one place.

from __future__ import annotations

import argparse
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import yaml

from .cli import command, load_package
from .checkpoint import write_json
from .config import COMMAND, REPO_ROOT, load_config
from .data import SourceSpec, TokenDataset, iter_documents, prepare, split_documents
from .decoding import KVCache, SamplingParams, continue_ids
from .model import GPT, GPTConfig
from .tokenizer import BPETokenizer

EXPECTATIONS = REPO_ROOT / "checks.yml"
RESULTS = Path("runs") / "checks"
SEED = 1337
SHARED_DATA = RESULTS / "data"  # prepared corpora reused by every check and every run


@dataclass
class Figure:
    """One measured number and what it should be: `expected` ± `tolerance` (a fraction of it when
    `relative`), at most `at_most`, at least `at_least`, or `shown` only (compared, never judged)."""

    name: str
    label: str
    text: str  # the expectation in words, e.g. "0 exactly", "at most 1e-06", "ln(vocab_size) ± 0.05"
    basis: str  # formula | measured | reference | estimate
    reason: str
    expected: float | None = None  # None with a formula or an estimate: the experiment computes it
    tolerance: float = 0.0
    relative: bool = False
    at_most: float | None = None
    at_least: float | None = None
    formula: str | None = None
    shown: bool = False  # an estimate to compare with, not a pass/fail criterion

    def judge(self, measured: float, expected: float | None) -> tuple[bool, float]:
        """(passed, gap): the gap is how far `measured` lies outside the allowed range (0 inside)."""
        if self.shown:
            return True, 0.0
        if self.at_most is not None:
            return measured <= self.at_most, max(0.0, measured - self.at_most)
        if self.at_least is not None:
            return measured >= self.at_least, max(0.0, self.at_least - measured)
        allowed = self.tolerance * abs(expected) if self.relative else self.tolerance
        off = abs(measured - expected)
        return off <= allowed, max(0.0, off - allowed)

    def wanted(self, expected: float | None) -> str:
        """The expectation in words (`text`, rendered with checks.yml), with a computed value in front."""
        if self.shown:
            return f"~{expected:.4g} (estimate)"
        return f"{expected:.4g} = {self.text}" if self.formula is not None else self.text


@dataclass
class Check:
    name: str
    step: str  # the roadmap step's title
    title: str
    observe: str  # what the experiment does, in one sentence
    fast: bool
    seconds: int  # about how long it takes on a 2-core laptop CPU
    look_at: str  # on FAIL: the file and function most likely at fault
    figures: dict[str, Figure]
    setup: dict[str, Any] = field(default_factory=dict)  # the experiment's knobs (steps, tokens, ...)


def load_checks(path: Path = EXPECTATIONS) -> dict[str, Check]:
    """The checks of this repository, in roadmap order."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: it holds the checks' expected outputs")
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    checks = {}
    for name, c in raw.items():
        figures = {k: Figure(name=k, **f) for k, f in c.pop("figures").items()}
        checks[name] = Check(name=name, figures=figures, **c)
    return checks


def select(checks: dict[str, Check], names: list[str], fast_only: bool = False) -> list[Check]:
    """The named checks (all when `names` is empty), only the fast ones if asked; unknown names are an error."""
    unknown = [n for n in names if n not in checks]
    if unknown:
        raise ValueError(f"unknown check '{unknown[0]}' (run 'check list'; known: {', '.join(checks)})")
    chosen = [checks[n] for n in names] if names else list(checks.values())
    return [c for c in chosen if c.fast or not fast_only]


def format_list(checks: dict[str, Check]) -> str:
    rows = [f"{'check':<22} {'roadmap step':<34} {'time':>7}  speed"]
    for c in checks.values():
        rows.append(f"{c.name:<22} {c.step:<34} {_duration(c.seconds):>7}  {'fast' if c.fast else 'slow'}")
    return "\n".join(rows)


def _duration(seconds: float) -> str:
    return f"~{seconds:.0f} s" if seconds < 120 else f"~{seconds / 60:.0f} min"


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


Experiment = Callable[[Context], Outcome]
EXPERIMENTS: dict[str, Experiment] = {}


def experiment(measure: Experiment | None = None, *, check: str = "") -> Any:
    """Register the decorated function as the experiment of the check with its name (checks.yml); in a module
    where that name is taken, `@experiment(check="NAME")` names the check."""

    def register(fn: Experiment) -> Experiment:
        EXPERIMENTS[check or fn.__name__] = fn
        return fn

    return register(measure) if measure is not None else register


def experiment_for(check: Check) -> Experiment:
    """The registered experiment of `check`, once every module of the package has registered its own."""
    load_package()
    if check.name not in EXPERIMENTS:
        raise ValueError(f"check '{check.name}' has no experiment: no module of this package registers one with "
                         f"@experiment (checks.yml lists it; is the module that measures it missing?)")
    return EXPERIMENTS[check.name]


def run_check(check: Check, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run one experiment in runs/checks/<name>/ and judge its figures; the result is also written as JSON."""
    measure = experiment_for(check)
    work = RESULTS / check.name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.perf_counter()
    outcome = measure(Context(work=work, setup=check.setup, log=log))
    rows = []
    for fig in check.figures.values():
        measured = float(outcome.measured[fig.name])
        expected = outcome.expected.get(fig.name, fig.expected)
        passed, gap = fig.judge(measured, expected)
        rows.append({"figure": fig.name, "label": fig.label, "measured": measured, "expected": expected,
                     "wanted": fig.wanted(expected), "passed": passed, "gap": gap, "basis": fig.basis,
                     "reason": fig.reason, "judged": not fig.shown})
    result = {
        "check": check.name, "step": check.step, "title": check.title, "passed": all(r["passed"] for r in rows),
        "seconds": round(time.perf_counter() - started, 2), "figures": rows, "look_at": check.look_at,
        "notes": outcome.notes, "files": [str(p) for p in outcome.files],
    }
    write_json(RESULTS / f"{check.name}.json", result)
    return result


def format_result(result: dict[str, Any]) -> str:
    """Measured beside expected for every figure, the verdict, and on FAIL what to look at."""
    lines = [f"{result['check']} ({result['step']}): {result['title']}"]
    for r in result["figures"]:
        verdict = ("PASS" if r["passed"] else f"FAIL by {r['gap']:.3g}") if r["judged"] else "shown"
        lines.append(f"  {r['label']:<44} measured {r['measured']:<11.5g} expected {r['wanted']:<22} {verdict}")
    for key, value in result["notes"].items():
        lines.append(f"  {key}: {value}")
    for path in result["files"]:
        lines.append(f"  wrote {path}")
    if not result["passed"]:
        lines.append(f"  look at: {result['look_at']}")
    return "\n".join(lines)


def format_table(results: list[dict[str, Any]]) -> str:
    """One row per figure: check, expected, measured, verdict; then how many checks passed."""
    rows = [("check", "figure", "expected", "measured", "verdict")]
    for res in results:
        for r in res["figures"]:
            verdict = ("PASS" if r["passed"] else "FAIL") if r["judged"] else "shown"
            rows.append((res["check"], r["figure"], r["wanted"], f"{r['measured']:.5g}", verdict))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    text = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    text.insert(1, "  ".join("-" * w for w in widths))
    passed = sum(res["passed"] for res in results)
    return "\n".join(text + [f"{passed} of {len(results)} checks passed"])


def main(action: str, names: list[str], fast_only: bool = False, log: Callable[[str], None] = print) -> int:
    """The `check` command; returns the exit code (1 if any check failed)."""
    checks = load_checks()
    if action == "list":
        log(format_list(checks))
        return 0
    if action == "run" and not names:
        raise ValueError("check run needs at least one check name (see 'check list')")
    chosen = select(checks, names if action == "run" else [], fast_only)
    for check in chosen:  # a missing experiment stops the run before the first check, not after an hour
        experiment_for(check)
    results = []
    for i, check in enumerate(chosen, 1):
        log(f"[{i}/{len(chosen)}] {check.name}: {check.observe} ({_duration(check.seconds)})")
        results.append(run_check(check, log))
        log(format_result(results[-1]))
    if action == "all" or len(results) > 1:
        log("\n" + format_table(results))
    return 0 if all(r["passed"] for r in results) else 1


def _check_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["list", "run", "all"], help="list the checks, run some, or run all")
    p.add_argument("names", nargs="*", metavar="NAME", help="checks to run (with run)")
    p.add_argument("--fast", action="store_true", help="with all: only the fast checks (the ones the tests run)")


@command("check", help="run the roadmap's micro-experiments against expected outputs", flags=_check_flags,
         description="Each check measures a few figures with this repository's code and compares them\n"
                     "with checks.yml (expected value, tolerance and why): PASS, or FAIL with the gap\n"
                     "and where to look. Results go to runs/checks/<name>.json; exit code 1 if any\n"
                     "fails.\n\n"
                     f"examples:\n  {COMMAND} check list\n  {COMMAND} check run model_causality\n"
                     f"  {COMMAND} check all --fast")
def check_command(args: argparse.Namespace) -> int:
    return main(args.action, args.names, args.fast)


# -- the experiments' shared helpers, then the core's experiments ---------------------------------------------

def quiet(*args: Any, **kwargs: Any) -> None:
    """A log that shows nothing (for the steps an experiment runs that would print)."""


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


def run_losses(run: Path) -> dict[int, float]:
    """The training loss of a run by step, from its metrics.jsonl."""
    from .tracking import read_metrics

    return {r["step"]: r["loss"] for r in read_metrics(run / "metrics.jsonl") if "loss" in r}


def prepared_passages(ctx: Context, more: dict[str, str] | None = None, **options: Any) -> tuple[Path, list[Path]]:
    """ctx.setup['documents'] passages of the plays (ctx.setup['chars'] characters each) and the `more` files
    (name: text) written to ctx.work/corpus/, then prepared (`options` go to prepare): (prepared, files)."""

    folder = ctx.work / "corpus"
    folder.mkdir()
    files = []
    for i, doc in enumerate(iter_documents(SourceSpec("shakespeare", None))):
        if i == ctx.setup["documents"]:
            break
        files.append(folder / f"play-{i:02d}.txt")
        files[-1].write_text(doc.text[: ctx.setup["chars"]], encoding="utf-8")
    for name, text in (more or {}).items():
        files.append(folder / name)
        files[-1].write_text(text, encoding="utf-8")
    out = prepare("files", str(folder / "*.txt"), ctx.setup["vocab_size"], ctx.work / "prepared", log=quiet,
                  workers=1, **options)
    return out, files


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


# Texts outside the plays' alphabet that every vocabulary must round-trip exactly.
PROBES = {
    "non_ascii": "Ünïcödé café — naïve Straße, Ελληνικά, русский, 日本語のテキスト, עברית, हिन्दी",
    "emoji": "emoji 😀👍🏽 family 👨‍👩‍👧 flags 🇫🇷🇯🇵 and ✨ sparkles",
    "code": "def f(x: int) -> int:\n\tif x != 0:  # note\r\n        return {'k': [x ** 2]}\n    return -1\n",
    "whitespace": "  \n\n\t \r\n   trailing   ",
}


@experiment
def tokenizer(ctx: Context) -> Outcome:
    """Train BPE on the plays' training documents; round-trip and compress the held-out ones."""
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


@experiment
def data_shards(ctx: Context) -> Outcome:
    """Decoding the shards gives every document back, each in exactly one split."""
    out, files = prepared_passages(ctx)
    train, val = decoded_documents(out, "train"), decoded_documents(out, "val")
    originals = [f.read_text(encoding="utf-8") for f in files]
    lost = [f.name for f, text in zip(files, originals) if (train + val).count(text) != 1]
    return Outcome({"documents_lost": len(lost), "documents_in_both_splits": len(set(train) & set(val))},
                   notes={"train / val documents": f"{len(train)} / {len(val)}", "lost": lost or "none"})


@experiment
def model_init_loss(ctx: Context) -> Outcome:
    """Before training, every next token is about equally likely: the loss is ln(vocab_size)."""
    model = tiny_model()
    V, T = model.config.vocab_size, model.config.block_size
    with torch.no_grad():
        _, loss = model(random_ids(V, (8, T)), random_ids(V, (8, T), seed=SEED + 1))
    return Outcome({"initial_loss": loss.item()}, expected={"initial_loss": math.log(V)}, notes={"vocab_size": V})


@experiment
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


@experiment
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


@experiment
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


@experiment
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


@experiment
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
    a, b = run_losses(straight), run_losses(resumed)
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


@experiment
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


@experiment
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


@experiment
def batched_decoding(ctx: Context) -> Outcome:
    """Greedy decoding of prompts of different lengths as one left-padded batch, against each prompt alone."""
    model, s = tiny_model(), ctx.setup
    prompts = [random_ids(model.config.vocab_size, (n,), seed=SEED + n).tolist() for n in s["lengths"]]
    params = SamplingParams(max_tokens=s["tokens"], temperature=0)
    together = continue_ids(model, prompts, params)
    alone = [continue_ids(model, [p], params)[0] for p in prompts]
    return Outcome({"differing_tokens": sum(a != b for x, y in zip(together, alone) for a, b in zip(x, y))},
                   notes={"prompts": f"lengths {s['lengths']}, {s['tokens']} new tokens each"})
