"""Decoding speed of the same weights in each form: ours in fp32 and bf16, int8 and int4 (quantize.py), and
`transformers` generate on the Hugging Face export (export.py). Part of `bench generate`; prints nothing itself.

Decoding one token at a time reads every weight once per step, so at batch 1 it is bound by memory bandwidth on
a model whose weights do not fit in the CPU caches: that is where fewer bytes per weight pay. Speeds depend on the
CPU's instruction set (AVX2, AVX512-BF16, AMX, NEON): `cpu_flags` goes into the JSON beside them.
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path
from typing import Any

import torch

from .model import GPT
from .quantize import GROUP_SIZES, quantize_model


def cpu_flags() -> list[str]:
    """The vector-instruction flags of this CPU that matter for matmuls (Linux /proc/cpuinfo; [] elsewhere)."""
    info = Path("/proc/cpuinfo")
    if not info.is_file():
        return []
    for line in info.read_text().splitlines():
        if line.startswith(("flags", "Features")):
            flags = line.split(":", 1)[1].split()
            return sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "asimd", "sve")) or f == "neon")
    return []


@torch.no_grad()
def decode_tokens_per_s(model: Any, batch: int = 1, new_tokens: int = 64, prompt_tokens: int = 16,
                        hf: bool = False) -> float:
    """Greedy decoding tokens/s (batch x new_tokens / seconds) from random prompts (batch, prompt_tokens), after
    a two-token warmup. hf=True times a transformers model's `generate` (its KV cache, no early stop)."""
    config = model.config
    vocab = config.vocab_size
    block = config.max_position_embeddings if hf else config.block_size
    new_tokens = min(new_tokens, block - prompt_tokens)
    idx = torch.randint(0, vocab, (batch, prompt_tokens), generator=torch.Generator().manual_seed(0))
    if hf:
        def run(n: int) -> None:
            model.generate(idx, attention_mask=torch.ones_like(idx), max_new_tokens=n, min_new_tokens=n,
                           do_sample=False, pad_token_id=0)
    else:
        def run(n: int) -> None:
            model.generate(idx, n, temperature=0)
    run(2)
    t0 = time.perf_counter()
    run(new_tokens)
    return batch * new_tokens / (time.perf_counter() - t0)


def bench_decode(model: GPT, batches: tuple[int, ...] = (1, 8), new_tokens: int = 64) -> dict[str, Any]:
    """tokens/s by form and batch size for `model` (fp32, CPU); the last entries compare the forms at batch 1."""
    group = max((g for g in GROUP_SIZES if all(m.in_features % g == 0 for m in model.modules()
                                               if isinstance(m, torch.nn.Linear))), default=None)
    forms: dict[str, Any] = {"fp32": model, "bf16": copy.deepcopy(model).to(torch.bfloat16)}
    forms["int8"] = copy.deepcopy(model)
    quantize_model(forms["int8"], 8)
    if group is not None:
        forms[f"int4-g{group}"] = copy.deepcopy(model)
        quantize_model(forms[f"int4-g{group}"], 4, group)
    result: dict[str, Any] = {"cpu_flags": cpu_flags(), "threads": torch.get_num_threads(), "new_tokens": new_tokens,
                              "tokens_per_s": {}}
    try:
        from .export import to_hf_model

        forms["transformers"] = to_hf_model(model, model.config.vocab_size - 1)
    except ValueError as e:  # transformers missing, or a model no Hugging Face class expresses
        result["transformers"] = str(e)
    for name, m in forms.items():
        result["tokens_per_s"][name] = {}
        for b in batches:
            speed = decode_tokens_per_s(m, b, new_tokens, hf=name == "transformers")
            result["tokens_per_s"][name][f"batch_{b}"] = round(speed, 1)
            print(f"bench generate: {name} batch {b}: {speed:.1f} tokens/s", file=sys.stderr, flush=True)
    at1 = {name: r["batch_1"] for name, r in result["tokens_per_s"].items()}
    dense = max(at1["fp32"], at1["bf16"])
    result["int8_vs_fastest_dense_batch_1"] = round(at1["int8"] / dense, 3)
    if "transformers" in at1:
        result["ours_vs_transformers_batch_1"] = round(dense / at1["transformers"], 3)
    return result
