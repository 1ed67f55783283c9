"""generator/formulas.py against cases worked out by hand: formatting, shapes, critical path, answer checks."""

from __future__ import annotations

import math

import pytest

from generator import formulas
from generator.spec import TemplateSpec


@pytest.mark.parametrize(("n", "text"), [
    (0, "0"), (512, "512"), (4096, "4.1 k"), (5_308_416, "5.31 M"), (124e6, "124 M"), (2.5e9, "2.5 B"),
    (1.21e12, "1.21 T"), (1.34e15, "1.34e+15"), (6.2e20, "6.2e+20"), (0.5, "0.5"),
])
def test_human(n: float, text: str) -> None:
    assert formulas.human(n) == text


def test_gigabytes_and_duration() -> None:
    assert formulas.gigabytes(16 * 2**30) == "16 GB" and formulas.gigabytes(68_157_440) == "65 MB"
    assert formulas.duration(60 / 3600) == "60 s"  # under 90 s in seconds
    assert formulas.duration(0.5) == "30 min" and formulas.duration(1.0) == "60 min"
    assert formulas.duration(3.5) == "3.5 h" and formulas.duration(72) == "3 days"


def test_gpt2_and_llama_shapes_by_hand() -> None:
    preset = {"n_layer": 4, "n_head": 4, "n_embd": 256, "block_size": 256, "vocab_size": 4096, "micro_batch_size": 16,
              "batch_tokens": 8192, "lr": 1e-3, "warmup_steps": 100, "eval_interval": 250, "precision": "auto"}
    features = {"gqa": False}
    gpt2 = formulas.model_shape({"architecture": "gpt2", "features": features}, preset)
    # Per layer 4d^2 attention + 8d^2 MLP; token and position embeddings; the output layer is tied.
    assert gpt2["ffn_hidden"] == 1024 and gpt2["n_kv_head"] == 4
    assert gpt2["params"] == 4 * 12 * 256**2 + 4096 * 256 + 256 * 256 == 4_259_840
    assert gpt2["flops_per_token"] == 6 * (4 * 12 * 256**2 + 4096 * 256) + 12 * 4 * 256 * 256 == 28_311_552
    # SwiGLU: 8d/3 = 682.7, rounded up to a multiple of 64 = 704; three MLP matrices; untied output layer.
    llama = formulas.model_shape({"architecture": "llama", "features": features}, preset)
    assert llama["ffn_hidden"] == 704
    assert llama["params"] == 4 * (4 * 256**2 + 3 * 256 * 704) + 2 * 4096 * 256 == 5_308_416
    # Grouped-query attention with 2 query heads per key/value head: k and v shrink to half the width.
    gqa = formulas.model_shape({"architecture": "llama", "features": {"gqa": True}, "kv_head_ratio": 2}, preset)
    assert gqa["n_kv_head"] == 2
    assert gqa["params"] == llama["params"] - 4 * 2 * 256 * 128


def test_critical_path_takes_the_longest_required_chain() -> None:
    #   a -> b -> d, a -> c -> d: c takes longer than b, so the path runs through c; e is optional.
    steps = {"a": {"depends_on": []}, "b": {"depends_on": ["a"]}, "c": {"depends_on": ["a"]},
             "d": {"depends_on": ["b", "c"]}, "e": {"depends_on": ["d"]}}
    assert formulas.critical_path(steps, ["a", "b", "c", "d"], {"b": 1.0, "c": 2.0}) == ["a", "c", "d"]
    assert formulas.critical_path(steps, ["a", "b", "c", "d"], {"b": 3.0, "c": 2.0}) == ["a", "b", "d"]
    # No hours anywhere: the longest chain by steps, ties to the first dependency.
    assert formulas.critical_path(steps, ["a", "b", "c", "d", "e"], {}) == ["a", "b", "d", "e"]


def test_a_step_without_tracks_or_budgets_applies_everywhere() -> None:
    assert formulas.step_applies({}, "beginner", "cpu") == (True, False)
    assert formulas.step_applies({"budgets": ["cluster"]}, "beginner", "cpu") == (False, False)
    assert formulas.step_applies({"optional_tracks": ["beginner"]}, "beginner", "cpu") == (True, True)


@pytest.mark.parametrize(("name", "refused"), [
    ("my-llm", False), ("json2", False), ("my-json", False),
    ("json", True), ("os", True), ("asyncio", True), ("class", True), ("import", True), ("pip", True),
    ("setuptools", True), ("wheel", True), ("torch", True), ("My-LLM", True), ("a--b", True), ("a" * 41, True),
])
def test_project_names(name: str, refused: bool) -> None:
    assert bool(formulas.project_name_error(name)) == refused


@pytest.mark.parametrize(("author", "refused"), [
    ("", False), ("Ada Lovelace", False), ("Zoë O'Brien-Łukasiewicz", False),
    ("Ada\nLovelace", True), ("Ada\tLovelace", True), ("Ada\x1b[31m", True), ('Ada "the" L', True), ("A" * 101, True),
])
def test_authors(author: str, refused: bool) -> None:
    assert bool(formulas.author_error(author)) == refused


