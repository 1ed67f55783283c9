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
from .cli import command, non_negative_float, positive_float, positive_int
from .checkpoint import CHECKPOINT, TOKENIZER, load_checkpoint, load_weights
from .decoding import generate
from .distributed import pick_device
from .model import GPT, GPTConfig
from .quantize import QUANT_CONFIG, load_quantized
from .decoding import SamplingParams
from .tokenizer import BPETokenizer


def find_checkpoint(run: str | Path | None = None, checkpoint: str | Path | None = None) -> Path:
    """--checkpoint PATH, else --run DIR/ckpt.pt (or DIR/quantized.json), else the newest runs/*/ckpt.pt.
    A fine-tuning run that trained adapters keeps them in its ckpt.pt (for --resume) and writes the fine-tuned
    model as an ordinary checkpoint in DIR/merged/: that is the one to load."""
    if checkpoint:
        path = Path(checkpoint)
    elif run:
        path = Path(run) / CHECKPOINT
        if not path.is_file() and (Path(run) / QUANT_CONFIG).is_file():  # a `quantize` output directory
            path = Path(run) / QUANT_CONFIG
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


def find_quantized(path: Path) -> Path:
    """`--quantized`: the newest checkpoint `quantize` wrote for the run of checkpoint `path` (quantized.json in
    <run>/int8/, <run>/int4-g<N>/ or another folder of the run); `path` itself when it is one."""
    if path.name == QUANT_CONFIG:
        return path
    found = sorted(path.parent.glob(f"*/{QUANT_CONFIG}"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"no quantized checkpoint in {path.parent}: "
                                f"run `quantize --run {path.parent} --bits 8` first")
    return found[-1]


def model_name(path: Path) -> str:
    """What `serve` calls the model of checkpoint `path`: its run directory's name, e.g. tiny, or tiny-int8."""
    return f"{path.parent.parent.name}-{path.parent.name}" if path.name == QUANT_CONFIG else path.parent.name


def load_model(path: Path, device: str = "auto") -> tuple[GPT, BPETokenizer, dict]:
    """The model (eval mode, on `device`), its tokenizer and the raw checkpoint dict."""
    dev = torch.device(pick_device(device))
    if path.name == QUANT_CONFIG:  # int8/int4 weights (quantize.py); its tokenizer lies beside it
        return load_quantized(path, dev), BPETokenizer.load(path.with_name(TOKENIZER)), {}
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
    p.add_argument("--quantized", action="store_true",
                   help="the run's newest checkpoint written by `quantize` (<run>/int8/ or <run>/int4-g<N>/)")
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
    """The checkpoint a decoding command loads: --checkpoint, --run or the newest, or with --quantized the
    quantized one beside it."""
    path = find_checkpoint(args.run, args.checkpoint)
    return find_quantized(path) if args.quantized else path


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
