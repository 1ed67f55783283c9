"""Bring a generated project up to the newest template with `copier update`, without losing the user's edits.

Copier merges the template's changes into the project three-way (old template render, new template render,
the project) and exits 0 even when a merge conflicts, so conflicts are detected here: unmerged paths in the
index (`--conflict inline` markers) and `*.rej` files. A conflicted update is never committed.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import copier
import yaml

from generator.errors import UpdateConflict, UserError
from generator.render import commit_all, refusing_template_code, runs_only_own_code
from generator.source import TemplateSource, git, source_for

ANSWERS_FILE = ".copier-answers.yml"


@dataclass
class UpdateResult:
    old: str
    new: str
    changed: list[str]
    diff: str  # the full change, as `git diff` shows it


def read_answers(project: Path) -> dict:
    path = project / ANSWERS_FILE
    if not path.is_file():
        raise UserError(f"{project} is not a generated project: {ANSWERS_FILE} is missing")
    try:
        answers = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        problem = getattr(e, "problem", None) or getattr(e, "strerror", None) or e
        raise UserError(f"{path} cannot be read as YAML ({problem}); restore it from git, then update") from None
    if not isinstance(answers, dict) or "_src_path" not in answers or "_commit" not in answers:
        raise UserError(f"{path} records no template source or revision (_src_path, _commit); it cannot be updated")
    return answers


def check_clean_repo(project: Path) -> None:
    top = git("rev-parse", "--show-toplevel", cwd=project, check=False).strip()
    if not top or Path(top).resolve() != project.resolve():
        raise UserError(f"{project} is not the root of a git repository; `update` merges through git history")
    if git("status", "--porcelain", cwd=project).strip():
        raise UserError(f"{project} has uncommitted changes; commit or stash them first (nothing was changed)")


def conflicts(project: Path) -> list[str]:
    """Files the merge left conflicted: unmerged index entries and reject files."""
    unmerged = {line.split("\t", 1)[1] for line in git("ls-files", "-u", cwd=project).splitlines() if "\t" in line}
    status = git("status", "--porcelain", "--untracked-files=all", cwd=project).splitlines()
    rejects = {line[3:] for line in status if line.endswith(".rej")}
    return sorted(unmerged | rejects)


def changed_files(project: Path) -> list[str]:
    status = git("status", "--porcelain", "--untracked-files=all", cwd=project).splitlines()
    return sorted(line[3:] for line in status)


def run_copier_update(project: Path, source: TemplateSource) -> None:
    """Copier reads the source location from the answers file; `source` decides the revision."""
    with warnings.catch_warnings(), refusing_template_code(source):
        warnings.simplefilter("ignore")
        copier.run_update(
            str(project),
            vcs_ref=source.ref,
            defaults=True,
            overwrite=True,
            skip_answered=True,
            conflict="inline",
            quiet=True,
            unsafe=runs_only_own_code(source),  # see render.py: our own extension, nothing else
        )


def update_project(project: Path, *, dry_run: bool = False, commit: bool = True) -> UpdateResult:
    """Update `project` in place (or a throwaway clone of it, for a dry run); raise UpdateConflict on conflicts."""
    project = project.resolve()
    answers = read_answers(project)
    check_clean_repo(project)
    source = source_for(str(answers["_src_path"]))
    if dry_run:
        scratch = Path(tempfile.mkdtemp(prefix="llm-blueprint-dry-run-"))
        try:
            clone = scratch / project.name
            git("clone", "-q", str(project), str(clone), cwd=scratch)
            return _update(clone, answers, source, commit=False, dry_run=True)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return _update(project, answers, source, commit=commit, dry_run=False)


def _update(project: Path, answers: dict, source: TemplateSource, *, commit: bool, dry_run: bool) -> UpdateResult:
    run_copier_update(project, source)
    new = str(read_answers(project)["_commit"])
    found = conflicts(project)
    if found:
        raise UpdateConflict(found, dry_run=dry_run)
    changed = changed_files(project)
    git("add", "-A", cwd=project)
    diff = git("diff", "--cached", "--stat", "--patch", cwd=project)
    if changed and commit:
        commit_all(project, f"Update llm-blueprint template {answers['_commit']} -> {new}", str(answers.get("author", "")))
    return UpdateResult(str(answers["_commit"]), new, changed, diff)
