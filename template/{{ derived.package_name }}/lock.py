"""One process at a time per output directory: `prepare` locks its data directory, `train` its run directory.

The lock is fcntl.flock on a file beside the directory (`.<name>.lock`; beside it, because prepare replaces its
directory as a whole), removed again on release. The holder writes its PID into the file, so a second run can
name it. The kernel releases a flock when its holder exits, however it dies (kill -9 included), so a lock file
left by a dead process is simply taken over: there is no stale lock to detect. The `filelock` package wraps
the same call but keeps no holder PID in the file, so it could not say who holds the lock. flock is POSIX
(Linux, macOS).
"""

from __future__ import annotations

import errno
import fcntl
import os
import sys
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Iterator

from .atomic import disk_full

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
