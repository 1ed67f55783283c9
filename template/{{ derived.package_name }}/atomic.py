"""Writes that are never seen half-done: write a temporary sibling, then rename it into place.

os.replace is atomic within one file system, so a reader (or a crash) sees the old content or the new one,
never a mixture. prepare(), the manifest and checkpoint snapshots all write this way.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path


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
