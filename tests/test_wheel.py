"""Installed from a wheel (no git checkout): generate with release A, upgrade to release B, update the project.

The wheel carries the template as plain files; generator/source.py commits each release into a tagged git
repository in the data folder, which is what lets `llm-blueprint update` and plain `copier update` work.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import ROOT, git, run_python

SOURCES = ["copier.yml", "template", "tracks", "generator", "pyproject.toml", "hatch_build.py", "README.md"]


def build_wheel(tmp: Path, name: str, version: str, template_edit=None) -> Path:
    """Build llm-blueprint's wheel from a copy of this checkout, with another version and an optional edit."""
    src = tmp / f"src-{name}"
    src.mkdir()
    for part in SOURCES:
        path = ROOT / part
        if path.is_dir():
            shutil.copytree(path, src / part, ignore=shutil.ignore_patterns("__pycache__", "_bundled"))
        else:
            shutil.copy2(path, src / part)
    pyproject = src / "pyproject.toml"
    pyproject.write_text(re.sub(r'(?m)^version = ".*"$', f'version = "{version}"', pyproject.read_text()))
    if template_edit:
        template_edit(src)
    out = tmp / f"wheels-{name}"
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(out), str(src)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return next(out.glob("llm_blueprint-*.whl"))


def install(wheel: Path, target: Path) -> dict[str, str]:
    """pip-install the wheel into its own folder; the environment that makes Python use it first."""
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                             str(wheel)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return {"PYTHONPATH": str(target)}


def test_wheel_install_generates_and_updates_offline(tmp_path: Path) -> None:
    home = tmp_path / "home"

    def add_v2_change(src: Path) -> None:
        gitignore = src / "template" / ".gitignore"
        gitignore.write_text(gitignore.read_text() + "# added by release 0.2.0\nwandb/\n")

    wheel_a = build_wheel(tmp_path, "a", "0.1.0")
    wheel_b = build_wheel(tmp_path, "b", "0.2.0", add_v2_change)
    env_a = {**install(wheel_a, tmp_path / "site-a"), "LLM_BLUEPRINT_HOME": str(home), "CI": "true"}

    for name in ("by-cli", "by-copier"):
        result = run_python("-m", "generator", "new", name, "--yes", cwd=tmp_path, env=env_a)
        assert result.returncode == 0, result.stderr
        answers = yaml.safe_load((tmp_path / name / ".copier-answers.yml").read_text())
        assert answers["_src_path"] == str(home / "template") and answers["_commit"] == "v0.1.0"
        readme = tmp_path / name / "README.md"
        readme.write_text("My own first line.\n" + readme.read_text())
        git("commit", "-qam", "my edit", cwd=tmp_path / name)

    env_b = {**install(wheel_b, tmp_path / "site-b"), "LLM_BLUEPRINT_HOME": str(home), "CI": "true"}
    result = run_python("-m", "generator", "update", "by-cli", cwd=tmp_path, env=env_b)
    assert result.returncode == 0, result.stderr
    assert "v0.1.0 -> v0.2.0" in result.stdout
    assert git("tag", "--list", cwd=home / "template").split() == ["v0.1.0", "v0.2.0"]

    # Plain Copier, with no llm-blueprint involved, updates from the same materialised repository.
    result = subprocess.run([sys.executable, "-m", "copier", "update", "--trust", "--defaults",
                             "--skip-answered"],
                            cwd=tmp_path / "by-copier", capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    git("commit", "-qam", "update", cwd=tmp_path / "by-copier")

    for name in ("by-cli", "by-copier"):
        project = tmp_path / name
        assert (project / "README.md").read_text().startswith("My own first line.\n")
        assert "wandb/" in (project / ".gitignore").read_text()
        assert yaml.safe_load((project / ".copier-answers.yml").read_text())["_commit"] == "v0.2.0"
        assert git("status", "--porcelain", cwd=project) == ""
