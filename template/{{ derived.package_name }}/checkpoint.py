"""Checkpoints: weights in safetensors, the rest of the training state in a weights-only torch file.

A checkpoint is a pair of files in one directory:
  model.safetensors  the model's tensors (safe to share: loading it runs no code, other tools read it)
  ckpt.pt            optimizer and scaler states, step, RNG states, configs, data manifest hash
  optimizer-NNNNNN/  sharded runs only: each rank's shard of the optimizer state, written with
                     torch.distributed.checkpoint; ckpt.pt's "optimizer" then names this directory
Both are written under temporary names and renamed into place, so a crash never leaves a truncated file,
and both carry the same random save_id, so a crash between the two renames leaves a pair that
load_checkpoint rejects instead of silently mixing weights and optimizer state from different steps.
The weights file also records the sha256 of its tensors and of the model config that shapes them
(DIGEST in its metadata): load_weights recomputes it, and refuses weights whose bytes changed on disk,
a config changed in ckpt.pt (a different n_head reads the same tensors as another model), or weights that hold
NaN/inf, so --resume, `eval` and `generate` never continue from damaged weights. Hashing costs one pass over
the weights (see weights_digest).
Before writing, save_checkpoint checks that the file system has room for both files; a write that still runs
out of space removes its temporary files and raises DiskFull, and the previous checkpoint stays as it was.

A run directory holds the latest pair (what --resume and `generate` read), best/ (the pair with the lowest
validation loss so far) and checkpoints/step-NNNNNN/ (the last `keep_last` evaluations). Those copies are
hard links where the file system allows: the latest files are always replaced by rename, never modified in
place, so a link keeps pointing at the old, complete file.

The rest of what training does when something goes wrong lives here too, because each fault ends in a save or
in keeping one: a stop signal (StopFlag: save at the next step boundary, exit 75), one run per output directory
(run_lock, so two runs never write one checkpoint), a step that does not fit in memory (halve the micro-batch)
and NaN losses (stop before a bad step is saved). train.py calls each helper from one place, so its loop reads
as the algorithm. This file is longer than 400 lines because of that: every way a checkpoint is written, kept or
refused is in one file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import json
import os
import random
import shutil
import signal
import sys
import threading
import uuid
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model as load_safetensors
from safetensors.torch import save_model as save_safetensors

CHECKPOINT = "ckpt.pt"
WEIGHTS = "model.safetensors"  # next to CHECKPOINT
TOKENIZER = "tokenizer.json"  # train copies the data's tokenizer into the run directory
BEST = "best"
HISTORY = "checkpoints"
REQUIRED_KEYS = ("step", "model_config", "optimizer", "rng", "save_id", "weights")
SHARDS = "optimizer-*"  # sharded optimizer states, beside CHECKPOINT
DIGEST = "weights_config_sha256"  # safetensors metadata: weights_digest of the tensors and the model config
LEGACY_DIGEST = "weights_sha256"  # what earlier releases recorded: the tensors alone
PICKLE_OVERHEAD = 1 << 20  # configs, RNG states and file headers on top of the tensors' bytes


def weights_digest(tensors: dict[str, torch.Tensor], model_config: dict[str, Any] | None) -> str:
    """sha256 over the model config (as sorted JSON) and each tensor's name, dtype, shape and bytes, in name order.
    model_config None: the tensors alone, as files saved before the config was covered record it.

    Cost: one pass over the weights at save and at load. Default CPU model (5.3 M parameters, 21 MB): 0.10 s,
    against 0.23 s for the whole save (a busy 2-core AMD EPYC, AVX2 + SHA-NI, one thread, load average 14).
    """
    h = hashlib.sha256(b"" if model_config is None else json.dumps(model_config, sort_keys=True).encode() + b"\n")
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name} {t.dtype} {tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def _tensor_bytes(obj: Any) -> int:
    """Bytes of the tensors in a nested state (dicts, lists, tuples), each storage counted once."""
    found: dict[int, int] = {}

    def walk(o: Any) -> None:
        if isinstance(o, torch.Tensor):
            found[o.untyped_storage().data_ptr()] = o.untyped_storage().nbytes()
        elif isinstance(o, dict):
            for v in o.values():
                walk(v)
        elif isinstance(o, (list, tuple)):
            for v in o:
                walk(v)

    walk(obj)
    return sum(found.values())


def save_checkpoint(path: Path, model: torch.nn.Module, state: dict[str, Any]) -> None:
    """Weights of `model` to model.safetensors beside `path`, `state` (plain values and tensors) to `path`.

    Raises DiskFull (nothing replaced, no temporary file left) when the file system lacks the space."""
    save_id = uuid.uuid4().hex
    weights, tmp_weights = path.with_name(WEIGHTS), path.with_name(WEIGHTS + ".tmp")
    tmp = path.with_name(path.name + ".tmp")
    tensors = model.state_dict()
    meta = {"save_id": save_id, "step": str(state["step"]), "val_loss": repr(state.get("val_loss")),
            DIGEST: weights_digest(tensors, state["model_config"])}
    needed = _tensor_bytes(tensors) + _tensor_bytes(state) + PICKLE_OVERHEAD
    what = f"checkpoint {path}"
    check_space(path.parent, needed, what)
    with removed_on_failure(lambda: (tmp_weights, tmp), path.parent, what, needed):
        save_safetensors(model, str(tmp_weights), metadata=meta)
        torch.save({**state, "weights": WEIGHTS, "save_id": save_id}, tmp)
    os.replace(tmp_weights, weights)
    os.replace(tmp, path)
    for stale in path.parent.glob(SHARDS):  # sharded optimizer states that the new pair no longer names
        if stale.name != state["optimizer"]:
            shutil.rmtree(stale, ignore_errors=True)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The state dict of `path`, checked against its weights file; a bad pair raises a one-line ValueError.

    weights_only=True: only tensors and plain Python values are unpickled, never arbitrary code.
    """
    try:
        # mmap: tensors are read from the file as they are used, not copied into memory first on every rank
        state = torch.load(path, map_location=map_location, weights_only=True, mmap=True)
    except Exception as e:  # truncated, not a torch file, or holds pickled objects
        raise ValueError(f"cannot read checkpoint {path}: {type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
    missing = [k for k in REQUIRED_KEYS if k not in state] if isinstance(state, dict) else list(REQUIRED_KEYS)
    if missing:
        raise ValueError(f"{path} is not a checkpoint of this trainer (missing {', '.join(missing)})")
    weights = path.with_name(state["weights"])
    try:
        with safe_open(str(weights), framework="pt") as f:
            save_id = (f.metadata() or {}).get("save_id")
    except (OSError, SafetensorError) as e:
        raise ValueError(f"cannot read weights {weights}: {str(e).splitlines()[0][:200]}") from None
    if save_id != state["save_id"]:
        raise ValueError(f"{weights} does not belong to {path} (they were saved at different times)")
    return state


def load_weights(model: torch.nn.Module, path: Path, state: dict[str, Any]) -> None:
    """Load the safetensors weights of checkpoint `path` (state from load_checkpoint) into `model`, strictly,
    and check them (see load_checked_weights)."""
    load_checked_weights(model, path.with_name(state["weights"]), path)


def load_checked_weights(model: torch.nn.Module, weights: Path, owner: Path) -> None:
    """Load safetensors file `weights` (of checkpoint `owner`) into `model`, strictly, and check it: the digest
    of its tensors and of the model's config must match the one saved with them (DIGEST in its metadata),
    and every value must be finite. A failed check is a one-line ValueError naming the file (the model's weights
    are then undefined)."""
    try:
        load_safetensors(model, str(weights), strict=True)
        with safe_open(str(weights), framework="pt") as f:
            metadata = f.metadata() or {}
    except (OSError, RuntimeError, SafetensorError) as e:
        raise ValueError(f"weights of {owner} do not fit the model: {str(e).splitlines()[0][:200]}") from None
    tensors = model.state_dict()
    # Files saved before the digest covered the config (weights_sha256: the tensors alone) still load, checked.
    covered = DIGEST in metadata
    expected = metadata.get(DIGEST, metadata.get(LEGACY_DIGEST))
    if expected is None:
        raise ValueError(f"{weights} records no {DIGEST}: it was not saved by this trainer")
    if weights_digest(tensors, dataclasses.asdict(model.config) if covered else None) != expected:
        raise ValueError(f"{weights} is damaged: its tensors or the model config of {owner} do not match the "
                         "digest saved with them")
    bad = next((name for name, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()), None)
    if bad is not None:
        raise ValueError(f"{weights} holds NaN or inf values (in {bad}): refusing to load it")


def get_rng_state(gen: torch.Generator, device: torch.device) -> dict[str, Any]:
    """Every random state training reads: the batch sampler's generator, torch's (dropout), CUDA's, Python's."""
    return {"data": gen.get_state(), "torch": torch.get_rng_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def set_rng_state(rng: dict[str, Any], gen: torch.Generator, device: torch.device) -> None:
    gen.set_state(rng["data"])
    torch.set_rng_state(rng["torch"])
    if rng.get("python") is not None:
        version, internal, gauss = rng["python"]  # a weights-only load returns the inner tuple as a list
        random.setstate((version, tuple(internal), gauss))
    if device.type == "cuda" and rng.get("cuda") is not None:
        torch.cuda.set_rng_state(rng["cuda"], device)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # no hard links here (some network and Windows file systems)
        shutil.copy2(src, dst)


def _snapshot(latest: Path, target: Path) -> None:
    """Make directory `target` hold a copy of the latest pair; built aside, then swapped in by rename."""
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with removed_on_failure(lambda: (tmp,), target.parent, f"a copy of the checkpoint in {target}"):
        for name in (CHECKPOINT, WEIGHTS, TOKENIZER):  # with its tokenizer, a copy is usable on its own
            if latest.with_name(name).is_file():
                _link_or_copy(latest.with_name(name), tmp / name)
        for shards in latest.parent.glob(SHARDS):
            shutil.copytree(shards, tmp / shards.name, copy_function=_link_or_copy)
    replace_dir(tmp, target)


def keep_snapshots(latest: Path, step: int, val_loss: float | None, keep_last: int) -> list[Path]:
    """After saving the latest pair at an evaluation: copy it to checkpoints/step-NNNNNN/ (keeping the
    newest `keep_last`; 0 keeps none) and, when val_loss is the lowest so far, to best/. Returns the new copies."""
    run_dir, made = latest.parent, []
    if keep_last > 0:
        history = run_dir / HISTORY
        target = history / f"step-{step:06d}"
        _snapshot(latest, target)
        made.append(target)
        for old in sorted(p for p in history.iterdir() if p.name.startswith("step-"))[:-keep_last]:
            shutil.rmtree(old)
    if val_loss is not None:
        best = run_dir / BEST / WEIGHTS
        previous = None
        if best.is_file():  # the header alone: no need to read the tensors or the optimizer state
            with safe_open(str(best), framework="pt") as f:
                previous = (f.metadata() or {}).get("val_loss")
        if previous in (None, "None") or val_loss < float(previous):
            _snapshot(latest, run_dir / BEST)
            made.append(run_dir / BEST)
    return made


# -- atomic ----------------------------------------------------------------------------------------------------------
# Writes that are never seen half-done: write a temporary sibling, then rename it into place.
#
# os.replace is atomic within one file system, so a reader (or a crash) sees the old content or the new one,
# never a mixture. prepare(), the manifest and checkpoint snapshots all write this way.
#
# A write that runs out of disk space raises DiskFull, one line naming the file system and the space needed,
# after its temporary files are removed; the previous version of the file is never touched.


class DiskFull(RuntimeError):
    """No space left for a write; its temporary files are already removed."""

    exit_code = 1


def write_json(path: Path, data: dict) -> Path:
    """Write `data` as indented UTF-8 JSON to `path`, atomically; return path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def replace_dir(new: Path, target: Path) -> None:
    """Make directory `new` take the place of `target` (which may not exist yet). A directory cannot be
    renamed onto another, so an old `target` is renamed aside first and deleted once `new` is in place."""
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)


def _mount_point(path: Path) -> Path:
    """The mount point of the file system that holds `path` (or would hold it: missing parts are skipped)."""
    path = Path(os.path.abspath(path))
    while not path.exists():
        path = path.parent
    while not os.path.ismount(path):
        path = path.parent
    return path


def _free_bytes(path: Path) -> int:
    return shutil.disk_usage(_mount_point(path)).free


def disk_full(directory: Path, what: str, needed: int | None) -> DiskFull:
    """The one-line error: 'no space left on /mnt/data: <what> needs up to 42.1 MB, 3.0 MB free'."""
    size = f"needs up to {needed / 1e6:.1f} MB" if needed is not None else "needs more"
    return DiskFull(f"no space left on {_mount_point(directory)}: {what} {size}, "
                    f"{_free_bytes(directory) / 1e6:.1f} MB free")


def check_space(directory: Path, needed: int, what: str) -> None:
    """Raise DiskFull before writing anything when the file system of `directory` has less than `needed` bytes free."""
    if _free_bytes(directory) < needed:
        raise disk_full(directory, what, needed)


def _is_disk_full(e: BaseException, directory: Path, needed: int | None) -> bool:
    """ENOSPC / EDQUOT, or a writer that reports the failure in its own words (torch.save: 'unexpected pos',
    numpy.tofile: 'N requested and 0 written') while the file system is short of what the write needs."""
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(e, Exception) and _free_bytes(directory) < (needed or 1 << 20)


@contextmanager
def removed_on_failure(temporaries: Callable[[], Iterable[Path]], directory: Path, what: str,
                       needed: int | None = None) -> Iterator[None]:
    """Run the block that writes `temporaries()` (files or directories) in `directory`; if it fails, remove
    them, and raise DiskFull instead when the failure was a lack of space. `needed`: bytes the block writes."""
    try:
        yield
    except BaseException as e:
        full = _is_disk_full(e, directory, needed)  # while the partial files still take their space
        for path in temporaries():
            if Path(path).is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                Path(path).unlink(missing_ok=True)
        if full:
            raise disk_full(directory, what, needed) from None
        raise


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
    """Set by SIGTERM (SLURM's time limit or preemption, a launcher shutting down, `kill`), SIGUSR1 (SLURM's
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
