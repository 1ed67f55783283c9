"""Generated projects install in a fresh virtual environment and pass their own tests (as copier-uv does).

One combination per track plus a multi-GPU budget. For practitioner/cpu (the only one outside the slow marker)
the generated README's first two commands are run exactly as written: set up and train the tiny config on the
built-in corpus, then the tests. The other three install with the dev extra and run every test, slow ones too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from generator.cli import readme_commands



def bash(command: str, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return subprocess.run(["bash", "-c", f"set -euo pipefail\n{command}"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def fresh_venv(project: Path) -> None:
    """Create the project's .venv with this machine's CPU torch (what the README tells CPU-only users to do)."""
    result = bash(f"{sys.executable} -m venv .venv && .venv/bin/pip install -q torch=={torch.__version__.split('+')[0]}",
                  cwd=project)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize(
    ("track", "budget", "follow_readme"),
    [
        ("practitioner", "cpu", True),  # the default run (and CI) installs this one
        pytest.param("beginner", "cpu", False, marks=pytest.mark.slow),
        pytest.param("researcher", "gpu-24gb", False, marks=pytest.mark.slow),
        pytest.param("practitioner", "node-8gpu", False, marks=pytest.mark.slow),
    ],
)
def test_generated_project_installs_and_passes_its_tests(cli, tmp_path: Path, template_repo: Path,
                                                         track: str, budget: str, follow_readme: bool) -> None:
    project = tmp_path / "demo"
    code, _, err = cli("new", str(project), "--track", track, "--budget", budget, "--yes", "--template", str(template_repo))
    assert code == 0, err
    setup_and_train, run_tests = readme_commands(project / "README.md")[:2]
    assert "train" in setup_and_train and "pytest" in run_tests
    fresh_venv(project)
    try:
        if follow_readme:
            result = bash(setup_and_train, cwd=project)
            assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
            evals = [json.loads(line) for line in (project / "runs" / "tiny" / "metrics.jsonl").read_text().splitlines()]
            val = [e["val_loss"] for e in evals if "val_loss" in e]
            assert len(val) >= 2 and val[-1] < val[0] - 0.5, val  # validation loss fell on the built-in corpus
        else:
            result = bash('. .venv/bin/activate && pip install -q -e ".[dev]"', cwd=project)
            assert result.returncode == 0, result.stderr[-3000:]
        everything = run_tests if follow_readme else 'pytest -m ""'  # the slow installs run the slow tests too
        result = bash(f". .venv/bin/activate && {everything}", cwd=project)
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        assert " passed" in result.stdout and " failed" not in result.stdout
    finally:
        shutil.rmtree(project / ".venv", ignore_errors=True)  # about 1 GB each
