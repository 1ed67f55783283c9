"""Shared fixtures: the real template spec, throwaway template repositories, and CLI runners."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from generator.cli import main
from generator.source import copy_template
from generator.spec import TemplateSpec

ROOT = Path(__file__).resolve().parents[1]


def git(*args: str, cwd: Path) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=env).stdout


def make_template_repo(dest: Path, tag: str = "v1.0.0") -> Path:
    """A git repository holding a copy of this checkout's template (copier.yml, template/, tracks/), tagged."""
    dest.mkdir(parents=True)
    copy_template(ROOT, dest)
    git("init", "-q", "-b", "main", cwd=dest)
    commit_and_tag(dest, "template v1", tag)
    return dest


def commit_and_tag(repo: Path, message: str, tag: str | None = None) -> None:
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", message, cwd=repo)
    if tag:
        git("tag", tag, cwd=repo)


@pytest.fixture(scope="session")
def spec() -> TemplateSpec:
    return TemplateSpec(ROOT)


@pytest.fixture(scope="session")
def template_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tagged copy of the template, shared read-only by the tests that only render from it."""
    return make_template_repo(tmp_path_factory.mktemp("tpl") / "template")


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    """Run `llm-blueprint ARGS` in-process with no terminal; returns (exit code, stdout, stderr)."""
    monkeypatch.setenv("CI", "true")

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def run_python(*args: str, cwd: Path, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


@pytest.fixture
def project(cli, tmp_path: Path, released: Path) -> Path:
    """A practitioner project generated from the test module's `released` template repository."""
    dest = tmp_path / "proj"
    code, _, err = cli("new", str(dest), "--yes", "--track", "practitioner", "--template", str(released))
    assert code == 0, err
    return dest
