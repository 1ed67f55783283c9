"""Which number format to train in, and how fast the hardware could go in it.

Mixed precision (Micikevicius et al., 2018): matmuls run in bf16 or fp16 while weights, gradients and the
optimizer state stay fp32. bf16 keeps fp32's exponent range, so it needs no loss scaling; fp16 does (LossScaler,
CUDA only). Peak FLOP/s figures turn measured tokens/s into model FLOPs utilisation (MFU).
"""

from __future__ import annotations

import math
import sys
from contextlib import nullcontext
from typing import Any

import torch

from .config import BUDGET_DEVICE, BUDGET_PEAK_TFLOPS


def cpu_has_native_bf16() -> bool:
    """True when the CPU multiplies bf16 in hardware (AVX512_BF16 or AMX); otherwise bf16 is emulated and slow."""
    get_caps = getattr(torch.cpu, "get_capabilities", None)
    if get_caps is not None:
        caps = get_caps()
        return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        fn = getattr(torch.cpu, probe, None)
        if fn is not None and fn():
            return True
    cap = torch.backends.cpu.get_cpu_capability().upper()
    return "BF16" in cap or "AMX" in cap


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' -> the fastest numerically safe choice for this device: 'bf16', 'fp16' or 'fp32'."""
    kind = device.type
    if precision == "auto":
        if kind == "cuda":
            # Native bf16 only (Ampere and newer): V100 and T4 emulate it, far slower than their fp16 tensor cores.
            return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"
        if kind == "cpu":
            return "bf16" if cpu_has_native_bf16() else "fp32"
        return "fp32"
    if precision == "fp16" and kind != "cuda":
        raise ValueError(f"precision fp16 needs a CUDA GPU (loss scaling); use bf16 or fp32 on {kind}")
    if precision == "bf16" and kind == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("this GPU has no bf16 support; use precision fp16 or auto")
    return precision


def autocast(precision: str, device: torch.device):
    """Mixed precision: matmuls in bf16/fp16, weights and optimizer state stay fp32 (Micikevicius et al., 2018)."""
    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


class LossScaler:
    """fp16 loss scaling behind one interface; it does nothing for bf16 and fp32.

    fp16 gradients below ~6e-8 round to zero, so the loss is multiplied by a large factor before backward and the
    gradients divided by it before clipping (Micikevicius et al., 2018). torch's GradScaler also lowers the factor
    and skips the step when the scaled gradients overflow, and raises it again after a run of good steps.
    """

    def __init__(self, precision: str) -> None:
        self.grad_scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        return self.grad_scaler.scale(loss) if self.grad_scaler is not None else loss

    def unscale_(self, opt: torch.optim.Optimizer) -> None:
        """Divide the gradients by the factor in place, so clipping sees the true ones."""
        if self.grad_scaler is not None:
            self.grad_scaler.unscale_(opt)

    def step(self, opt: torch.optim.Optimizer, loss: float, grad_norm: float) -> bool:
        """Update the weights unless the step is bad; returns whether it was good (a finite loss, and a finite
        gradient norm where no scaler handles overflowing gradients by itself). A NaN *loss* is a real problem."""
        good = math.isfinite(loss) and (self.grad_scaler is not None or math.isfinite(grad_norm))
        if self.grad_scaler is None:
            if good:
                opt.step()
            return good
        if good:
            self.grad_scaler.step(opt)  # skipped inside if the gradients overflowed
        self.grad_scaler.update()
        return good

    def state_dict(self) -> dict[str, Any] | None:
        return self.grad_scaler.state_dict() if self.grad_scaler is not None else None

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.grad_scaler is not None and state:
            self.grad_scaler.load_state_dict(state)


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
