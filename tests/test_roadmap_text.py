"""The roadmap's and checks.yml's words (generator/roadmap_text.py): values, expectations and Markdown blocks."""

from __future__ import annotations

import pytest
import yaml
from jinja2 import Environment

from generator import roadmap_text as rt

DERIVED = {"command": "demo", "cpu": "tiny", "model": {"params": 1234567}}
CATALOG = {"budgets": {"cpu": {"peak_tflops_fp32": 0.5}}}
STEPS = {
    "data": {"title": "Data sources", "depends_on": []},
    "tokenizer": {"title": "Tokenizer", "depends_on": ["data", "pii"]},  # pii is not in this roadmap
    "train": {"title": "Training loop", "depends_on": ["data", "tokenizer"]},
}
EST = {"critical_path": ["data", "train"], "steps": {
    "data": {"optional": False, "hours": 0.1, "rows": [("time", "6 min")]},
    "tokenizer": {"optional": True, "hours": None, "rows": [("time", "-")]},
    "train": {"optional": False, "hours": 2.0, "rows": [("time", "2 h")]},
}}


@pytest.mark.parametrize(("value", "text"), [
    ("from_derived cpu", '"tiny"'),
    ("from_catalog budgets.cpu.peak_tflops_fp32", "0.5"),
    ({"beginner": 3, "researcher": 5}, "3"),
    (1e-06, "1.0e-06"),  # YAML 1.1 reads 1e-06 as a string
    (0.01, "0.01"),
    (None, "null"),
    ([512, 4096], "[512, 4096]"),
    ("a <b> & 'c'", '"a \\u003cb\\u003e \\u0026 \\u0027c\\u0027"'),  # as Jinja's tojson writes it
])
def test_check_value_is_yaml_that_reads_back(value, text: str) -> None:
    assert rt.check_value(value, "beginner", CATALOG, DERIVED) == text
    expected = rt.per_track(value, "beginner")
    if isinstance(value, str) and value.startswith("from_"):
        expected = {"from_derived cpu": "tiny", "from_catalog budgets.cpu.peak_tflops_fp32": 0.5}[value]
    assert yaml.safe_load(f"v: {text}")["v"] == expected


def test_setup_text_is_a_flow_mapping() -> None:
    text = rt.setup_text({"steps": 20, "lr": 1e-06, "preset": "from_derived cpu"}, "beginner", CATALOG, DERIVED)
    assert text == '{steps: 20, lr: 1.0e-06, preset: "tiny"}'
    assert yaml.safe_load(text) == {"steps": 20, "lr": 1e-06, "preset": "tiny"}
    assert rt.setup_text({}, "beginner", CATALOG, DERIVED) == "{}"


@pytest.mark.parametrize(("figure", "text"), [
    ({"expected": 38, "tolerance": 0}, "38 exactly"),
    ({"expected": {"beginner": 3.4, "researcher": 3.0}, "tolerance": 0.3}, "3.4 ± 0.3"),
    ({"expected": 100, "tolerance": 0.02, "relative": True}, "100 within 2%"),
    ({"at_most": {"beginner": 5.5, "researcher": 4}}, "at most 5.5"),
    ({"at_least": 0.9}, "at least 0.9"),
    ({"formula": "6 N D", "tolerance": 0.1, "relative": True}, "6 N D within 10%"),
    ({"formula": "6 N D", "shown": True, "tolerance": 0.1}, "compared with the estimate 6 N D"),
])
def test_figure_text(figure: dict, text: str) -> None:
    assert rt.figure_text(figure, "beginner") == text


def test_figures_text_joins_labels_and_texts() -> None:
    figures = {"loss": {"label": "loss", "text": "at most 5"}, "steps": {"label": "steps", "text": "20 exactly"}}
    assert rt.figures_text(figures) == "loss: at most 5; steps: 20 exactly"


@pytest.mark.parametrize(("expected", "experiment", "text"), [
    ("passed", {"tolerance": 0}, "passed"),
    (38, {"tolerance": 0}, "38 (exactly)"),
    (2358208, {"tolerance": 0.02, "relative": True}, "2,358,208 within 2%"),
    (5.0, {"tolerance": 0.3}, "5.0 within 0.3"),
])
def test_expected_text(expected, experiment: dict, text: str) -> None:
    assert rt.expected_text(expected, experiment) == text