def test_hours_must_be_finite_and_leave_room_for_warmup(spec: TemplateSpec) -> None:
    catalog = spec.catalog
    for bad in (math.nan, math.inf, -math.inf, 0, -1, 10001, "nan"):
        assert formulas.hours_error(bad, catalog, "beginner", "cpu").startswith("hours must be more than 0")
    message = formulas.hours_error(0.001, catalog, "beginner", "cpu")
    assert "fewer than its 100 warmup steps" in message
    # The hours the message asks for are enough, and a little less is not.
    assert message.endswith("give at least 0.018 hours")
    assert formulas.hours_error(0.018, catalog, "beginner", "cpu") == ""
    assert formulas.hours_error(0.017, catalog, "beginner", "cpu") != ""
    for budget, b in catalog["budgets"].items():  # every budget's default leaves room for warmup
        assert formulas.hours_error(b["default_hours"], catalog, "researcher", budget, b.get("default_nodes", 1)) == ""


def test_the_template_reaches_the_same_functions(spec: TemplateSpec) -> None:
    assert spec.render("{{ 5308416 | human }} {{ project_name_error('json') != '' }}", {}) == "5.31 M True"
    source = spec.render("{{ formula_source('human') }}", {})
    namespace: dict = {}
    exec(source, namespace)
    assert [namespace["human"](n) for n in (512, 5_308_416, 1.34e15)] == ["512", "5.31 M", "1.34e+15"]


@pytest.mark.parametrize("nodes", [1, 2, 3, 4, 5, 7, 8, 16, 31, 32, 64, 100, 128, 256, 500, 512])
def test_cluster_batch_never_rounds_away_or_doubles(spec: TemplateSpec, nodes: int) -> None:
    """At any node count a step holds exactly the planned tokens, within 1.5x of the preset's batch while one
    sequence per GPU fits in it, and the time the plan prices is the time its steps take."""
    catalog = spec.catalog
    preset = catalog["presets"]["cluster"]
    derived = formulas.derive(catalog, "demo", "researcher", "cluster", nodes, 72)
    m, plan, world = derived["model"], derived["plan"], derived["world_size"]
    assert world == 8 * nodes and m["grad_accum"] >= 1 and m["micro_batch_size"] >= 1
    assert m["batch_tokens"] == m["micro_batch_size"] * m["block_size"] * world * m["grad_accum"]
    if m["block_size"] * world <= preset["batch_tokens"]:
        assert preset["batch_tokens"] / 1.5 <= m["batch_tokens"] <= preset["batch_tokens"] * 1.5
    else:  # one sequence per GPU is already more than the preset's batch: one round, nothing accumulated
        assert m["micro_batch_size"] == 1 and m["grad_accum"] == 1
    assert plan["train_tokens"] == plan["max_steps"] * m["batch_tokens"]
    hours = plan["train_tokens"] / plan["tokens_per_s"] / 3600
    assert hours == pytest.approx(72, rel=0.01)


def test_batch_plan_by_hand() -> None:
    preset = {"block_size": 2048, "micro_batch_size": 16, "batch_tokens": 2**21}
    # 8 GPUs: a round is 16 x 2048 x 8 = 262,144 tokens; 8 rounds make the 2M batch.
    assert formulas.batch_plan(preset, 8) == {"micro_batch_size": 16, "grad_accum": 8, "batch_tokens": 2**21}
    # 256 GPUs (32 nodes): 16 sequences per GPU would be 4x the batch; 4 per GPU is exactly one round.
    assert formulas.batch_plan(preset, 256) == {"micro_batch_size": 4, "grad_accum": 1, "batch_tokens": 2**21}
    # 24 GPUs: 16 x 2048 x 24 = 786,432 per round; 2.67 rounds round to 3 (2.36M tokens, not the 0.79M of 1).
    assert formulas.batch_plan(preset, 24) == {"micro_batch_size": 16, "grad_accum": 3, "batch_tokens": 2_359_296}
    # 4,096 GPUs: one sequence each is 8.4M tokens, more than the batch: the batch grows to that one round.
    assert formulas.batch_plan(preset, 4096) == {"micro_batch_size": 1, "grad_accum": 1, "batch_tokens": 2**23}


def test_plan_warns_about_many_passes_over_a_small_corpus(spec: TemplateSpec) -> None:
    """5.01 MB of plays at 4 bytes per token are 1.25 M tokens: the cluster's 72 h plan reads them thousands of
    times, and the plan says so; a laptop hour is 37 passes; your own files have no known size, so no warning."""
    from generator.plan import plan_rows

    catalog = spec.catalog
    cluster = formulas.derive(catalog, "demo", "researcher", "cluster", 4, 72)
    passes = formulas.corpus_passes(catalog, "shakespeare", cluster)
    assert passes == pytest.approx(cluster["plan"]["train_tokens"] / 1.2525e6)
    assert passes > 1000
    rows = dict(plan_rows({"track": "researcher", "budget": "cluster", "data_source": "shakespeare"}, cluster, catalog))
    assert rows["data"].startswith(f"warning: {passes:,.0f} passes over the corpus; beyond 4")
    files = dict(plan_rows({"track": "researcher", "budget": "cluster", "data_source": "files"}, cluster, catalog))
    assert "data" not in files and formulas.corpus_passes(catalog, "files", cluster) is None
