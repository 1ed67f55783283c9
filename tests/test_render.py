"""The render matrix: every track x budget renders completely, with the files its answers call for."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from generator.render import render
from generator.source import TemplateSource
from generator.spec import TemplateSpec

TRACKS = ["beginner", "practitioner", "researcher"]
BUDGETS = ["cpu", "gpu-24gb", "gpu-80gb", "node-8gpu", "cluster"]
# The core's modules, in every render; a layer's (tracks/layers.yml `modules`) only with the layer.
PACKAGE_FILES = ["__init__.py", "__main__.py", "cli.py", "config.py", "model.py", "tokenizer.py", "data.py",
                 "train.py", "generate.py", "decoding.py", "check.py"]
ALWAYS = ["README.md", "pyproject.toml", "LICENSE", ".gitignore", ".copier-answers.yml", ".github/workflows/ci.yml",
          "configs/tiny.yml", "configs/default.yml", "tests/test_model.py", "tests/test_train.py", "tests/test_cli.py",
          "tests/test_tokenizer.py", "tests/test_data.py"]


def answers_for(track: str, budget: str, **extra) -> dict:
    answers = {"project_name": f"{track[:4]}-{budget}", "track": track, "budget": budget, "hours": 3.0,
               "data_source": "shakespeare", "license": "MIT", "author": "Ada Lovelace", **extra}
    if budget == "cluster":
        answers.setdefault("nodes", 4)
    return answers


def rendered_files(project: Path) -> dict[str, str]:
    return {str(p.relative_to(project)): p.read_text(encoding="utf-8")
            for p in sorted(project.rglob("*")) if p.is_file() and ".git" not in p.parts}


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory, template_repo: Path) -> dict[tuple[str, str], Path]:
    out = tmp_path_factory.mktemp("matrix")
    projects = {}
    for track, budget in itertools.product(TRACKS, BUDGETS):
        dest = out / f"{track}-{budget}"
        render(TemplateSource(str(template_repo), "HEAD"), dest, answers_for(track, budget))
        projects[track, budget] = dest
    return projects


@pytest.mark.parametrize(("track", "budget"), list(itertools.product(TRACKS, BUDGETS)))
def test_combination_renders_completely(matrix, spec: TemplateSpec, track: str, budget: str) -> None:
    project = matrix[track, budget]
    files = rendered_files(project)
    # The layers the render took (the track's and budget's defaults, which Copier fills in), not the previous
    # release's that answers without `layers` stand for.
    layers = yaml.safe_load(files[".copier-answers.yml"])["layers"]
    derived = spec.derive({**answers_for(track, budget), "layers": layers})
    package = derived["package_name"]

    for name, text in files.items():
        if name == f"{package}/chat_format.py":
            continue  # its CHAT_TEMPLATE is Jinja on purpose: transformers renders it from tokenizer_config.json
        leftovers = text.replace("${{", "") if name.startswith(".github/") else text
        assert "{{" not in leftovers and "{%" not in leftovers, f"unrendered Jinja in {name}"
    for name in ALWAYS + [f"{package}/{f}" for f in PACKAGE_FILES]:
        assert name in files, f"{name} missing"
    owner = {f"{package}/{m}.py": name for name, layer in spec.catalog["layers"].items() for m in layer["modules"]}
    present = {owner[name] for name in files if name in owner}
    assert present == set(derived["layer_list"]), "a layer's modules without the layer, or a layer without them"
    assert ("scripts/torchrun.sh" in files) == derived["multi_gpu"]
    assert ("scripts/slurm.sbatch" in files) == derived["multi_gpu"]
    assert ("tests/fake_slurm.py" in files) == derived["multi_gpu"]  # SLURM's srun and scontrol for the sbatch test
    assert ("notebooks/walkthrough.ipynb" in files) == derived["features"]["notebook"]
    assert ("tests/test_notebook.py" in files) == derived["features"]["notebook"]
    assert any(n.startswith("configs/ablations/") for n in files) == derived["features"]["ablations"]

    for name, text in files.items():
        if name.endswith(".py"):
            compile(text, name, "exec")
    default = yaml.safe_load(files["configs/default.yml"])
    for key in ("n_layer", "n_head", "n_kv_head", "n_embd", "block_size", "vocab_size", "ffn_hidden"):
        assert default["model"][key] == derived["model"][key], key
    assert default["train"]["max_steps"] == derived["plan"]["max_steps"]
    assert yaml.safe_load(files[".copier-answers.yml"])["track"] == track


# Words that belong to a feature: a track without the feature must not mention them in any rendered file.
FEATURE_VOCABULARY = {
    "fsdp": r"fsdp|fully[ _-]?shard",
    "wsd_schedule": r"\bwsd\b|warmup[ -]stable",
    "gqa": r"\bgqa\b|grouped[ -]query",
    "qk_norm": r"qk[ _-]norm",
    "ablations": r"ablation",
}
# The `activation` switch is an ablation; "activation checkpointing" and "activations" are not.
ACTIVATION_SWITCH = r"""["']activation["']|\bactivation\s*[:=]|\.activation\b"""
# The Llama model.py carries GQA, QK-norm and the ablation switches as runtime fields of its config by design (one
# plain source per architecture; the researcher's configs turn them on); tests/test_model.py tests the file it ships,
# and export.py maps those fields to Hugging Face's names. Only FSDP and WSD words are leaks in these three.
MODEL_FEATURES = ("gqa", "qk_norm", "ablations")
MODEL_FILES = ("model.py", "tests/test_model.py", "export.py")


@pytest.mark.parametrize(("track", "budget"), list(itertools.product(TRACKS, BUDGETS)))
def test_no_vocabulary_of_features_a_track_lacks(matrix, spec: TemplateSpec, track: str, budget: str) -> None:
    features = spec.derive(answers_for(track, budget))["features"]
    patterns = {name: words for name, words in FEATURE_VOCABULARY.items() if not features[name]}
    if not features["ablations"]:
        patterns["activation switch"] = ACTIVATION_SWITCH
    leaks = []
    for name, text in rendered_files(matrix[track, budget]).items():
        for feature, words in patterns.items():
            if name.endswith(MODEL_FILES) and feature in MODEL_FEATURES + ("activation switch",):
                continue
            leaks += [f"{name}: {m.group(0)!r} ({feature})" for m in re.finditer(words, text, re.IGNORECASE)]
    assert not leaks, "\n".join(leaks)


def test_leak_patterns_find_what_they_should() -> None:
    """The vocabulary check can fail: each pattern matches its feature's words and not the everyday ones."""
    said = {"fsdp": "use FSDP2 (fully_shard)", "wsd_schedule": "schedule: wsd, warmup-stable-decay",
            "gqa": "grouped-query attention (GQA)", "qk_norm": "QK-norm", "ablations": "configs/ablations/"}
    for feature, words in FEATURE_VOCABULARY.items():
        assert re.search(words, said[feature], re.IGNORECASE), feature
        assert not re.search(words, "activation checkpointing, sharded data, a stable run, queries", re.IGNORECASE)
    for switch in ('m.get("activation", "swiglu")', "activation: gelu", "config.activation"):
        assert re.search(ACTIVATION_SWITCH, switch), switch
    assert not re.search(ACTIVATION_SWITCH, "activation checkpointing recomputes activations")


def test_tracks_differ_in_substance(matrix) -> None:
    def model(track: str) -> str:
        project = matrix[track, "cpu"]
        return next(project.glob("*/model.py")).read_text()

    def tiny(track: str) -> dict:
        return yaml.safe_load((matrix[track, "cpu"] / "configs" / "tiny.yml").read_text())["model"]

    beginner, practitioner, researcher = model("beginner"), model("practitioner"), model("researcher")
    assert "LayerNorm" in beginner and "RMSNorm" not in beginner and "rope" not in beginner.lower()
    assert "RMSNorm" in practitioner and "rope" in practitioner.lower() and "POSITIONS" in practitioner
    assert practitioner == researcher  # one Llama source; the configs turn its switches on
    assert "qk_norm" not in tiny("practitioner") and tiny("practitioner")["n_kv_head"] == tiny("practitioner")["n_head"]
    assert tiny("researcher")["qk_norm"] is True and tiny("researcher")["n_kv_head"] < tiny("researcher")["n_head"]


TEMPLATE = Path(__file__).resolve().parents[1] / "template"
# A track tested by name inside a Jinja tag: `track == 'x'`, `track != ...`, `track in [...]`, `track not in ...`.
TRACK_TEST = re.compile(r"\{[{%][^}]*\btrack\s*(?:==|!=|in\b|not\s+in\b)")
MAX_LOGIC_LINES = 20  # `{%` lines in one template source: the rest of the logic lives in Python (formulas.py)


def test_template_sources_test_features_and_stay_plain() -> None:
    """No template file tests a track's name (tracks differ by features), and none holds more than a few Jinja
    statements."""
    texts = {str(p.relative_to(TEMPLATE)): p.read_text(encoding="utf-8") for p in TEMPLATE.rglob("*") if p.is_file()}
    by_name = [f"{name}:{n}" for name, text in texts.items()
               for n, line in enumerate(text.splitlines(), 1) if TRACK_TEST.search(line)]
    assert not by_name, by_name
    logic = {name: sum("{%" in line for line in text.splitlines()) for name, text in texts.items()}
    most = max(logic, key=logic.__getitem__)
    assert logic[most] <= MAX_LOGIC_LINES, f"{most}: {logic[most]} lines with {{%"
    assert TRACK_TEST.search("{% if track == 'beginner' %}") and TRACK_TEST.search("{{ 'x' if track in ['a'] }}")
    assert not TRACK_TEST.search("every track in tracks.yml") and not TRACK_TEST.search("{{ t.track_title }}")


def test_every_render_passes_ruff(matrix) -> None:
    """pyflakes and pycodestyle's errors, as the generated pyproject configures ruff (its CI runs it too)."""
    for (track, budget), project in matrix.items():
        result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "."],
                                cwd=project, capture_output=True, text=True)
        assert result.returncode == 0, f"{track}/{budget}:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("license_id", ["none", "Apache-2.0", "BSD-3-Clause"])
