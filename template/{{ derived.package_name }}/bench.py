"""Measure training throughput of a config on this machine, with random tokens (no data needed).

Each benchmark step is one micro-batch: forward, backward and an AdamW update, in the config's precision.
Tokens per second do not depend on gradient accumulation, so this is the number that sets how long
`train` takes. Model FLOPs utilisation (MFU, Chowdhery et al., 2022, appendix B) is
tokens/s x FLOPs/token / peak FLOP/s of the device.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import torch

from .config import BUDGET_DEVICE, BUDGET_PEAK_TFLOPS, Config
from .distributed import pick_device
from .model import GPT, GPTConfig
from .train import autocast, forward_loss, resolve_precision

# Dense peak TFLOP/s (bf16/fp16 tensor cores, fp32 without TF32) from vendor data sheets, matched against
# torch.cuda.get_device_properties().name; more specific names first.
GPU_PEAK_TFLOPS: list[tuple[str, float, float]] = [
    ("H200", 989.0, 67.0),
    ("H100 PCIe", 756.0, 51.0),
    ("H100 NVL", 835.0, 60.0),
    ("H100", 989.0, 67.0),
    ("GH200", 989.0, 67.0),
    ("B200", 2250.0, 80.0),
    ("A100", 312.0, 19.5),
    ("A10G", 70.0, 31.2),
    ("A10", 125.0, 31.2),
    ("L40S", 362.0, 91.6),
    ("L40", 181.0, 90.5),
    ("L4", 121.0, 30.3),
    ("RTX 6000 Ada", 364.0, 91.1),
    ("A6000", 155.0, 38.7),
    ("4090", 165.0, 82.6),
    ("3090", 71.0, 35.6),
    ("V100", 125.0, 15.7),
    ("T4", 65.0, 8.1),
]


def peak_tflops(device: torch.device, precision: str) -> float:
    """Peak TFLOP/s for the precision in use; unknown GPUs fall back to the budget's catalog figure."""
    low = precision in ("bf16", "fp16")
    if device.type == "cuda":
        name = torch.cuda.get_device_properties(device).name
        for key, half, single in GPU_PEAK_TFLOPS:
            if key.lower() in name.lower():
                return half if low else single
        if BUDGET_DEVICE != "cuda":  # a CPU-budget repo run on some GPU: assume a mid-range card
            return 165.0 if low else 82.6
    return BUDGET_PEAK_TFLOPS["bf16" if low else "fp32"]


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource  # POSIX only
    except ImportError:
        return 0.0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # peak resident set: KiB on Linux, bytes on macOS
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


def bench(cfg: Config, steps: int = 10, device: str = "auto", seed: int = 0) -> dict[str, Any]:
    """Time `steps` training steps (the first one, warmup, untimed when steps > 1); progress on stderr."""
    dev = torch.device(pick_device(device))
    torch.manual_seed(seed)
    model = GPT(GPTConfig(**cfg.model)).to(dev)
    precision = resolve_precision(cfg.train.precision, dev)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    opt = torch.optim.AdamW(model.param_groups(cfg.train.weight_decay), lr=cfg.train.lr, betas=(0.9, 0.95),
                            fused=dev.type == "cuda")
    B, T, V = cfg.train.micro_batch_size, cfg.model["block_size"], cfg.model["vocab_size"]
    gen = torch.Generator().manual_seed(seed)
    warmup = 1 if steps > 1 else 0
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
            loss = forward_loss(model, x, y)
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
    }
