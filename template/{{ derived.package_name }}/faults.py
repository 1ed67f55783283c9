"""What training does when something goes wrong: a stop signal (save at the next step boundary), a step that does
not fit in memory, NaN losses.

Kept out of train.py so the loop reads as the algorithm; each helper here is called from one place in it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import sys
import threading
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Iterator

import torch

from .checkpoint import disk_full

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


# -- lock ------------------------------------------------------------------------------------------------------------
# One process at a time per output directory: `prepare` locks its data directory, `train` its run directory.
#
# The lock is fcntl.flock on a file beside the directory (`.<name>.lock`; beside it, because prepare replaces its
# directory as a whole), removed again on release. The holder writes its PID into the file, so a second run can
# name it. The kernel releases a flock when its holder exits, however it dies (kill -9 included), so a lock file
# left by a dead process is simply taken over: there is no stale lock to detect. The `filelock` package wraps
# the same call but keeps no holder PID in the file, so it could not say who holds the lock. flock is POSIX
# (Linux, macOS).


NO_LOCKS = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP)  # a network file system mounted without lock support


class RunLocked(RuntimeError):
    """Another live process holds the lock of the directory."""

    exit_code = 1


def lock_file(target: Path) -> Path:
    return target.parent / f".{target.name}.lock"


def _lock(path: Path, target: Path) -> tuple[int, bool]:
    """Open and lock `path`: (its descriptor, whether it is locked). Raises RunLocked if another process holds it."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # no O_TRUNC: the holder's PID must survive our open
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise disk_full(path.parent, f"the lock file {path}", None) from None
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunLocked(f"{target} is in use by another run (PID {holder}); wait for it to finish, "
                            "or write to another directory") from None
        except OSError as e:
            if e.errno not in NO_LOCKS:
                os.close(fd)
                raise
            print(f"warning: {path.parent} does not support file locks; {target} is not guarded against a "
                  "second run", file=sys.stderr)
            return fd, False
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd, True
        except FileNotFoundError:
            pass
        os.close(fd)  # the previous holder removed the file between our open and our lock: lock the new one


@contextmanager
def run_lock(target: str | Path) -> Iterator[None]:
    """Hold the lock of directory `target` for the block; raise RunLocked (naming the holder's PID) if another
    process holds it. Without lock support on the file system it warns on stderr and runs unlocked."""
    target = Path(target)
    path = lock_file(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, locked = _lock(path, target)
    try:
        if locked:
            with suppress(OSError):  # a full disk: the lock holds all the same, a second run says PID "unknown"
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        if locked:
            path.unlink(missing_ok=True)  # while still locked, so no one else holds this file
        os.close(fd)  # releases the lock