def test_licence_choice(tmp_path: Path, template_repo: Path, license_id: str) -> None:
    render(TemplateSource(str(template_repo), "HEAD"), tmp_path / "p", answers_for("beginner", "cpu", license=license_id))
    licence = tmp_path / "p" / "LICENSE"
    assert licence.exists() == (license_id != "none")
    if license_id == "Apache-2.0":
        assert "Apache License" in licence.read_text() and "Version 2.0" in licence.read_text()
    if license_id == "BSD-3-Clause":
        assert "Ada Lovelace" in licence.read_text() and "Neither the name" in licence.read_text()


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (["--track", "researcher", "--budget", "cluster", "--nodes", "3", "--hours", "5"], []),
        (["--track", "beginner", "--budget", "cpu", "--data-source", "files", "--data-path", "corpus/*.md"], []),
    ],
)
def test_plain_copier_copy_is_byte_identical_to_the_wizard(cli, tmp_path: Path, template_repo: Path, args, extra) -> None:
    code, _, err = cli("new", str(tmp_path / "wizard"), "--yes", "--template", str(template_repo), *args)
    assert code == 0, err
    answers_file = tmp_path / "wizard" / ".copier-answers.yml"
    data = {k: v for k, v in yaml.safe_load(answers_file.read_text()).items() if not k.startswith("_")}
    data_file = tmp_path / "data.yml"
    data_file.write_text(yaml.safe_dump(data))
    result = subprocess.run(
        [sys.executable, "-m", "copier", "copy", "--trust", "--defaults", "--quiet", "--vcs-ref", "HEAD", "--data-file",
         str(data_file), str(template_repo), str(tmp_path / "plain")],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    wizard, plain = rendered_files(tmp_path / "wizard"), rendered_files(tmp_path / "plain")
    assert wizard.keys() == plain.keys()
    for name in wizard:
        assert wizard[name] == plain[name], name
    assert (tmp_path / "wizard" / ".copier-answers.yml").read_bytes() == (tmp_path / "plain" / ".copier-answers.yml").read_bytes()


def test_gpu_budgets_default_to_a_streamed_web_corpus(cli, tmp_path: Path, template_repo: Path) -> None:
    """A GPU plan trains on FineWeb-Edu through `datasets` (a dependency then), with its licence where the
    governance layer records one; a CPU one on the plays; every source prepare reads is offered, with a path where
    it needs one."""
    code, _, err = cli("new", str(tmp_path / "gpu"), "--yes", "--template", str(template_repo), "--budget", "gpu-24gb",
                       "--layers", "governance,datasets")
    assert code == 0, err
    data = yaml.safe_load((tmp_path / "gpu" / "configs" / "default.yml").read_text())["data"]
    assert (data["source"], data["data_path"], data["hf_name"]) == ("hf", "HuggingFaceFW/fineweb-edu", "sample-100BT")
    assert data["licence"] == "ODC-By-1.0" and data["max_bytes"] > 10**9
    assert '"datasets>=' in (tmp_path / "gpu" / "pyproject.toml").read_text().split("[project.optional")[0]
    code, _, err = cli("new", str(tmp_path / "own"), "--yes", "--template", str(template_repo), "--budget", "gpu-24gb",
                       "--data-source", "parquet")
    assert code == 0, err
    data = yaml.safe_load((tmp_path / "own" / "configs" / "default.yml").read_text())["data"]
    assert (data["source"], data["data_path"], data.get("licence")) == ("parquet", "data/**/*.parquet", None)
    assert "prepare --source parquet --data 'data/**/*.parquet'" in (tmp_path / "own" / "README.md").read_text()


def test_every_answer_is_stored_and_nothing_derived_is(cli, tmp_path: Path, template_repo: Path, spec: TemplateSpec) -> None:
    code, _, err = cli("new", str(tmp_path / "p"), "--yes", "--template", str(template_repo),
                       "--budget", "cluster", "--data-source", "files")
    assert code == 0, err
    stored = yaml.safe_load((tmp_path / "p" / ".copier-answers.yml").read_text())
    assert {k for k in stored if not k.startswith("_")} == {q.name for q in spec.questions}
    assert stored["_src_path"] == str(template_repo) and Path(stored["_src_path"]).is_absolute()
    assert stored["_commit"] == "v1.0.0"
