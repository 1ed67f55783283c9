"""Weight-only quantization, written to be read: int8 per output channel and int4 per group, on torch's kernels.

A weight matrix W (N outputs x K inputs) is stored as small integers q and a few floating-point scales; the
activations stay floating point ("weight-only"). Decoding one token at a time reads every weight once per token,
so it is limited by memory bandwidth: 1 byte (int8) or half a byte (int4) per weight instead of 4 (fp32) means
less to read per token.

- int8, per output channel (symmetric absmax; Jacob et al., 2018; Dettmers et al., 2022 "vector-wise"):
  scale[n] = max_k |W[n, k]| / 127,  q = round(W / scale) in [-127, 127],  W ~ q * scale.
- int4, per group of `group_size` consecutive inputs (asymmetric min-max; Frantar et al., 2023 use the same
  grid with GPTQ's rounding instead of round-to-nearest): in each group scale = (max - min) / 15 and
  q = round((W - min) / scale) in [0, 15]. torch's int4 kernel dequantises as (q - 8) * scale + zero, so we
  store zero = min + 8 * scale. Two 4-bit values share one byte (pack_int4).

Where each runs:
- CPU: `torch._weight_int8pack_mm` and `torch._weight_int4pack_mm_for_cpu` (x86 and Arm). Both are fast only with
  bf16 activations (with fp32 ones they are several times slower than a dense fp32 matmul, measured on AVX2), so
  QuantLinear casts its input to bf16 and its output back.
- CUDA: torchao's `Int8WeightOnlyConfig` / `Int4WeightOnlyConfig` when torchao is installed and supports the GPU
  (load_quantized re-packs our integers for it); torchao's int4 needs CUDA, it raises on CPU.
- Anywhere else (MPS, CUDA without torchao): the weights are dequantised on each call, correct but not faster.
The output head stays in full precision (GPTQ and AWQ leave it too: it is the most sensitive layer) and so do
embeddings and norms; only the Blocks' linear layers are quantized.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_model as save_safetensors

from .atomic import replace_dir, write_json
from .checkpoint import TOKENIZER, WEIGHTS, load_checked_weights, weights_digest
from .model import GPT, GPTConfig
from .tokenizer import BPETokenizer

BITS = (8, 4)
GROUP_SIZES = (32, 64, 128)
QUANT_CONFIG = "quantized.json"  # beside model.safetensors and tokenizer.json in a quantized checkpoint
KERNEL_DTYPE = torch.bfloat16  # the activations' dtype inside the CPU kernels (see the module doc)


def quantize_int8(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """w (N, K) -> q (N, K) int8 in [-127, 127], scale (N,) fp32 with w ~ q * scale[:, None]."""
    w = w.float()
    scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127
    q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale


def quantize_int4(w: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """w (N, K) -> q (N, K) uint8 in [0, 15], scale (N, K/g), zero (N, K/g) fp32 with
    w[n, k] ~ (q[n, k] - 8) * scale[n, k // g] + zero[n, k // g]."""
    N, K = w.shape
    if K % group_size:
        raise ValueError(f"input width {K} is not a multiple of the group size {group_size}")
    groups = w.float().reshape(N, K // group_size, group_size)
    lo, hi = groups.amin(dim=-1), groups.amax(dim=-1)  # (N, K/g)
    scale = ((hi - lo) / 15).clamp(min=1e-12)
    q = torch.round((groups - lo[..., None]) / scale[..., None]).clamp(0, 15).to(torch.uint8)
    return q.reshape(N, K), scale, lo + 8 * scale


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """q (N, K) uint8 in [0, 15] -> (N, K/2) uint8: column 2j in the low nibble, column 2j + 1 in the high one."""
    return q[:, 0::2] | (q[:, 1::2] << 4)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """The inverse of pack_int4: (N, K/2) uint8 -> (N, K) uint8 in [0, 15]."""
    return torch.stack((packed & 0xF, packed >> 4), dim=-1).flatten(1)


class QuantLinear(nn.Module):
    """nn.Linear with int8 or packed int4 weights: x (..., K) -> (..., N) = x W^T + b, W dequantised as above.

    Buffers (what the checkpoint stores): qweight (N, K) int8 or (N, K/2) uint8, scale (N,) or (N, K/g),
    zero (N, K/g) for int4, bias (N,) if the layer had one.
    """

    def __init__(self, in_features: int, out_features: int, bits: int, group_size: int | None = None,
                 bias: bool = False):
        super().__init__()
        if bits not in BITS:
            raise ValueError(f"bits must be one of {', '.join(map(str, BITS))}, got {bits}")
        self.in_features, self.out_features, self.bits = in_features, out_features, bits
        self.group_size = group_size if bits == 4 else None
        N, K = out_features, in_features
        if bits == 8:
            self.register_buffer("qweight", torch.zeros(N, K, dtype=torch.int8))
            self.register_buffer("scale", torch.zeros(N))
        else:
            if group_size not in GROUP_SIZES or K % group_size:
                raise ValueError(f"int4 needs a group size in {GROUP_SIZES} dividing the input width {K}, "
                                 f"got {group_size}")
            self.register_buffer("qweight", torch.zeros(N, K // 2, dtype=torch.uint8))
            self.register_buffer("scale", torch.zeros(N, K // group_size))
            self.register_buffer("zero", torch.zeros(N, K // group_size))
        self.register_buffer("bias", torch.zeros(N) if bias else None)
        self._kernel_args: tuple[torch.Tensor, ...] | None = None  # the CPU kernel's operands, built on first use

    @classmethod
    def from_linear(cls, linear: nn.Linear, bits: int, group_size: int | None = None) -> "QuantLinear":
        """Quantize an nn.Linear's weight (round to nearest)."""
        layer = cls(linear.in_features, linear.out_features, bits, group_size, bias=linear.bias is not None)
        if bits == 8:
            layer.qweight, layer.scale = quantize_int8(linear.weight.detach())
        else:
            q, layer.scale, layer.zero = quantize_int4(linear.weight.detach(), group_size)
            layer.qweight = pack_int4(q)
        if linear.bias is not None:
            layer.bias = linear.bias.detach().float().clone()
        return layer.to(linear.weight.device)

    def dequantize(self) -> torch.Tensor:
        """The weight (N, K) in fp32, as the kernels see it."""
        if self.bits == 8:
            return self.qweight.float() * self.scale[:, None]
        q = unpack_int4(self.qweight).float().view(self.out_features, -1, self.group_size)  # (N, K/g, g)
        return ((q - 8) * self.scale[..., None] + self.zero[..., None]).flatten(1)

    def _cpu_kernel_args(self) -> tuple[torch.Tensor, ...]:
        if self._kernel_args is None:
            if self.bits == 8:
                self._kernel_args = (self.qweight, self.scale.to(KERNEL_DTYPE))
            else:  # the int4 kernel wants its own tiled layout and scale/zero interleaved as (K/g, N, 2)
                q = unpack_int4(self.qweight).to(torch.int32)
                w4 = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1)
                scale_zero = torch.stack((self.scale, self.zero), dim=-1).transpose(0, 1).contiguous()
                self._kernel_args = (w4, scale_zero.to(KERNEL_DTYPE))
        return self._kernel_args

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self._kernel_args = None  # new integers: rebuild the kernel operands
        super()._load_from_state_dict(*args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., K) -> (..., N)."""
        # The CPU kernels have no backward: a gradient that must pass through (adapters trained on a quantized
        # base) takes the dequantized weight.
        if x.device.type != "cpu" or (x.requires_grad and torch.is_grad_enabled()):
            return F.linear(x, self.dequantize().to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))
        x2 = x.reshape(-1, self.in_features).to(KERNEL_DTYPE)  # (M, K)
        if self.bits == 8:
            w, scale = self._cpu_kernel_args()
            y = torch._weight_int8pack_mm(x2, w, scale)  # (M, N)
        else:
            w4, scale_zero = self._cpu_kernel_args()
            y = torch._weight_int4pack_mm_for_cpu(x2, w4, self.group_size, scale_zero)
        y = y.to(x.dtype).view(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias.to(x.dtype)

    def extra_repr(self) -> str:
        group = f", group_size={self.group_size}" if self.bits == 4 else ""
        return f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}{group}"


def quantizable(model: GPT) -> list[str]:
    """Names of the linear layers to quantize: every nn.Linear inside the Blocks (not the output head)."""
    return [f"blocks.{name}" for name, m in model.blocks.named_modules() if isinstance(m, nn.Linear)]


def check_group_size(model: GPT, bits: int, group_size: int | None) -> None:
    """A one-line ValueError when int4's group size does not divide the input width of a layer to quantize."""
    if bits != 4:
        return
    widths = sorted({model.get_submodule(name).in_features for name in quantizable(model)})
    fits = [g for g in GROUP_SIZES if all(w % g == 0 for w in widths)]
    if group_size not in fits:
        raise ValueError(f"int4 group size {group_size} does not divide the input widths {widths} of this model; "
                         f"use {' or '.join(map(str, fits)) or 'int8'}")


def quantize_model(model: GPT, bits: int, group_size: int | None = None, *, empty: bool = False) -> list[str]:
    """Replace the Blocks' nn.Linear layers of `model` in place by QuantLinear; returns their names.

    The model itself is unchanged code: QuantLinear is swapped in from outside, by module path. empty=True
    makes layers of the right shapes without quantizing (to load a quantized checkpoint into).
    """
    names = quantizable(model)
    check_group_size(model, bits, group_size)
    for name in names:
        parent, _, child = name.rpartition(".")
        owner = model.get_submodule(parent)
        linear: nn.Linear = getattr(owner, child)
        if empty:
            layer = QuantLinear(linear.in_features, linear.out_features, bits, group_size, linear.bias is not None)
        else:
            layer = QuantLinear.from_linear(linear, bits, group_size)
        setattr(owner, child, layer)
    return names


def weight_bytes(model: nn.Module, names: list[str] | None = None) -> int:
    """Bytes of the model's parameters and persistent buffers (each shared tensor once), or of modules `names`."""
    modules = [model.get_submodule(n) for n in names] if names is not None else [model]
    seen, total = set(), 0
    for module in modules:
        for t in [*module.parameters(), *module.state_dict().values()]:
            if t.data_ptr() not in seen:
                seen.add(t.data_ptr())
                total += t.numel() * t.element_size()
    return total


def save_quantized(model: GPT, out_dir: Path, bits: int, group_size: int | None, tokenizer: BPETokenizer,
                   source: dict[str, Any], report: dict[str, Any]) -> Path:
    """Write out_dir/: model.safetensors (integers, scales, the unquantized rest), quantized.json (bits, group
    size, model config, `source`), the tokenizer and report.json. Built in a temporary sibling and renamed into
    place; an existing out_dir is replaced only when it is a quantized checkpoint itself."""
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / QUANT_CONFIG).is_file():
        raise ValueError(f"{out_dir} exists and is not a quantized checkpoint: choose another --out")
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    digest = weights_digest(model.state_dict(), dataclasses.asdict(model.config))
    save_safetensors(model, str(tmp / WEIGHTS), metadata={"bits": str(bits), "group_size": str(group_size),
                                                          "weights_sha256": digest})
    tokenizer.save(tmp / TOKENIZER)
    write_json(tmp / "report.json", report)
    write_json(tmp / QUANT_CONFIG, {"bits": bits, "group_size": group_size,
                                    "model_config": dataclasses.asdict(model.config), **source})
    replace_dir(tmp, out_dir)
    return out_dir / QUANT_CONFIG


def load_quantized(path: Path, device: torch.device) -> GPT:
    """The model of quantized.json `path`, in eval mode on `device`.

    On CUDA with torchao installed, torchao re-quantizes the dequantised weights with the same bits and group
    size (our integer layout has no CUDA kernel of its own); elsewhere QuantLinear runs them.
    """
    try:
        config = json.loads(Path(path).read_text())
        bits, group_size, model = config["bits"], config["group_size"], GPT(GPTConfig(**config["model_config"]))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a quantized checkpoint ({type(e).__name__}: {e})") from None
    quantize_model(model, bits, group_size, empty=True)
    load_checked_weights(model, Path(path).with_name(WEIGHTS), path)  # digest and finite values, as checkpoints
    if device.type == "cuda":
        _torchao_cuda(model, bits, group_size)
    return model.to(device).eval()


def _torchao_cuda(model: GPT, bits: int, group_size: int | None) -> None:
    """Swap each QuantLinear for torchao's CUDA weight-only layout, in bf16. Untouched without torchao."""
    try:
        from torchao.quantization import Int4WeightOnlyConfig, Int8WeightOnlyConfig, quantize_
    except ImportError:
        return
    for name in [n for n, m in model.named_modules() if isinstance(m, QuantLinear)]:
        layer: QuantLinear = model.get_submodule(name)
        dense = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
        dense.weight.data = layer.dequantize()
        if layer.bias is not None:
            dense.bias.data = layer.bias.clone()
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, dense)
    model.to("cuda", torch.bfloat16)
    config = Int8WeightOnlyConfig() if bits == 8 else Int4WeightOnlyConfig(group_size=group_size)
    quantize_(model, config, filter_fn=lambda m, fqn: fqn.startswith("blocks.") and isinstance(m, nn.Linear))
