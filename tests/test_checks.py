"""The `check` command's expectations (tracks/checks.yml): every combination renders them, they validate, every
roadmap step with code has a check, every check has an experiment, and schema mistakes are reported precisely."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from generator.formulas import default_layers, step_applies
from generator.roadmap import build, rendered_checks
from generator.spec import TemplateSpec
from tests.test_catalog import broken  # noqa: F401  (the fixture)

ROOT = Path(__file__).resolve().parents[1]
TRACKS = ("beginner", "practitioner", "researcher")
BUDGETS = ("cpu", "gpu-24gb", "gpu-80gb", "node-8gpu", "cluster")
WAYS = ("expected", "at_most", "at_least")  # a figure fixes one of these, or the experiment computes it


def answers(track: str, budget: str) -> dict:
    """The answers of a render with the track's and budget's default layers (copier.yml's `layers` default)."""
    catalog = TemplateSpec(ROOT).catalog
    a = {"project_name": "chk", "track": track, "budget": budget, "hours": 2.0, "data_source": "shakespeare",
         "license": "MIT", "author": "", "layers": default_layers(catalog, track, budget, "shakespeare")}
    return {**a, "nodes": 4} if budget == "cluster" else a


def experiment_names() -> set[str]:
    """The checks that the template's modules register an experiment for, with @experiment (the function's name)
    or @experiment(check="NAME")."""
    names = set()
    for path in (ROOT / "template" / "{{ derived.package_name }}").iterdir():
        for check, function in re.findall(r'^@experiment(?:\(check="(\w+)"\))?.*\ndef (\w+)\(', path.read_text(), re.M):
            names.add(check or function)
    return names


def _number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@pytest.mark.parametrize(("track", "budget"), list(itertools.product(TRACKS, BUDGETS)))
def test_rendered_checks_validate(spec: TemplateSpec, track: str, budget: str) -> None:
    derived = spec.derive(answers(track, budget))
    checks = rendered_checks(spec, answers(track, budget), derived)
    steps = spec.catalog["steps"]
    present = {s["title"] for s in steps.values() if step_applies(s, track, budget)[0]}
    assert set(checks) == {n for n, c in spec.catalog["checks"].items()
                           if steps[c["step"]]["title"] in present and derived["features"].get(c.get("feature"), True)
                           and derived["layers"].get(c.get("layer"), True)}
    assert ("distributed" in checks) == derived["layers"]["distributed"]
    assert ("lora_init" in checks) == derived["layers"]["lora"]
    assert set(checks) <= experiment_names()
    for name, c in checks.items():
        assert c["step"] in present and isinstance(c["fast"], bool) and c["seconds"] >= 1, name
        assert derived["package_name"] + "/" in c["look_at"] and "PACKAGE" not in c["look_at"], name
        assert not any(isinstance(v, str) and v.startswith("from_") for v in c["setup"].values()), name
        for fname, f in c["figures"].items():
            fixed = [k for k in WAYS if k in f]
            assert len(fixed) + ("formula" in f) == 1, (name, fname)  # one expectation per figure
            assert all(_number(f[k]) for k in fixed + ["tolerance"] if k in f), (name, fname)
            assert f["text"] and f["reason"] and f["basis"] in ("formula", "measured", "reference", "estimate")
    if "training_1m" in checks:  # the CPU preset on every budget: the only model that trains 1M tokens on a CPU
        preset = checks["training_1m"]["setup"]["preset"]
        assert preset["n_embd"] == spec.catalog["presets"]["cpu"]["n_embd"] and preset["flops_per_token"] > 0


@pytest.mark.parametrize(("track", "budget"), [("beginner", "cpu"), ("researcher", "cluster")])
def test_every_step_with_code_has_a_check_shown_in_the_roadmap(spec: TemplateSpec, track: str, budget: str) -> None:
    roadmap = build(spec, answers(track, budget))
    for step in roadmap.steps:
        if any(add for _, add in step.layers):
            continue  # its code and check come with a layer this repository lacks (the researcher's cluster has all)
        if step.commands or step.id == "cleaning_pii":  # cleaning_pii has code (pii.py) but no command of its own
            assert step.checks, f"{step.id} has code but no check"
    from generator.roadmap import markdown

    text = markdown(spec, answers(track, budget))
    for step in roadmap.steps:
        for name, c in step.checks.items():
            assert f"`chk check run {name}`" in text
            assert all(f["text"] in text for f in c["figures"].values())


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("    step: tokenizer\n", "    step: tokeniser\n", "checks.tokenizer.step: unknown roadmap step 'tokeniser'"),
        ("        at_most: 0.05\n", "        at_most: {beginner: 0.05}\n",
         "training_overfit.figures.final_loss.at_most: a per-track value needs each of beginner, practitioner, researcher"),
        ("        at_most: 0.05\n", "        at_most: 0.05\n        at_least: 0.1\n", "checks.training_overfit.figures.final_loss: expected exactly one of expected, formula, at_most, at_least and shown: true, got at_most, at_least"),
        ("        expected: 6\n        tolerance: 0\n", "        expected: 6\n", "checks.data_pii.figures.pii_found: a tolerance goes with expected or formula, and only with them"),
        ("      mfu: from_catalog budgets.cpu.mfu", "      mfu: from_catalog budgets.tpu.mfu", "does not resolve (no 'tpu')"),
        ("    fast: true\n", "    fast: yes please\n", "tracks/checks.yml: checks.data_manifest.fast: expected true or false, got 'yes please'"),
        ("    layer: lora\n", "    feature: lora\n", "checks.lora_init.feature: not a true/false track feature"),
    ],
)
def test_check_mistakes_are_reported_precisely(broken, old: str, new: str, expected: str) -> None:  # noqa: F811
    assert expected in broken("checks.yml", old, new)
