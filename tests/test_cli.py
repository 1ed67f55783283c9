"""CLI flags, defaults and bad input: one line on stderr, exit code 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, run_python


def test_new_with_flags_renders_commits_and_prints_next_steps(cli, tmp_path: Path, template_repo: Path) -> None:
    dest = tmp_path / "demo"
    code, out, err = cli("new", str(dest), "--track", "practitioner", "--budget", "cpu", "--yes",
                         "--template", str(template_repo))
    assert code == 0, err
    answers = yaml.safe_load((dest / ".copier-answers.yml").read_text())
    assert answers["project_name"] == "demo" and answers["track"] == "practitioner" and answers["budget"] == "cpu"
    assert answers["_commit"] == "v1.0.0" and answers["_src_path"] == str(template_repo)
    assert "Plan for demo" in out and "parameters" in out and "tokens" in out
    assert f"cd {dest}" in out and "train" in out  # next steps come from the generated README
    from tests.conftest import git
    assert git("status", "--porcelain", cwd=dest) == ""
    assert "Generate demo" in git("log", "--oneline", cwd=dest)


def test_every_question_is_a_flag_in_help(spec) -> None:
    result = run_python("-m", "generator", "new", "--help", cwd=ROOT)
    assert result.returncode == 0
    assert len(spec.questions) == 10
    for q in spec.questions:
        assert q.flag in result.stdout
    assert "beginner, practitioner, researcher" in result.stdout
    assert "cpu, gpu-24gb, gpu-80gb, node-8gpu, cluster" in result.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--track", "wizard"], "unknown track 'wizard'; choose one of: beginner, practitioner, researcher"),
        (["--budget", "tpu-pod"], "unknown budget 'tpu-pod'"),
        (["--hours", "-3"], "hours must be more than 0"),
        (["--hours", "lots"], "--hours expects a number, got 'lots'"),
        (["--nodes", "4"], "--nodes does not apply with --budget cpu"),
        (["--budget", "cluster", "--nodes", "1"], "a cluster needs between 2 and 512 nodes, got 1"),
        (["--budget", "cluster", "--nodes", "x"], "--nodes expects an integer"),
        (["--data-path", "x/*.txt"], "--data-path does not apply with --data-source shakespeare"),
        (["--license", "GPL"], "unknown license 'GPL'"),
        (["--layers", "serve,rocket"], "unknown layer 'rocket'; choose from: governance, datasets"),
        (["--data-source", "jsonl", "--data-path", "d/*.jsonl", "--layers", "serve"],
         "the data source 'jsonl' needs the datasets layer (--layers)"),
        (["--name", "My Model"], "project name 'My Model' must be lowercase letters"),
        (["--name", "torch"], "would shadow a Python module"),
        (["--name", "json"], "project name 'json' would shadow a Python module"),  # standard library
        (["--name", "pip"], "project name 'pip' would shadow a Python module or tool"),
        (["--name", "setuptools"], "project name 'setuptools' would shadow a Python module or tool"),
        (["--name", "wheel"], "project name 'wheel' would shadow a Python module or tool"),
        (["--name", "class"], "project name 'class' is a Python keyword"),
        (["--hours", "nan"], "hours must be more than 0 and at most 10000, got nan"),
        (["--hours", "inf"], "hours must be more than 0 and at most 10000, got inf"),
        (["--hours", "0.001"], "0.001 hours give 5 optimizer steps on this budget, fewer than its 100 warmup steps; "
                               "give at least 0.018 hours"),
        (["--author", "Ada\tLovelace"], "the author must be printable text on one line"),
        (["--author", "A" * 101], "the author is longer than 100 characters"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(cli, tmp_path: Path, args: list[str], expected: str) -> None:
    dest = tmp_path / "proj"
    code, out, err = cli("new", str(dest), "--yes", *args)
    assert code == 2
    assert expected in err
    assert err.count("\n") == 1 and err.startswith("llm-blueprint: error: ")
    assert not dest.exists()


@pytest.mark.parametrize("hours", ["nan", "inf", "NaN"])
def test_estimate_refuses_hours_that_are_not_finite(cli, hours: str) -> None:
    code, out, err = cli("estimate", "--track", "beginner", "--budget", "cpu", "--hours", hours)
    assert code == 2 and out == "" and err.count("\n") == 1 and f"got {float(hours)}" in err


def test_missing_flag_without_terminal_names_the_flag(cli, tmp_path: Path) -> None:
    code, _, err = cli("new", str(tmp_path / "proj"), "--track", "beginner")
    assert code == 2
    assert "missing --budget" in err and "--yes" in err


def test_missing_name_and_dest(cli) -> None:
    code, _, err = cli("new", "--yes")
    assert code == 2 and "missing DEST or --name" in err


def test_existing_non_empty_folder_is_refused_and_untouched(cli, tmp_path: Path) -> None:
    dest = tmp_path / "taken"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine")
    code, _, err = cli("new", str(dest), "--yes")
    assert code == 2 and "already exists and is not empty" in err
    assert [p.name for p in dest.iterdir()] == ["notes.txt"] and (dest / "notes.txt").read_text() == "mine"


def test_existing_empty_folder_is_used(cli, tmp_path: Path, template_repo: Path) -> None:
    dest = tmp_path / "empty"
    dest.mkdir()
    code, _, err = cli("new", str(dest), "--yes", "--template", str(template_repo))
    assert code == 0, err
    assert (dest / ".copier-answers.yml").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".empty-")]  # no staging left behind


def test_failed_render_leaves_nothing(cli, tmp_path: Path) -> None:
    not_a_template = tmp_path / "nothing-here"
    not_a_template.mkdir()
    code, _, err = cli("new", str(tmp_path / "p"), "--yes", "--template", str(not_a_template))
    assert code == 2 and "copier.yml is missing" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nothing-here"]


def test_tracks_lists_tracks_and_budgets(cli, spec) -> None:
    code, out, _ = cli("tracks")
    assert code == 0
    for key, track in spec.catalog["tracks"].items():
        assert f"{key}: {track['title']}" in out
        assert all(item in out for item in track["gives"])
    for key in spec.catalog["budgets"]:
        assert f"\n  {key}: " in out


def test_estimate_prints_the_derived_plan(cli, spec) -> None:
    code, out, _ = cli("estimate", "--track", "researcher", "--budget", "cluster", "--nodes", "8", "--hours", "10")
    assert code == 0
    derived = spec.derive({"project_name": "x", "track": "researcher", "budget": "cluster", "nodes": 8, "hours": 10.0,
                           "data_source": "shakespeare", "license": "MIT", "author": ""})
    assert derived["world_size"] == 64
    assert f"{derived['plan']['max_steps']:,} steps" in out
    # 8 nodes for 10 h make 2.58 B parameters compute-optimal: the 2.46 B size, 32 heads sharing 8 key/value heads.
    assert "64 GPUs" in out and "32 heads, 8 key/value heads" in out and "optimal model has 2.58 B parameters" in out
    assert "$1,600.00" in out  # 10 h x $20/h x 8 nodes
