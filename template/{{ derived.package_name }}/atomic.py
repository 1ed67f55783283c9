"""Writes that are never seen half-done: write a temporary sibling, then rename it into place.

os.replace is atomic within one file system, so a reader (or a crash) sees the old content or the new one,
never a mixture. prepare(), the manifest and checkpoint snapshots all write this way.

A write that runs out of disk space raises DiskFull, one line naming the file system and the space needed,
after its temporary files are removed; the previous version of the file is never touched.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator


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
