"""Load a trained checkpoint and continue prompts with it (the batched decoding itself is in decoding.py).

The checkpoint (ckpt.pt) is loaded with weights_only=True (tensors and plain values only), the model is rebuilt
from the GPTConfig stored in it and filled from model.safetensors, and the tokenizer is the copy saved next
to the checkpoint by `train`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from .config import COMMAND
from .cli import command, load_package, non_negative_float, positive_float, positive_int
from .checkpoint import CHECKPOINT, load_checkpoint, load_weights
from .decoding import generate
from .devices import pick_device
from .model import GPT, GPTConfig
from .decoding import SamplingParams
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
