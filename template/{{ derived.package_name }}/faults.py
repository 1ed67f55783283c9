"""What training does when something goes wrong: a stop signal, a step that does not fit in memory, NaN losses.

Kept out of train.py so the loop reads as the algorithm; each helper here is called from one place in it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator

import torch

MAX_BAD_STEPS = 5  # consecutive non-finite losses before giving up


class TrainingDiverged(RuntimeError):
    """The loss stayed NaN/inf for MAX_BAD_STEPS steps in a row."""


class OutOfMemory(RuntimeError):
    """A training step did not fit in memory; the message names the knobs that reduce memory."""


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    """Handle SIGTERM (SLURM time limit or preemption, `kill`) like Ctrl-C: the loop saves a checkpoint, then stops.

    Signal handlers can only be set from the main thread; elsewhere (a test runner's thread) this does nothing.
    """
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def is_out_of_memory(e: BaseException) -> bool:
    """CUDA raises OutOfMemoryError; the CPU and MPS allocators raise a RuntimeError that says so."""
    if isinstance(e, torch.cuda.OutOfMemoryError):
        return True
    text = str(e).lower()
    return isinstance(e, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def out_of_memory_help(micro: int, block: int, device: torch.device) -> str:
    return (f"out of memory on {device.type} at micro_batch_size={micro} x block_size={block}: lower "
            "train.micro_batch_size (the global batch stays batch_tokens through more accumulation), lower "
            "model.block_size, set train.activation_checkpointing: true, or pass --auto-micro-batch "
            "(train.auto_micro_batch: true; one process only) to halve the micro-batch automatically")


def halve_micro_batch(e: RuntimeError, micro: int, block: int, device: torch.device, allowed: bool) -> int:
    """The micro-batch to retry a step with after `e`: half of `micro` (the caller doubles the accumulation, so
    a step still sees batch_tokens tokens with half the activations).

    Re-raises `e` when it is not out-of-memory; raises OutOfMemory, naming the knobs, when halving is not
    `allowed` (train.auto_micro_batch off, or several processes, which cannot re-plan one by one) or micro is 1.
    """
    if not is_out_of_memory(e):
        raise e
    if device.type == "cuda":
        torch.cuda.empty_cache()  # hand back what the failed step allocated
    if not allowed or micro == 1:
        raise OutOfMemory(out_of_memory_help(micro, block, device)) from None
    return micro // 2
