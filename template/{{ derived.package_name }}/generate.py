"""Sample text from a trained checkpoint.

The checkpoint (ckpt.pt) is loaded with weights_only=True (tensors and plain values only), the model is rebuilt
from the GPTConfig stored in it and filled from model.safetensors, and the tokenizer is the copy saved next
to the checkpoint by `train`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .distributed import pick_device
from .model import GPT, GPTConfig
from .tokenizer import BPETokenizer
from .checkpoint import CHECKPOINT, TOKENIZER, load_checkpoint, load_weights
from .quantize import QUANT_CONFIG, load_quantized


def find_checkpoint(run: str | Path | None = None, checkpoint: str | Path | None = None) -> Path:
    """--checkpoint PATH, else --run DIR/ckpt.pt (or DIR/quantized.json), else the newest runs/*/ckpt.pt."""
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
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    return path


def find_run(run: str | Path | None = None) -> Path:
    """--run DIR, else the run directory in runs/ whose metrics.jsonl changed last."""
    if run:
        path = Path(run)
        if not (path / "metrics.jsonl").is_file():
            raise FileNotFoundError(f"{path} is not a run directory (no metrics.jsonl)")
        return path
    found = sorted(Path("runs").glob("*/metrics.jsonl"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError("no run found in runs/: train first, or pass --run")
    return found[-1].parent


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


def generate_text(path: Path, prompt: str = "", max_new_tokens: int = 200, temperature: float = 0.8,
                  top_k: int | None = 50, seed: int = 1337, device: str = "auto") -> str:
    """Prompt + continuation as text. The same seed gives the same text on the same machine."""
    model, tok, _ = load_model(path, device)
    dev = next(model.parameters()).device
    # An empty prompt starts from the end-of-text token, i.e. "the beginning of a new document".
    ids = tok.encode(prompt) if prompt else [tok.eot_id]
    idx = torch.tensor([ids], dtype=torch.long, device=dev)  # (1, T)
    gen = torch.Generator(device=dev).manual_seed(seed)
    out = model.generate(idx, max_new_tokens, temperature=temperature, top_k=top_k, generator=gen)  # (1, T + new)
    new = out[0, len(ids):].tolist()
    return prompt + tok.decode(new)
