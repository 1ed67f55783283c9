"""The questionary wizard, driven by scripted keystrokes through prompt_toolkit's pipe input."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from prompt_toolkit.application import create_app_session
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

import generator.cli
from generator.cli import main

DOWN, ENTER, CLEAR, CTRL_C = "\x1b[B", "\r", "\x15", "\x03"


@pytest.fixture
def wizard(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    """Run `llm-blueprint ARGS` as if at a terminal, typing `keys` one prompt after another."""
    monkeypatch.setattr(generator.cli, "is_interactive", lambda: True)

    def run(keys: list[str], *args: str) -> tuple[int, str, str]:
        with create_pipe_input() as pipe, create_app_session(input=pipe, output=DummyOutput()):
            for chunk in keys:
                pipe.send_text(chunk)
            code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_full_wizard_writes_what_was_chosen(wizard, tmp_path: Path, template_repo: Path) -> None:
    dest = tmp_path / "wiz"
    keys = [
        ENTER,                         # project name: keep the folder's name
        DOWN + ENTER,                  # track: practitioner
        DOWN * 4 + ENTER,              # budget: cluster
        CLEAR + "6" + ENTER,           # nodes
        CLEAR + "12.5" + ENTER,        # hours
        ENTER,                         # data source: shakespeare
        DOWN + ENTER,                  # licence: Apache-2.0
        "Ada Lovelace" + ENTER,        # author
        " " + ENTER,                   # layers: untick governance (the first), keep the rest
        "y",                           # create?
    ]
    code, out, err = wizard(keys, "new", str(dest), "--template", str(template_repo))
    assert code == 0, err
    answers = yaml.safe_load((dest / ".copier-answers.yml").read_text())
    assert {k: answers[k] for k in ("project_name", "track", "budget", "nodes", "hours", "license", "author")} == {
        "project_name": "wiz", "track": "practitioner", "budget": "cluster", "nodes": 6, "hours": 12.5,
        "license": "Apache-2.0", "author": "Ada Lovelace",
    }
    assert "6 nodes x 8 GPUs (48 GPUs)" in out  # the plan was shown before writing
    assert "governance" not in answers["layers"] and "lora" in answers["layers"] and "distributed" in answers["layers"]
    assert re.search(r"^  layers +datasets, distributed, precision, ", out, re.M)  # the plan names them


def test_flags_skip_their_questions_and_invalid_answers_are_asked_again(wizard, tmp_path: Path, template_repo: Path,
                                                                        spec) -> None:
    keys = [
        "Bad Name" + ENTER,            # rejected by copier.yml's validator; the prompt stays
        CLEAR + "good-name" + ENTER,
        CLEAR + "0" + ENTER,           # hours: rejected
        CLEAR + "2" + ENTER,
        ENTER, ENTER, ENTER,           # data source, licence, author
        ENTER,                         # layers: the track's and budget's
        "y",
    ]
    code, _, err = wizard(keys, "new", "--track", "researcher", "--budget", "gpu-24gb",
                          "--template", str(template_repo), str(tmp_path / "good"))
    assert code == 0, err
    answers = yaml.safe_load((tmp_path / "good" / ".copier-answers.yml").read_text())
    assert answers["project_name"] == "good-name" and answers["hours"] == 2.0 and answers["track"] == "researcher"
    assert answers["layers"] == spec.default(spec.question("layers"), answers)


def test_ctrl_c_leaves_nothing_behind(wizard, tmp_path: Path) -> None:
    code, _, err = wizard([ENTER, ENTER + CTRL_C], "new", str(tmp_path / "gone"))
    assert code == 130 and "cancelled; nothing was written" in err
    assert list(tmp_path.iterdir()) == []


def test_declining_the_plan_writes_nothing(wizard, tmp_path: Path) -> None:
    code, out, _ = wizard([ENTER] * 8 + ["n"], "new", str(tmp_path / "declined"))
    assert code == 1 and "Nothing was written." in out
    assert list(tmp_path.iterdir()) == []


def test_layers_the_data_source_needs_cannot_be_unticked(wizard, tmp_path: Path, template_repo: Path) -> None:
    keys = [
        DOWN + " " + ENTER,            # layers: untick datasets, which the JSONL reader is in: refused, asked again
        " " + ENTER,                   # tick it again
        "y",
    ]
    code, _, err = wizard(keys, "new", str(tmp_path / "j"), "--name", "j", "--track", "beginner", "--budget", "cpu",
                          "--hours", "1", "--data-source", "jsonl", "--data-path", "data/*.jsonl", "--license", "MIT",
                          "--author", "", "--template", str(template_repo))
    assert code == 0, err
    assert "datasets" in yaml.safe_load((tmp_path / "j" / ".copier-answers.yml").read_text())["layers"]
