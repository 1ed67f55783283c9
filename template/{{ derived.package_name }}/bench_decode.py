"""`bench generate`: decoding speed of the same weights in each form: ours (decoding.py) in fp32 and bf16, int8
and int4 (quantize.py), and `transformers` generate on the Hugging Face export (export.py), at batch 1 and 8.

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

from .decoding import continue_ids
from .model import GPT
from .precision import cpu_has_native_bf16
from .quantize import GROUP_SIZES, quantize_model
from .sampling import SamplingParams

DENSE = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
PROMPT_TOKENS = 16  # each timed prompt's length (random ids)


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
def decode_tokens_per_s(model: Any, batch: int = 1, new_tokens: int = 64, prompt_tokens: int = PROMPT_TOKENS,
                        hf: bool = False) -> float:
    """Greedy decoding tokens/s (batch x new_tokens / seconds, the prefill of random prompts (batch, prompt_tokens)
    included) after a two-token warmup. Ours runs decoding.py; hf=True times a transformers model's `generate`
    (its KV cache, no early stop)."""
    config = model.config
    block = config.max_position_embeddings if hf else config.block_size
    new_tokens = min(new_tokens, block - prompt_tokens)
    dev = next(model.parameters()).device
    idx = torch.randint(0, config.vocab_size, (batch, prompt_tokens), generator=torch.Generator().manual_seed(0))
    if hf:
        idx = idx.to(dev)

        def run(n: int) -> None:
            model.generate(idx, attention_mask=torch.ones_like(idx), max_new_tokens=n, min_new_tokens=n,
                           do_sample=False, pad_token_id=0)
    else:
        def run(n: int) -> None:
            continue_ids(model, idx.tolist(), SamplingParams(max_tokens=n, temperature=0))
    run(2)
    t0 = time.perf_counter()
    run(new_tokens)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return batch * new_tokens / (time.perf_counter() - t0)


def decoding_forms(model: GPT, dtypes: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, str]]:
    """({name: model}, {name: why it is missing}): `model` in the dense dtypes, then (on the CPU, where torch
    has the low-bit kernels) int8 and int4 at the largest group size that fits, then transformers in fp32."""
    forms: dict[str, Any] = {d: copy.deepcopy(model).to(DENSE[d]) for d in dtypes}
    missing: dict[str, str] = {}
    if next(model.parameters()).device.type != "cpu":
        missing["int8, int4"] = "quantize.py's kernels are the CPU's; on CUDA `generate` hands them to torchao"
    else:
        forms["int8"] = copy.deepcopy(model)
        quantize_model(forms["int8"], 8)
        widths = {m.in_features for m in model.blocks.modules() if isinstance(m, torch.nn.Linear)}
        group = max((g for g in GROUP_SIZES if all(w % g == 0 for w in widths)), default=None)
        if group is None:
            missing["int4"] = f"no group size in {GROUP_SIZES} divides the layer widths {sorted(widths)}"
        else:
            forms[f"int4-g{group}"] = copy.deepcopy(model)
            quantize_model(forms[f"int4-g{group}"], 4, group)
    try:
        from .export import to_hf_model

        forms["transformers"] = to_hf_model(model, model.config.vocab_size - 1).to(next(model.parameters()).device)
    except ValueError as e:  # transformers missing, or a model no Hugging Face class expresses
        missing["transformers"] = str(e)
    return forms, missing


def bench_decode(model: GPT, batches: tuple[int, ...] = (1, 8), new_tokens: int = 64,
                 dtypes: tuple[str, ...] = ("fp32", "bf16"), all_forms: bool = True) -> dict[str, Any]:
    """tokens/s by form and batch size for `model` (fp32, eval mode, on its device), one row each; the ratios
    at the end compare the forms at batch 1. all_forms=False: the dense dtypes only (no int8, int4, transformers)."""
    dev = next(model.parameters()).device
    forms, missing = decoding_forms(model, dtypes) if all_forms else (
        {d: copy.deepcopy(model).to(DENSE[d]) for d in dtypes}, {})
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else dev.type,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_flags": cpu_flags(),
        "native_bf16": cpu_has_native_bf16(), "threads": torch.get_num_threads(), "params": model.num_params(),
        "new_tokens": min(new_tokens, model.config.block_size - PROMPT_TOKENS), "prompt_tokens": PROMPT_TOKENS,
        "results": [], "not_measured": missing}
    for name, m in forms.items():
        for b in batches:
            speed = decode_tokens_per_s(m, b, new_tokens, hf=name == "transformers")
            row = {"engine": "transformers" if name == "transformers" else "ours",
                   "dtype": "fp32" if name == "transformers" else name, "batch": b, "tokens_per_s": round(speed, 1)}
            result["results"].append(row)
            print(f"bench generate: {row}", file=sys.stderr, flush=True)
    at1 = {(r["engine"], r["dtype"]): r["tokens_per_s"] for r in result["results"] if r["batch"] == 1}
    dense = max((at1[("ours", d)] for d in dtypes if ("ours", d) in at1), default=None)
    if dense and ("ours", "int8") in at1:
        result["int8_vs_fastest_dense_batch_1"] = round(at1[("ours", "int8")] / dense, 3)
    if ("ours", "fp32") in at1 and ("transformers", "fp32") in at1:
        result["ours_vs_transformers_fp32_batch_1"] = round(at1[("ours", "fp32")] / at1[("transformers", "fp32")], 3)
    return result
