"""Render the template into a new folder and make it a git repository with one commit.

The project is rendered into a hidden temporary sibling of the destination and moved into place only when
rendering and the first commit succeeded, so a failure or Ctrl-C never leaves a half-written project, and an
existing non-empty folder is never touched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import copier

from generator.errors import UserError
from generator.source import TemplateSource, git


def check_destination(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UserError(f"{dest} already exists and is not empty; choose a new folder (nothing was written)")


def render(source: TemplateSource, dest: Path, answers: dict[str, Any]) -> None:
    """Plain Copier rendering with every answer given: the same call `copier copy --data ...` makes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Copier warns that a dirty checkout's changes are included
        copier.run_copy(
            source.location,
            str(dest),
            data=answers,
            vcs_ref=source.ref,
            defaults=True,
            overwrite=True,
            quiet=True,
            unsafe=True,  # the template loads generator/formulas.py as a Jinja extension
        )


def commit_all(repo: Path, message: str, author: str) -> None:
    """Commit everything, with the user's git identity when they have one."""
    identity: list[str] = []
    if not git("config", "user.email", cwd=repo, check=False).strip():
        identity = ["-c", f"user.name={author or 'llm-blueprint'}", "-c", "user.email=llm-blueprint@users.noreply.localhost"]
    git("add", "-A", cwd=repo)
    git(*identity, "commit", "-q", "-m", message, cwd=repo)


def create_project(source: TemplateSource, dest: Path, answers: dict[str, Any], *, init_git: bool = True) -> None:
    dest = dest.resolve()
    check_destination(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; the project gets the usual permissions
        render(source, staging, answers)
        if init_git:
            git("init", "-q", "-b", "main", cwd=staging)
            commit_all(staging, f"Generate {answers['project_name']} with llm-blueprint", answers.get("author", ""))
        check_destination(dest)  # it may have appeared meanwhile
        if dest.exists():
            dest.rmdir()
        staging.rename(dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
