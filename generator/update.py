"""Bring a generated project up to the newest template with `copier update`, without losing the user's edits.

Copier merges the template's changes into the project three-way (old template render, new template render,
the project) and exits 0 even when a merge conflicts, so conflicts are detected here: unmerged paths in the
index (`--conflict inline` markers) and `*.rej` files. A conflicted update is never committed.

`add_layer` is the same update with one answer changed: Copier renders the old template with the recorded answers
and the new one with `layers` passed as data (stored in the answers file, since it is a question), so the layer's
files arrive as a template change and merge with the user's edits like any other. A project generated before
layers existed records no `layers` answer: its update passes the layers that hold what it had.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import copier
import yaml

from generator.errors import UpdateConflict, UserError
from generator.formulas import layers_error, with_needs
from generator.layers import previous_release_layers, project_layers
from generator.render import commit_all, running_copier
from generator.source import TemplateSource, git, source_for, template_files
from generator.spec import TemplateSpec

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


def source_spec(source: TemplateSource) -> TemplateSpec:
    """The questions and catalog of the template a project updates from: its folder where it is on this machine
    (this checkout, the materialised releases, a fork given to `new --template`), else this install's."""
    root = Path(source.location)
    return TemplateSpec(root if (root / "copier.yml").is_file() else template_files())


def run_copier_update(project: Path, source: TemplateSource, data: dict) -> None:
    """Copier reads the source location from the answers file; `source` decides the revision, `data` overrides
    recorded answers."""
    with running_copier(source) as settings:
        copier.run_update(str(project), data=data, skip_answered=True, conflict="inline", **settings)


def update_project(project: Path, *, dry_run: bool = False, commit: bool = True, layers: list[str] | None = None,
                   message: str | None = None) -> UpdateResult:
    """Update `project` in place (or a throwaway clone of it, for a dry run); raise UpdateConflict on conflicts.
    `layers` replaces the project's layers answer; `message` heads the commit instead of "Update ...". """
    project = project.resolve()
    answers = read_answers(project)
    check_clean_repo(project)
    source = source_for(str(answers["_src_path"]))
    if layers is None and "layers" not in answers:  # generated before layers existed: keep what it had
        layers = previous_release_layers(source_spec(source).catalog, answers)
    data = {} if layers is None else {"layers": layers}
    if dry_run:
        scratch = Path(tempfile.mkdtemp(prefix="llm-blueprint-dry-run-"))
        try:
            clone = scratch / project.name
            git("clone", "-q", str(project), str(clone), cwd=scratch)
            return _update(clone, answers, source, data, commit=False, dry_run=True, message=message)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return _update(project, answers, source, data, commit=commit, dry_run=False, message=message)


def _update(project: Path, answers: dict, source: TemplateSource, data: dict, *, commit: bool, dry_run: bool,
            message: str | None) -> UpdateResult:
    run_copier_update(project, source, data)
    old, new = str(answers["_commit"]), str(read_answers(project)["_commit"])
    found = conflicts(project)
    if found:
        raise UpdateConflict(found, dry_run=dry_run)
    changed = changed_files(project)
    git("add", "-A", cwd=project)
    diff = git("diff", "--cached", "--stat", "--patch", cwd=project)
    if changed and commit:
        template = f"template {old} -> {new}"
        summary = f"Update llm-blueprint {template}" if message is None else message + (
            f" ({template})" if new != old else "")
        commit_all(project, summary, str(answers.get("author", "")))
    return UpdateResult(old, new, changed, diff)


@dataclass
class AddResult:
    added: list[str]  # the layer and the layers it needed that the project lacked; [] when it had the layer
    update: UpdateResult | None  # None when nothing was done


def add_layer(project: Path, layer: str) -> AddResult:
    """Add `layer` and the layers it needs to `project`: an update with its `layers` answer changed, committed
    when it merges cleanly (UpdateConflict otherwise). An unknown layer is a UserError before anything runs."""
    project = project.resolve()
    answers = read_answers(project)
    catalog = source_spec(source_for(str(answers["_src_path"]))).catalog
    present = project_layers(catalog, answers)
    error = layers_error([*present, layer], catalog, str(answers.get("data_source", "shakespeare")))
    if error:
        raise UserError(f"{error} (nothing was changed)")
    if layer in present:
        return AddResult([], None)
    wanted = with_needs(catalog, [*present, layer])
    added = [name for name in wanted if name not in present]
    needed = [name for name in added if name != layer]
    also = f" (with {', '.join(needed)}, which it needs)" if needed else ""
    result = update_project(project, layers=wanted, message=f"Add the {layer} layer{also} with llm-blueprint add")
    return AddResult(added, result)
