"""The generator on bad input: one line on stderr, exit 2, nothing written or changed. `update` from a template that
would run code or with an answers file that is not YAML, `new` on a full disk, and names the shell would take."""

from __future__ import annotations

import errno
from pathlib import Path

import copier
import pytest

from generator.formulas import project_name_error
from tests.conftest import commit_and_tag, git, make_template_repo


def one_error_line(err: str) -> str:
    assert err.count("\n") == 1 and err.startswith("llm-blueprint: error: "), err
    return err


@pytest.fixture
def released(tmp_path: Path) -> Path:
    repo = tmp_path / "template"
    make_template_repo(repo)
    return repo


def test_update_to_a_template_with_tasks_is_refused_and_runs_nothing(cli, project: Path, released: Path,
                                                                     tmp_path: Path) -> None:
    canary = tmp_path / "task-ran"
    with (released / "copier.yml").open("a", encoding="utf-8") as f:
        f.write(f"\n_tasks:\n  - touch {canary}\n")
    commit_and_tag(released, "add a task", "v2.0.0")
    head = git("rev-parse", "HEAD", cwd=project)
    code, _, err = cli("update", str(project))
    assert code == 2 and "needs --trust" in one_error_line(err)
    assert not canary.exists()
    assert git("rev-parse", "HEAD", cwd=project) == head and git("status", "--porcelain", cwd=project) == ""


def test_update_with_answers_that_are_not_yaml_is_one_line(cli, project: Path) -> None:
    answers = project / ".copier-answers.yml"
    answers.write_text("_commit: v1.0.0\n_src_path: [unclosed\n")
    git("commit", "-qam", "broken answers", cwd=project)
    code, _, err = cli("update", str(project))
    assert code == 2 and f"{answers} cannot be read as YAML" in one_error_line(err)
    assert answers.read_text() == "_commit: v1.0.0\n_src_path: [unclosed\n"


def test_new_on_a_full_disk_is_one_line_and_leaves_nothing(cli, tmp_path: Path, monkeypatch) -> None:
    """The disk fills while Copier writes (simulated where it happens: a file is written, then ENOSPC)."""
    def fill_the_disk(src, dst, **kwargs):
        (Path(dst) / "README.md").write_text("half a project")
        raise OSError(errno.ENOSPC, "No space left on device", str(Path(dst) / "pyproject.toml"))

    monkeypatch.setattr(copier, "run_copy", fill_the_disk)
    parent = tmp_path / "parent"
    code, _, err = cli("new", str(parent / "proj"), "--yes")
    assert code == 2 and f"no space left in {parent}: No space left on device" in one_error_line(err)
    assert list(parent.iterdir()) == []


@pytest.mark.parametrize("name", ["test", "echo", "true", "wait", "type", "source"])
def test_shell_builtins_are_refused_as_names(name: str) -> None:
    assert "shell builtin" in project_name_error(name)


def test_ordinary_names_stay_accepted() -> None:
    assert [project_name_error(n) for n in ("tester", "my-llm", "echo-chamber")] == ["", "", ""]
