"""Where a run computes, and in which number format: one process on one device in fp32 here.

The training loop (train.py) asks a OneDevice everything that several processes would do differently (wrap the
model, average a number, agree on a stop, save the state), and a FullPrecision everything that mixed precision
would do differently (casting to 16 bits, loss scaling, the peak FLOP/s for MFU). A module that offers several
processes (started by a launcher) or another number format registers its own answers in SETUPS or PRECISIONS
when it is imported (the command line imports every module of the package first), so the loop reads the same in
every repository.
"""

from __future__ import annotations

import contextlib
import functools
import math
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from .cli import load_package
from .config import BUDGET_PEAK_TFLOPS, TrainConfig
from .model import GPT


def pick_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda, else mps, else cpu; an explicit device that is missing is an error."""
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
    if name not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unknown device '{name}' (expected auto, cpu, cuda or mps)")
    if (name == "cuda" and not torch.cuda.is_available()) or (name == "mps" and not mps):
        raise ValueError(f"--device {name} was requested but this machine has none")
    return torch.device(name)


class OneDevice:
    """One process on one device."""

    rank, world_size, is_master = 0, 1, True  # rank 0 alone logs and writes files

    def __init__(self, device: torch.device):
        self.device = device

    def wrap(self, model: GPT, compile: bool, checkpointing: bool) -> torch.nn.Module:
        """The module training calls. checkpointing: see checkpoint_blocks. compile: torch.compile each block in
        place, as torchtitan does (the blocks are alike, so one small graph is compiled and reused; parameter
        names, and so checkpoints, stay)."""
        if checkpointing:
            checkpoint_blocks(model)
        for block in model.blocks if compile else []:
            block.compile()
        return model

    def no_sync(self, model: torch.nn.Module, sync: bool) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()  # gradients need no averaging across processes

    def mean(self, x: torch.Tensor) -> float:
        return x.item()

    def any(self, flag: bool) -> bool:
        return flag

    def clip(self, model: torch.nn.Module, max_norm: float) -> float:
        """Clip the global gradient norm (Pascanu et al., 2013); return it, before clipping."""
        return torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm).item()

    @contextlib.contextmanager
    def evaluating(self, model: torch.nn.Module) -> Iterator[None]:
        model.eval()
        try:
            yield
        finally:
            model.train()

    def state_to_save(self, model: GPT, opt: torch.optim.Optimizer, run_dir: Path,
                      step: int) -> tuple[GPT, Any] | None:
        """(the whole model, the optimizer state) to write, or None where this process writes nothing."""
        return model, opt.state_dict()

    def load_optimizer(self, model: GPT, opt: torch.optim.Optimizer, state: Any, run_dir: Path) -> None:
        opt.load_state_dict(state)

    def barrier(self) -> None:
        pass

    def close(self) -> None:
        pass


def checkpoint_blocks(model: torch.nn.Module) -> None:
    """Activation checkpointing (Chen et al., 2016): each block keeps only its input for backward and
    recomputes its activations there, trading about one extra forward pass for much less memory.

    Applied from outside, like DDP: each block's forward is wrapped in place, so parameter names (and
    therefore checkpoints) do not change.
    """
    from torch.utils.checkpoint import checkpoint

    for block in model.blocks:
        block.forward = functools.partial(checkpoint, block.forward, use_reentrant=False)



class FullPrecision:
    """fp32 everywhere."""

    name = "fp32"

    def __init__(self, device: torch.device):
        self.device = device

    def casting(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def prepare(self, model: GPT) -> None:
        """Adapt the model to the number format before training (nothing to do in fp32)."""

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        return loss

    def unscale_(self, opt: torch.optim.Optimizer) -> None:
        pass

    def step(self, opt: torch.optim.Optimizer, loss: float, grad_norm: float) -> bool:
        """Update the weights unless the loss or the gradient norm is not finite; returns whether it did."""
        good = math.isfinite(loss) and math.isfinite(grad_norm)
        if good:
            opt.step()
        return good

    def peak_tflops(self) -> float:
        """Peak TFLOP/s of the budget's hardware in fp32 (config.py), for model FLOPs utilisation."""
        return BUDGET_PEAK_TFLOPS["fp32"]

    def state_dict(self) -> dict[str, Any] | None:
        return None

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        pass


# What other modules may register: a function that returns a multi-process OneDevice
# for a device when this process was started by a launcher (else None), and number formats by name.
SETUPS: list[Callable[[torch.device, TrainConfig], OneDevice | None]] = []
PRECISIONS: dict[str, Callable[[torch.device], FullPrecision]] = {"fp32": FullPrecision}


def devices_for(name: str, t: TrainConfig) -> OneDevice:
    """The first registered setup that applies (several processes from a launcher, say), else one process on `name`."""
    load_package()  # the modules that register setups
    device = pick_device(name)
    return next((d for d in (setup(device, t) for setup in SETUPS) if d is not None), None) or OneDevice(device)


def precision_for(name: str, device: torch.device) -> FullPrecision:
    """train.precision: 'auto' is the fastest format registered for the device, else fp32."""
    load_package()  # the modules that register number formats
    if name not in PRECISIONS and name != "auto":
        raise ValueError(f"train.precision {name} is not available here (only {', '.join(PRECISIONS)})")
    return PRECISIONS.get(name, FullPrecision)(device)
