"""`new` under faults: an unwritable folder, a template that would run code, Ctrl-C while starting, and the
staging folder a killed `new` leaves. Each is one line on stderr (or a quiet exit) and leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from generator import render
from tests.conftest import ROOT, commit_and_tag, make_template_repo


def one_error_line(err: str) -> str:
    assert err.count("\n") == 1 and err.startswith("llm-blueprint: error: "), err
    return err


def test_unwritable_parent_is_one_line_and_writes_nothing(cli, tmp_path: Path, monkeypatch) -> None:
    """Root ignores permission bits, so the refusal is simulated where it happens (mkdtemp in the parent)."""
    def refuse(*args, dir=None, **kwargs):
        raise PermissionError(13, "Permission denied", dir)

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    code, _, err = cli("new", str(tmp_path / "proj"), "--yes")
    assert code == 2
    assert f"cannot write in {tmp_path}: Permission denied (nothing was written)" in one_error_line(err)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def unwritable_folder(tmp_path: Path):
    """A real folder this process cannot write in: mode 0o500 for a normal user; as root, /sys where the
    container mounts it read-only (else the test is skipped)."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir(mode=0o500)
        yield folder
        folder.chmod(0o700)
        return
    try:
        os.rmdir(tempfile.mkdtemp(dir="/sys"))
    except OSError:
        yield Path("/sys")
        return
    pytest.skip("running as root with a writable /sys: no folder here refuses writes")


def test_real_unwritable_folder(cli, unwritable_folder: Path) -> None:
    code, _, err = cli("new", str(unwritable_folder / "proj"), "--yes")
    assert code == 2 and f"cannot write in {unwritable_folder}: " in one_error_line(err)
    assert not (unwritable_folder / "proj").exists()


def test_template_that_needs_trust_is_refused(cli, tmp_path: Path) -> None:
    """Copier's UnsafeTemplateError (a template with _tasks) becomes one line; the task never runs."""
    repo = make_template_repo(tmp_path / "tpl")
    canary = tmp_path / "task-ran"
    with (repo / "copier.yml").open("a", encoding="utf-8") as f:
        f.write(f"\n_tasks:\n  - touch {canary}\n")
    commit_and_tag(repo, "add a task", "v1.0.1")
    dest = tmp_path / "out" / "proj"
    code, _, err = cli("new", str(dest), "--yes", "--template", str(repo))
    assert code == 2
    assert f"the template at {repo} needs --trust" in one_error_line(err) and "nothing was written" in err
    assert not canary.exists() and list((tmp_path / "out").iterdir()) == []


# What the console script does, with one line on stderr once Python has started and found run() (a SIGINT
# before that, while the interpreter imports its site module, is Python's to handle, not ours).
ENTRY = "import sys; from generator.__main__ import run; print('started', file=sys.stderr, flush=True); run()"


def start_new(parent: Path, template: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", ENTRY, "new", str(parent / "demo"), "--yes", "--template", str(template)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "CI": "true"})


@pytest.mark.parametrize("delay", [0.0, 0.3, 1.0, 2.5])
def test_ctrl_c_while_starting_is_quiet_and_leaves_nothing(tmp_path: Path, template_repo: Path, delay: float) -> None:
    """SIGINT at a few moments of a real `new` (its imports take a second or more): exit 130 without a
    traceback and nothing in the parent folder, or, when `new` was already done, exit 0 and the project."""
    parent = tmp_path / "parent"
    parent.mkdir()
    proc = start_new(parent, template_repo)
    assert proc.stderr.readline() == "started\n"
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    if proc.returncode == 0:
        assert [p.name for p in parent.iterdir()] == ["demo"] and (parent / "demo" / ".git").is_dir()
    else:
        assert proc.returncode == 130 and err.strip().startswith("llm-blueprint: cancelled"), err
        assert list(parent.iterdir()) == []


def test_staging_left_by_a_killed_new_is_removed_by_the_next(cli, tmp_path: Path, template_repo: Path) -> None:
    parent = tmp_path / "parent"
    parent.mkdir()
    proc = start_new(parent, template_repo)
    deadline = time.monotonic() + 120
    while not list(parent.glob(f".demo-*/{render.STAGING_MARKER}")):  # rendering has begun
        assert proc.poll() is None and time.monotonic() < deadline, "new ended before it was killed"
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    (left,) = [p for p in parent.iterdir()]
    assert left.name.startswith(".demo-")
    mine = parent / ".notes"  # a hidden folder of the user's, and one of a `new` still running
    mine.mkdir()
    running = parent / ".other-abc"
    running.mkdir()
    (running / render.STAGING_MARKER).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    code, _, err = cli("new", str(parent / "second"), "--yes", "--template", str(template_repo))
    assert code == 0, err
    assert sorted(p.name for p in parent.iterdir()) == [".notes", ".other-abc", "second"]
    assert not (parent / "second" / render.STAGING_MARKER).exists()
