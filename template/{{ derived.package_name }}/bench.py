"""Measure training and generation throughput on this machine, with random tokens (no data needed).

`bench train`: each benchmark step is one micro-batch: forward, backward and an AdamW update, in the config's precision.
Tokens per second do not depend on gradient accumulation, so this is the number that sets how long
`train` takes. Model FLOPs utilisation (MFU, Chowdhery et al., 2022, appendix B) is
tokens/s x FLOPs/token / peak FLOP/s of the device.
`bench generate`: sampling tokens/s of the same model with and without the KV cache.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from typing import Any

import torch

from .config import ARCHITECTURE, Config
from .distributed import pick_device
from .model import GPT, GPTConfig
from .precision import autocast, peak_memory_mb, peak_tflops, resolve_precision
from .train import forward_loss, make_optimizer


def override_shape(cfg: Config, *, n_layer: int | None = None, n_head: int | None = None, n_embd: int | None = None,
                   block_size: int | None = None, batch_size: int | None = None, vocab_size: int | None = None,
                   dtype: str | None = None) -> Config:
    """The config with the `bench` command line's sizes; None keeps the config's value.

    Dependent sizes follow the config's architecture: the key/value heads keep the config's n_head / n_kv_head
    ratio (grouped-query attention) and the MLP width is 4 * n_embd for GELU (GPT-2) or the Llama SwiGLU
    width ceil(8 * n_embd / 3 / 64) * 64, which keeps the MLP's weight count near 8 * n_embd^2 (Shazeer, 2020).
    """
    m = dict(cfg.model)
    group = max(1, m["n_head"] // m["n_kv_head"])
    for key, value in (("n_layer", n_layer), ("n_head", n_head), ("n_embd", n_embd), ("block_size", block_size),
                       ("vocab_size", vocab_size)):
        if value is not None:
            m[key] = value
    if n_head is not None:
        m["n_kv_head"] = max(1, m["n_head"] // group)
    if n_embd is not None:
        swiglu = ARCHITECTURE == "llama" and m.get("activation", "swiglu") == "swiglu"
        m["ffn_hidden"] = math.ceil(8 * m["n_embd"] / 3 / 64) * 64 if swiglu else 4 * m["n_embd"]
    GPTConfig(**m)  # impossible sizes (n_embd not divisible by n_head, ...) fail here, before any work
    train = dataclasses.replace(cfg.train, **{k: v for k, v in (("micro_batch_size", batch_size),
                                                                ("precision", dtype)) if v is not None})
    return dataclasses.replace(cfg, model=m, train=train)


def bench(cfg: Config, steps: int = 10, device: str = "auto", seed: int = 0, compile: bool = False) -> dict[str, Any]:
    """Time `steps` training steps (the first one or two, warmup, untimed); progress on stderr."""
    dev = torch.device(pick_device(device))
    torch.manual_seed(seed)
    model = GPT(GPTConfig(**cfg.model)).to(dev)
    precision = resolve_precision(cfg.train.precision, dev)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    opt = make_optimizer(model, cfg.train.weight_decay, cfg.train.lr, dev)
    step_model = torch.compile(model) if compile else model
    B, T, V = cfg.train.micro_batch_size, cfg.model["block_size"], cfg.model["vocab_size"]
    gen = torch.Generator().manual_seed(seed)
    # The first step allocates (and compiles); a compiled model also recompiles once for the second step.
    warmup = min(steps - 1, 2 if compile else 1)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        elif dev.type == "mps":
            torch.mps.synchronize()

    timed = 0.0
    for i in range(steps):
        tokens = torch.randint(0, V, (B, T + 1), generator=gen).to(dev)
        x, y = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()  # (B, T) each, like TokenDataset.batch
        sync()
        t0 = time.perf_counter()
        with autocast(precision, dev):
            loss = forward_loss(step_model, x, y)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        opt.zero_grad(set_to_none=True)
        sync()
        dt = time.perf_counter() - t0
        if i >= warmup:
            timed += dt
        print(f"bench step {i + 1}/{steps}: {dt * 1000:.1f} ms, loss {loss.item():.3f}"
              f"{' (warmup, not timed)' if i < warmup else ''}", file=sys.stderr, flush=True)

    n = steps - warmup
    ms = timed / n * 1000
    tokens_per_s = B * T * n / timed
    flops_per_token = model.flops_per_token()
    peak = peak_tflops(dev, precision)
    return {
        "config": cfg.name,
        "tokens_per_s": round(tokens_per_s, 1),
        "ms_per_step": round(ms, 2),
        "mfu": round(tokens_per_s * flops_per_token / (peak * 1e12), 4),
        "peak_mem_mb": round(peak_memory_mb(dev), 1),
        "params": model.num_params(),
        "flops_per_token": flops_per_token,
        "tokens_per_step": B * T,
        "peak_tflops": peak,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else dev.type,
        "dtype": precision,
        "steps": steps,
        "compile": compile,
        "shape": {**{k: cfg.model[k] for k in ("n_layer", "n_head", "n_kv_head", "n_embd", "block_size", "vocab_size")},
                  "batch_size": B},
    }


@torch.no_grad()
def bench_generate(cfg: Config, device: str = "auto", seed: int = 0, prompt_tokens: int = 16,
                   new_tokens: int | None = None) -> dict[str, Any]:
    """Sampling tokens/s of a randomly initialised model, with and without the KV cache (one sequence).

    Without the cache every new token recomputes attention over the whole context, O(T^2) work per token;
    with it each step runs the model on one token and reuses the stored keys and values, O(T).
    The weights do not change the speed, so no checkpoint is needed.
    """
    dev = torch.device(pick_device(device))
    torch.manual_seed(seed)
    model = GPT(GPTConfig(**cfg.model)).to(dev).eval()
    precision = resolve_precision(cfg.train.precision, dev)
    block = cfg.model["block_size"]
    prompt_tokens = min(prompt_tokens, block - 1)
    new = new_tokens if new_tokens is not None else block - prompt_tokens  # fill the context once
    idx = torch.randint(0, cfg.model["vocab_size"], (1, prompt_tokens), device=dev)
    result: dict[str, Any] = {"config": cfg.name, "prompt_tokens": prompt_tokens, "new_tokens": new,
                              "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else dev.type,
                              "dtype": precision}
    for use_cache in (False, True):
        with autocast(precision, dev):
            model.generate(idx, 2, top_k=50, use_cache=use_cache)  # warmup: allocations, kernel selection
            t0 = time.perf_counter()
            model.generate(idx, new, top_k=50, use_cache=use_cache,
                           generator=torch.Generator(device=dev).manual_seed(seed))
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            dt = time.perf_counter() - t0
        key = "kv_cache" if use_cache else "no_cache"
        result[f"tokens_per_s_{key}"] = round(new / dt, 1)
        print(f"bench generate ({key}): {new} tokens in {dt:.2f} s", file=sys.stderr, flush=True)
    result["speedup"] = round(result["tokens_per_s_kv_cache"] / result["tokens_per_s_no_cache"], 2)
    return result