def test_experiment_expected_and_commands() -> None:
    assert rt.experiment_expected({"expected": {"beginner": 5.42}}, "beginner", DERIVED) == 5.42
    assert rt.experiment_expected({"expected_from": "model.params"}, "beginner", DERIVED) == 1234567
    assert rt.project_command("train --config tiny", DERIVED) == "demo train --config tiny"
    assert rt.project_command("pytest tests/test_x.py -q", DERIVED) == "pytest tests/test_x.py -q"


def test_mermaid_graph_and_checklist() -> None:
    assert rt.mermaid_graph(STEPS, EST).splitlines() == [
        "graph TD",
        '  data["1. Data sources<br/>6 min"]',
        '  tokenizer["2. Tokenizer"]',  # no time: hours is None
        '  train["3. Training loop<br/>2 h"]',
        "  data --> tokenizer",
        "  data --> train",
        "  tokenizer --> train",
        "  classDef critical stroke-width:4px",
        "  classDef optional stroke-dasharray:6 4",
        "  class data,train critical",
        "  class tokenizer optional",
    ]
    assert rt.checklist(STEPS, EST).splitlines()[1:] == [
        "- [ ] [2. Tokenizer](#2-tokenizer) (optional)", "- [ ] [3. Training loop](#3-training-loop)"]
    no_optional = {**EST, "steps": {k: {**v, "optional": False} for k, v in EST["steps"].items()}}
    assert "optional\n" not in rt.mermaid_graph(STEPS, no_optional) + "\n"


def test_after_text_lists_dependencies_in_this_roadmap() -> None:
    assert rt.after_text(STEPS["tokenizer"], STEPS, EST) == " After: Data sources."
    assert rt.after_text(STEPS["data"], STEPS, EST) == ""


def test_run_text() -> None:
    step = {"commands": ["train --config tiny", "pytest tests/test_train.py -q"], "experiment": {
        "command": "train --config tiny", "observe": "the loss", "expected": 5.0, "tolerance": 0.3}}
    assert rt.run_text(step, "beginner", DERIVED) == (
        "\n\n**Run it:**\n\n- [ ] `demo train --config tiny`\n- [ ] `pytest tests/test_train.py -q`\n\n"
        "**Micro-experiment:** `demo train --config tiny`: the loss.\nExpected: 5.0 within 0.3.")
    assert rt.run_text({"commands": []}, "beginner", DERIVED) == (
        "\n\n*No command yet: the template has no code for this step.*")


def test_checks_text_shows_only_this_steps_checks() -> None:
    checks = {
        "loss": {"step": "Training loop", "fast": False, "seconds": 30, "observe": "the loss falls",
                 "figures": {"loss": {"label": "loss", "text": "at most 5"}}},
        "bpe": {"step": "Tokenizer", "fast": True, "seconds": 2, "observe": "x", "figures": {}},
    }
    assert rt.checks_text(STEPS["train"], checks, DERIVED) == (
        "\n\n**Check it** (`demo check all` runs every check and ends with a table):\n"
        "- [ ] `demo check run loss` (slow, about 30 s): the loss falls. Expected: loss: at most 5.")
    assert rt.checks_text(STEPS["data"], checks, DERIVED) == ""


def test_rows_tools_and_security() -> None:
    assert rt.estimate_rows([("time", "2 h"), ("cost", "$0")]) == "\n| time | 2 h |\n| cost | $0 |"
    assert rt.tool_list([{"kind": "paper", "title": "GPT-2", "url": "https://x"}]) == "\n- paper: [GPT-2](https://x)"
    notes = [{"topic": "PII", "note": "Scan it.", "check": "pytest -k pii"}, {"topic": "Licence", "note": "Keep it."}]
    assert rt.security_text(notes) == ("\n\n**Security and compliance:**\n- *PII*: Scan it. Checked by `pytest -k pii`."
                                       "\n- *Licence*: Keep it. No automated check yet.")
    assert rt.security_text([]) == ""


def test_extension_makes_the_functions_jinja_globals() -> None:
    env = Environment(extensions=[rt.RoadmapText])
    text = env.from_string("{{ figure_text(f, 'beginner') }}|{{ estimate_rows(rows) }}").render(
        f={"at_least": 0.9}, rows=[("time", "1 h")])
    assert text == "at least 0.9|\n| time | 1 h |"
