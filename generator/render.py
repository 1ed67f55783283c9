"""Render the template into a new folder and make it a git repository with one commit.

The project is rendered into a hidden temporary sibling of the destination and moved into place only when
rendering and the first commit succeeded, so a failure or Ctrl-C never leaves a half-written project, and an
existing non-empty folder is never touched. A staging folder holds a marker file (this process's PID and host)
while the template renders into it; one left behind by a `new` that was killed (kill -9, a power cut) is removed by the
next `new` in the same parent folder, once its PID is no longer running on this host.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import copier
import yaml
from copier.errors import UnsafeTemplateError

from generator.errors import UserError
from generator.source import TemplateSource, git

STAGING_MARKER = ".llm-blueprint-staging"  # inside a staging folder: {"pid": ..., "host": ...}


def check_destination(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UserError(f"{dest} already exists and is not empty; choose a new folder (nothing was written)")


# Copier runs code from a template only when trusted. llm-blueprint trusts exactly its own Jinja extensions (the
# numbers and answer checks of generator/formulas.py and the roadmap's words of generator/roadmap_text.py, loaded
# from the template repository itself) and nothing else: a template with tasks, migrations or another extension is
# refused with a one-line error.
OWN_EXTENSIONS = ["copier_template_extensions.TemplateExtensionLoader", "generator/formulas.py:Formulas",
                  "generator/roadmap_text.py:RoadmapText"]


def runs_only_own_code(source: TemplateSource) -> bool:
    """Whether the template's copier.yml asks to run no code but llm-blueprint's own extension."""
    try:
        config = yaml.safe_load((Path(source.location) / "copier.yml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False  # a URL, or no readable copier.yml: Copier decides, untrusted
    return (isinstance(config, dict) and not config.get("_tasks") and not config.get("_migrations")
            and config.get("_jinja_extensions", []) in ([], OWN_EXTENSIONS))


@contextmanager
def refusing_template_code(source: TemplateSource) -> Iterator[None]:
    """Copier's UnsafeTemplateError (tasks, migrations or other Jinja extensions: code we do not run) as one line.
    Copier raises it before it writes anything, in `copy` and in `update`."""
    try:
        yield
    except UnsafeTemplateError as e:
        raise UserError(f"the template at {source.location} needs --trust ({str(e).splitlines()[0].rstrip('.')}); "
                        "llm-blueprint never runs template code (nothing was written)") from None


@contextmanager
def running_copier(source: TemplateSource) -> Iterator[dict[str, Any]]:
    """What every Copier call of ours shares, as keyword arguments: `source`'s revision, no questions, no prompt
    before overwriting, quiet, and trust only for our own extension; template code refused in one line."""
    with warnings.catch_warnings(), refusing_template_code(source):
        warnings.simplefilter("ignore")  # Copier warns that a dirty checkout's changes are included
        yield {"vcs_ref": source.ref, "defaults": True, "overwrite": True, "quiet": True,
               "unsafe": runs_only_own_code(source)}


def render(source: TemplateSource, dest: Path, answers: dict[str, Any]) -> None:
    """Plain Copier rendering with every answer given: the same call `copier copy --data ...` makes."""
    with running_copier(source) as settings:
        copier.run_copy(source.location, str(dest), data=answers, **settings)


def commit_all(repo: Path, message: str, author: str) -> None:
    """Commit everything, with the user's git identity when they have one."""
    identity: list[str] = []
    if not git("config", "user.email", cwd=repo, check=False).strip():
        identity = ["-c", f"user.name={author or 'llm-blueprint'}", "-c", "user.email=llm-blueprint@users.noreply.localhost"]
    git("add", "-A", cwd=repo)
    git(*identity, "commit", "-q", "-m", message, cwd=repo)


def _may_be_running(owner: dict) -> bool:
    """Whether the process that wrote a staging marker may still be running (unknown counts as running)."""
    pid = owner.get("pid")
    if owner.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def remove_stale_staging(parent: Path) -> list[Path]:
    """Remove the staging folders in `parent` that a killed `new` left: they hold our marker, and the PID in
    it is not running on this host. Returns the folders removed."""
    removed = []
    for marker in sorted(parent.glob(f".*/{STAGING_MARKER}")):
        try:
            owner = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(owner, dict) and not _may_be_running(owner):
            shutil.rmtree(marker.parent, ignore_errors=True)
            removed.append(marker.parent)
    return removed


def create_project(source: TemplateSource, dest: Path, answers: dict[str, Any], *, init_git: bool = True) -> None:
    dest = dest.resolve()
    check_destination(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(dest.parent)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    except OSError as e:
        raise UserError(f"cannot write in {dest.parent}: {e.strerror or e} (nothing was written)") from None
    try:
        marker = staging / STAGING_MARKER
        marker.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}), encoding="utf-8")
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; the project gets the usual permissions
        render(source, staging, answers)
        marker.unlink()  # not part of the project
        if init_git:
            git("init", "-q", "-b", "main", cwd=staging)
            commit_all(staging, f"Generate {answers['project_name']} with llm-blueprint", answers.get("author", ""))
        check_destination(dest)  # it may have appeared meanwhile
        if dest.exists():
            dest.rmdir()
        staging.rename(dest)
    except BaseException as e:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise UserError(f"no space left in {dest.parent}: {e.strerror} (nothing was written)") from None
        raise
