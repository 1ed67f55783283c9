"""What training does when something goes wrong: a stop signal (save at the next step boundary), a step that does
not fit in memory, NaN losses.

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

    exit_code = 1


class OutOfMemory(RuntimeError):
    """A training step did not fit in memory; the message names the knobs that reduce memory."""

    exit_code = 1


class Preempted(Exception):
    """A stop signal arrived; the run saved a checkpoint at the next step boundary and stopped."""

    exit_code = 75  # EX_TEMPFAIL (sysexits.h): the same command with --resume auto continues the run
    label = "stopped"


class StopFlag:
    """Set by SIGTERM (SLURM's time limit or preemption, torchrun shutting down, `kill`), SIGUSR1 (SLURM's
    `--signal=USR1@...`) or Ctrl-C. The handler only records the signal: the loop checks the flag between steps,
    where every rank can agree to save (a signal raised inside a step would leave gradients, the optimizer
    and the collectives half done). A second Ctrl-C stops at once, without saving."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and self.signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else "none"


STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGUSR1") if hasattr(signal, name))


@contextlib.contextmanager
def stop_signals() -> Iterator[StopFlag]:
    """A StopFlag set by the stop signals while the block runs; the previous handlers come back after it.

    Signal handlers can only be set from the main thread; elsewhere (a test runner's thread) the flag stays unset.
    """
    flag = StopFlag()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {s: signal.signal(s, flag) for s in STOP_SIGNALS}
    try:
        yield flag
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


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
