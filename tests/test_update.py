"""A real upgrade: render from template v1, commit a user edit, release v2, update; edits survive, conflicts show."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import commit_and_tag, git, make_template_repo

NOTES = "template/NOTES.md.jinja"
V1_LINES = [f"line {i}" for i in range(1, 21)]


@pytest.fixture
def released(tmp_path: Path) -> Path:
    """A template repository whose v1.0.0 has a 20-line NOTES.md in the generated project."""
    repo = tmp_path / "template"
    make_template_repo(repo)
    (repo / NOTES).write_text("# Notes for {{ project_name }}\n" + "\n".join(V1_LINES) + "\n")
    commit_and_tag(repo, "notes", "v1.0.1")
    return repo


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def release_v2(repo: Path, old: str, new: str) -> None:
    edit(repo / NOTES, old, new)
    (repo / "template" / "ADDED_IN_V2.md").write_text("new file\n")
    commit_and_tag(repo, "v2", "v2.0.0")


def user_commit(project: Path, old: str, new: str) -> None:
    edit(project / "NOTES.md", old, new)
    git("commit", "-qam", "my edit", cwd=project)


def test_update_merges_template_change_and_keeps_user_edit(cli, project: Path, released: Path) -> None:
    user_commit(project, "line 2\n", "line 2 edited by me\n")
    release_v2(released, "line 18\n", "line 18 changed in v2\n")
    code, out, err = cli("update", str(project))
    assert code == 0, err
    notes = (project / "NOTES.md").read_text()
    assert "line 2 edited by me" in notes and "line 18 changed in v2" in notes
    assert (project / "ADDED_IN_V2.md").is_file()
    assert yaml.safe_load((project / ".copier-answers.yml").read_text())["_commit"] == "v2.0.0"
    assert "v1.0.1 -> v2.0.0" in out
    assert git("status", "--porcelain", cwd=project) == ""  # the clean merge was committed
    assert "Update llm-blueprint template v1.0.1 -> v2.0.0" in git("log", "-1", "--format=%s", cwd=project)


def test_overlapping_edit_is_a_conflict_and_never_committed(cli, project: Path, released: Path) -> None:
    user_commit(project, "line 10\n", "line 10 mine\n")
    release_v2(released, "line 10\n", "line 10 theirs\n")
    head = git("rev-parse", "HEAD", cwd=project)
    code, _, err = cli("update", str(project))
    assert code == 1
    assert "conflicts with your edits in: NOTES.md" in err and err.count("\n") == 1
    assert git("rev-parse", "HEAD", cwd=project) == head
    notes = (project / "NOTES.md").read_text()
    assert "<<<<<<<" in notes and "line 10 mine" in notes and "line 10 theirs" in notes


def test_dirty_tree_is_refused(cli, project: Path, released: Path) -> None:
    (project / "NOTES.md").write_text("uncommitted\n")
    release_v2(released, "line 18\n", "line 18 changed in v2\n")
    code, _, err = cli("update", str(project))
    assert code == 2 and "uncommitted changes" in err
    assert (project / "NOTES.md").read_text() == "uncommitted\n"


def test_dry_run_shows_the_change_and_changes_nothing(cli, project: Path, released: Path) -> None:
    release_v2(released, "line 18\n", "line 18 changed in v2\n")
    head = git("rev-parse", "HEAD", cwd=project)
    code, out, err = cli("update", str(project), "--dry-run")
    assert code == 0, err
    assert "+line 18 changed in v2" in out and "ADDED_IN_V2.md" in out and "nothing was changed" in out
    assert git("rev-parse", "HEAD", cwd=project) == head and git("status", "--porcelain", cwd=project) == ""
    assert not (project / "ADDED_IN_V2.md").exists()


def test_dry_run_reports_a_would_be_conflict(cli, project: Path, released: Path) -> None:
    user_commit(project, "line 10\n", "line 10 mine\n")
    release_v2(released, "line 10\n", "line 10 theirs\n")
    code, _, err = cli("update", str(project), "--dry-run")
    assert code == 1 and "would conflict with your edits in: NOTES.md" in err
    assert "<<<<<<<" not in (project / "NOTES.md").read_text()


def test_up_to_date_and_not_a_project(cli, project: Path, tmp_path: Path) -> None:
    code, out, _ = cli("update", str(project))
    assert code == 0 and "up to date" in out
    code, _, err = cli("update", str(tmp_path))
    assert code == 2 and ".copier-answers.yml is missing" in err


def test_plain_copier_update_works_too(project: Path, released: Path) -> None:
    user_commit(project, "line 2\n", "line 2 edited by me\n")
    release_v2(released, "line 18\n", "line 18 changed in v2\n")
    result = subprocess.run([sys.executable, "-m", "copier", "update", "--trust", "--defaults", "--skip-answered"],
                            cwd=project, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    notes = (project / "NOTES.md").read_text()
    assert "line 2 edited by me" in notes and "line 18 changed in v2" in notes
