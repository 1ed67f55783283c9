"""Load a trained checkpoint and continue prompts with it (the batched decoding itself is in decoding.py).

The checkpoint (ckpt.pt) is loaded with weights_only=True (tensors and plain values only), the model is rebuilt
from the GPTConfig stored in it and filled from model.safetensors, and the tokenizer is the copy saved next
to the checkpoint by `train`.

`check run first_sample` asks whether the quick start's first sample looks like its corpus.

The quick start trains the tiny config on the built-in plays (`train --config tiny`) and samples from it
(`generate --prompt "ROMEO:" --seed 1`). A reader judges that sample by whether it reads like the plays: words
they know, in about the right places. The first of these can be counted, so this experiment counts it:

    corpus word share = (words of the sample that are also words of the training text) / (words of the sample)

- A word is a run of letters, with apostrophes only inside it (`[a-z]+('[a-z]+)*` on lowercased text):
  Shakespeare's "o'er" and "is't" stay whole, while quotation marks and the elisions' leading apostrophe
  ("'tis" -> "tis") fall off, the same way on both sides. Letters only: digits and punctuation are not what
  makes a sample read like English, and lowercasing forgives a model that writes a speaker's name in another case.
- Only the text after the prompt counts, so the prompt's own word (ROMEO) is not counted.
- Every occurrence counts (not each distinct word once): the measure is what share of the text a reader finds
  readable, and a sample that repeats one real word is still judged by the rest of its words.
- The training text is the decoded training split of the prepared data (validation plays excluded): the words
  the model could have learned.

What the numbers mean, measured on the plays with the tiny config's 2,048-token vocabulary: the held-out plays
themselves score 98 %. 200 tokens drawn uniformly at random score 37 to 42 % (seeds 1, 2, 3), and drawn by their
frequency in the plays (a model that learned token counts and nothing else) 49 to 60 %: short words ("a", "to",
"the") arise by chance, and many tokens are whole words. The quick start's model scores above 80 % (checks.yml
gives the figures per track). Whether the sentences make sense is not judged here.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from .check import Context, Outcome, experiment
from .checkpoint import CHECKPOINT, load_checkpoint, load_weights
from .cli import command, load_package, non_negative_float, positive_float, positive_int
from .config import COMMAND, Config, load_config
from .data import TokenDataset, ensure_data
from .decoding import SamplingParams, generate
from .devices import pick_device
from .model import GPT, GPTConfig
from .tokenizer import BPETokenizer


# Checkpoints in another format than ckpt.pt + model.safetensors (quantized weights, say) are read by the module that
# writes them, which registers the name of the file that marks such a folder and a function that loads it, and may
# register how a flag of its own picks the checkpoint a decoding command loads.
Loader = Callable[[Path, torch.device], tuple[GPT, BPETokenizer, dict]]
LOADERS: dict[str, Loader] = {}
CHECKPOINT_CHOICES: list[Callable[[argparse.Namespace, Path], Path]] = []


def find_checkpoint(run: str | Path | None = None, checkpoint: str | Path | None = None) -> Path:
    """--checkpoint PATH, else --run DIR/ckpt.pt (or DIR's file of a registered format), else the newest
    runs/*/ckpt.pt. A fine-tuning run that trained adapters keeps them in its ckpt.pt (for --resume) and writes
    the fine-tuned model as an ordinary checkpoint in DIR/merged/: that is the one to load."""
    load_package()  # the modules that register other checkpoint formats
    if checkpoint:
        path = Path(checkpoint)
    elif run:
        path = Path(run) / CHECKPOINT
        other = [Path(run) / name for name in LOADERS if (Path(run) / name).is_file()]
        if not path.is_file() and other:
            path = other[0]
    else:
        found = sorted(Path("runs").glob(f"*/{CHECKPOINT}"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise FileNotFoundError("no checkpoint found in runs/: train first, or pass --run/--checkpoint")
        path = found[-1]
    if not checkpoint and (path.parent / "merged" / CHECKPOINT).is_file():
        path = path.parent / "merged" / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    return path


def model_name(path: Path) -> str:
    """What a checkpoint is called (by `serve`, say): its run directory's name, e.g. tiny, or for a checkpoint of
    another format inside a run, run and folder, e.g. tiny-int8."""
    return f"{path.parent.parent.name}-{path.parent.name}" if path.name in LOADERS else path.parent.name


def load_model(path: Path, device: str = "auto") -> tuple[GPT, BPETokenizer, dict]:
    """The model (eval mode, on `device`), its tokenizer and the raw checkpoint dict."""
    dev = pick_device(device)
    load_package()  # the modules that register other checkpoint formats
    if path.name in LOADERS:
        return LOADERS[path.name](path, dev)
    ck = load_checkpoint(path)
    model = GPT(GPTConfig(**ck["model_config"]))
    load_weights(model, path, ck)
    model.to(dev).eval()
    tok_path = path.parent / ck["tokenizer"]["file"]
    if not tok_path.is_file():  # a checkpoint copied without its tokenizer: fall back to the prepared data
        tok_path = Path(ck["tokenizer"]["source"])
    tok = BPETokenizer.load(tok_path)
    trained = ck["tokenizer"]["meta"]["vocab_size"]  # the tokenizer the model was trained with
    if tok.vocab_size != trained:
        raise ValueError(f"tokenizer {tok_path} has {tok.vocab_size:,} tokens, but {path} was trained with a "
                         f"{trained:,}-token tokenizer: put that tokenizer.json beside the checkpoint")
    return model, tok, ck


def generate_texts(path: Path, prompts: list[str], params: SamplingParams, device: str = "auto",
                   on_text: Callable[[int, str], None] | None = None) -> list[str]:
    """Each prompt + its continuation, all prompts in one batch (decoding.py). Prompt i samples with seed + i,
    so the same seed gives the same texts on the same machine. on_text(i, text) streams prompt i's text: the
    prompt itself once the model has loaded (a load error comes alone), then its new text as it is decoded."""
    model, tok, _ = load_model(path, device)
    for i, prompt in enumerate(prompts if on_text is not None else []):
        on_text(i, prompt)
    # An empty prompt starts from the end-of-text token, i.e. "the beginning of a new document".
    ids = [tok.encode(p) if p else [tok.eot_id] for p in prompts]
    each = [params if params.seed is None else replace(params, seed=params.seed + i) for i in range(len(prompts))]
    seqs = generate(model, tok, ids, each, on_text=on_text)
    return [p + seq.stream.text for p, seq in zip(prompts, seqs)]


DEVICES = ["auto", "cpu", "cuda", "mps"]


def checkpoint_source(p: argparse.ArgumentParser, what: str) -> argparse._MutuallyExclusiveGroup:
    """--run DIR or --checkpoint PATH: the checkpoint a command reads (`what` it is; see find_checkpoint)."""
    src = p.add_mutually_exclusive_group()
    src.add_argument("--run", metavar="DIR", help=f"{what} run directory (default: the newest in runs/)")
    src.add_argument("--checkpoint", metavar="PATH", help=f"{what} checkpoint file")
    return src


def model_flags(p: argparse.ArgumentParser) -> None:
    """Which checkpoint to load, and where: the commands that decode (read by model_path)."""
    checkpoint_source(p, "the")
    p.add_argument("--device", choices=DEVICES, default="auto")


def sampling_flags(p: argparse.ArgumentParser, max_new_tokens: int = 200) -> None:
    """The fields of sampling.SamplingParams as flags (read by sampling_params)."""
    p.add_argument("--max-new-tokens", type=positive_int, default=max_new_tokens, metavar="N",
                   help=f"default: {max_new_tokens}")
    p.add_argument("--temperature", type=non_negative_float, default=0.8, metavar="T", help="0: greedy (default: 0.8)")
    p.add_argument("--top-k", type=positive_int, default=50, metavar="K", help="default: 50")
    p.add_argument("--top-p", type=positive_float, default=1.0, metavar="P", help="nucleus sampling (default: 1, off)")
    p.add_argument("--repetition-penalty", type=positive_float, default=1.0, metavar="R", help="default: 1, off")
    p.add_argument("--stop", action="append", default=[], metavar="TEXT",
                   help="end the text before this string (repeatable; \\n and \\t are understood)")
    p.add_argument("--seed", type=int, default=1337, help="default: 1337")


def model_path(args: argparse.Namespace) -> Path:
    """The checkpoint a decoding command loads: --checkpoint, --run or the newest, unless a registered flag
    chooses another beside it."""
    path = find_checkpoint(args.run, args.checkpoint)
    for choose in CHECKPOINT_CHOICES:
        path = choose(args, path)
    return path


def sampling_params(args: argparse.Namespace) -> SamplingParams:
    stops = tuple(s.replace("\\n", "\n").replace("\\t", "\t") for s in args.stop)
    return SamplingParams(max_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                          top_p=args.top_p, repetition_penalty=args.repetition_penalty, stop=stops, seed=args.seed)


def _generate_flags(p: argparse.ArgumentParser) -> None:
    model_flags(p)
    p.add_argument("--prompt", action="append", metavar="TEXT",
                   help="text to continue; repeat for a batch (default: start a new document)")
    sampling_flags(p)


@command("generate", help="continue prompts with a trained model", flags=_generate_flags,
         description="Load a checkpoint and continue one prompt, streaming the text as it comes, or\n"
                     "several (--prompt repeated) as one batch. --temperature 0 is greedy decoding.\n\n"
                     f"examples:\n  {COMMAND} generate --run runs/tiny --prompt 'ROMEO:' --seed 1\n"
                     f"  {COMMAND} generate --prompt 'ROMEO:' --prompt 'JULIET:' --temperature 0 --stop '\\n\\n'")
def generate_command(args: argparse.Namespace) -> None:
    path, prompts = model_path(args), args.prompt or [""]
    if len(prompts) == 1:  # one prompt streams to the terminal as it is decoded
        generate_texts(path, prompts, sampling_params(args), args.device,
                       on_text=lambda _, text: print(text, end="", flush=True))
        print()
    else:
        print("\n-----\n".join(generate_texts(path, prompts, sampling_params(args), args.device)))


WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")


def words(text: str) -> list[str]:
    """The words of `text`, lowercased, in order (see the module docstring for what a word is)."""
    return WORD.findall(text.lower())


def word_set(texts: Iterable[str]) -> set[str]:
    """The distinct words of some texts: the vocabulary a sample is checked against."""
    known: set[str] = set()
    for text in texts:
        known.update(words(text))
    return known


def corpus_word_share(sample: str, known: set[str]) -> float:
    """The share of the words of `sample` (every occurrence) found in `known`; 0.0 when it has no words at all,
    since a sample of punctuation and spaces reads like no corpus."""
    found = words(sample)
    return sum(w in known for w in found) / len(found) if found else 0.0


def training_text(prepared: Path) -> list[str]:
    """The training split of prepared data, decoded back to text, one string per document."""
    tok = BPETokenizer.load(prepared / "tokenizer.json")
    ids = TokenDataset(prepared, "train").read(0, len(TokenDataset(prepared, "train"))).tolist()
    documents, start = [], 0
    for end in [i for i, t in enumerate(ids) if t == tok.eot_id] + [len(ids)]:
        if end > start:
            documents.append(tok.decode(ids[start:end]))
        start = end + 1
    return documents


def cpu_seconds() -> float:
    """CPU seconds used so far by this process (all its threads) and by its children that have exited (prepare's
    encoding workers). os.times, unlike the resource module, exists on every platform."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def run_first_sample(work: Path, setup: dict[str, Any], log: Callable[[str], None] = print,
                     cfg: Config | None = None) -> tuple[dict[str, float], dict[str, Any]]:
    """The quick start in `work`: prepare the plays and train the tiny config (`train --config tiny`: the config's
    own defaults and seed), then generate from setup["prompt"] with `generate`'s defaults for each seed in
    setup["seeds"] and measure the corpus word share. `cfg` replaces the tiny config (the tests use a shorter run).

    Returns (figures, notes): the first seed's share (`generate --seed 1`, the quick start's) and the CPU seconds
    of prepare + train + one generate. CPU, not wall time, is judged: it is what the config decides, while the
    wall time also counts whatever else the machine runs (on an idle 2-core laptop the two are about equal). The
    notes hold every seed's share and sample, and each stage's wall and CPU seconds; the separate commands of the
    quick start add their Python start-ups, a few seconds each, which this in-process run does not pay."""
    from .train import train  # training comes before sampling: imported when the check runs

    if cfg is None:  # its own copy of the data, so the prepare step is timed as on a first run
        cfg = load_config("tiny", overrides={"data": {"dir": str(work / "data")}})
    silent = lambda *a, **k: None  # noqa: E731
    marks = [(time.perf_counter(), cpu_seconds())]
    prepared = ensure_data(cfg, log=silent)
    marks.append((time.perf_counter(), cpu_seconds()))
    train(cfg, out_dir=work / "run", device="cpu", log=silent)
    marks.append((time.perf_counter(), cpu_seconds()))
    prompt, samples = setup["prompt"], {}
    for seed in setup["seeds"]:
        params = SamplingParams(max_tokens=setup["tokens"], seed=seed)  # generate's defaults otherwise
        samples[seed] = generate_texts(work / "run" / "ckpt.pt", [prompt], params, "cpu")[0]
        if len(marks) == 3:  # the quick start generates once
            marks.append((time.perf_counter(), cpu_seconds()))
    known = word_set(training_text(prepared))
    shares = {seed: corpus_word_share(text[len(prompt):], known) for seed, text in samples.items()}
    for seed, share in shares.items():
        log(f"seed {seed}: {share:.1%} of the words are words of the training text")
    stages = ("prepare", "train", "generate")
    wall = {stage: round(b[0] - a[0], 2) for stage, a, b in zip(stages, marks, marks[1:])}
    cpu = {stage: round(b[1] - a[1], 2) for stage, a, b in zip(stages, marks, marks[1:])}
    figures = {"word_share": shares[setup["seeds"][0]], "quick_start_cpu_s": marks[-1][1] - marks[0][1]}
    notes = {"shares": {seed: round(share, 4) for seed, share in shares.items()}, "wall_s": wall, "cpu_s": cpu,
             "corpus_words": len(known), "sample": samples[setup["seeds"][0]]}
    return figures, notes


@experiment
def first_sample(ctx: Context) -> Outcome:
    """The quick start (prepare, train --config tiny, generate): its sample's share of words of the training text."""
    figures, notes = run_first_sample(ctx.work, ctx.setup, ctx.log)
    return Outcome(figures, notes=notes)
