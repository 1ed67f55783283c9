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


@pytest.mark.parametrize("track", ["practitioner", "researcher"])
def test_cluster_model_grows_with_nodes_and_hours_up_to_what_fits(spec: TemplateSpec, track: str) -> None:
    """The cluster's model is the largest of its sizes within the compute-optimal count (Hoffmann et al.) that
    fits an 80 GB GPU, with activation checkpointing where only that fits; more compute never shrinks it."""
    catalog = spec.catalog
    capacity = catalog["budgets"]["cluster"]["memory_gb"] * 2**30
    previous = 0
    for nodes, hours in [(2, 2), (2, 12), (4, 12), (2, 72), (4, 72), (32, 72), (512, 72)]:
        derived = formulas.derive(catalog, "demo", track, "cluster", nodes, hours)
        m, plan = derived["model"], derived["plan"]
        compute = formulas.flops_per_s(catalog["budgets"]["cluster"], 8 * nodes, "auto") * hours * 3600
        assert plan["compute_optimal_params"] == int((compute / 120) ** 0.5)
        assert m["params"] <= plan["compute_optimal_params"] and m["params"] >= previous
        mem = formulas.memory(derived)
        assert mem["total_ckpt"] <= capacity and m["activation_checkpointing"] == (mem["total"] > capacity)
        previous = m["params"]
    small = formulas.derive(catalog, "demo", track, "cluster", 2, 2)["model"]
    default = formulas.derive(catalog, "demo", track, "cluster", 4, 72)["model"]
    # 2 nodes for 2 h: about 580 M would be optimal, so a 350-400 M model; the default 4 nodes x 72 h: 2.5-2.8 B
    # (the 4.9 B optimum, 6.7 B in the sizes, needs 107 GB per GPU for weights and AdamW state alone).
    assert (small["n_embd"], default["n_embd"], default["n_layer"]) == (1024, 2560, 32)
    assert default["activation_checkpointing"] and not small["activation_checkpointing"]
    assert default["lr"] == 1.6e-4


def test_fixed_budgets_keep_their_preset_model(spec: TemplateSpec) -> None:
    """Only presets with `sizes` are sized by compute: a 24 GB GPU trains GPT-2 small whatever the hours."""
    catalog = spec.catalog
    for hours in (1, 12, 1000):
        m = formulas.derive(catalog, "demo", "beginner", "gpu-24gb", 1, hours)["model"]
        assert (m["n_layer"], m["n_embd"], m["activation_checkpointing"]) == (12, 768, False)


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
    rows = dict(plan_rows(spec, {"track": "researcher", "budget": "cluster", "data_source": "shakespeare"}, cluster))
    assert rows["data"].startswith(f"warning: {passes:,.0f} passes over the corpus; beyond 4")
    files = dict(plan_rows(spec, {"track": "researcher", "budget": "cluster", "data_source": "files"}, cluster))
    assert "data" not in files and formulas.corpus_passes(catalog, "files", cluster) is None
    # The estimate's (and so ROADMAP.md's) data collection step warns in the same words.
    est = formulas.estimate(catalog, "researcher", "cluster", "shakespeare", cluster)
    assert "warning: " + dict(est["steps"]["data_collection"]["rows"])["warning"] == rows["data"]
    assert "warning" not in dict(formulas.estimate(catalog, "researcher", "cluster", "files", cluster)
                                 ["steps"]["data_collection"]["rows"])


def test_a_streamed_corpus_is_read_to_what_the_plan_trains_on(spec: TemplateSpec) -> None:
    """FineWeb-Edu's 100B-token sample (450 GB at 4.5 bytes per token; the plan counts 4): the default cluster
    plan reads it 1.4 times (no warning); 512 nodes for 72 h would read it 200 times, and the plan warns. A 24 GB
    GPU's plan prepares only its own tokens, plus the 5% validation share."""
    from generator.plan import plan_rows

    catalog = spec.catalog
    cluster = formulas.derive(catalog, "demo", "practitioner", "cluster", 4, 72)
    tokens = cluster["plan"]["train_tokens"]
    assert formulas.corpus_passes(catalog, "fineweb-edu", cluster) == pytest.approx(tokens / 1.125e11)
    rows = dict(plan_rows(spec, {"track": "practitioner", "budget": "cluster", "data_source": "fineweb-edu"}, cluster))
    assert "data" not in rows
    huge = formulas.derive(catalog, "demo", "practitioner", "cluster", 512, 72)
    rows = dict(plan_rows(spec, {"track": "practitioner", "budget": "cluster", "data_source": "fineweb-edu"}, huge))
    assert rows["data"].startswith("warning: ") and formulas.corpus_passes(catalog, "fineweb-edu", huge) > 100
    gpu = formulas.derive(catalog, "demo", "practitioner", "gpu-24gb", 1, 12)
    est = formulas.estimate(catalog, "practitioner", "gpu-24gb", "fineweb-edu", gpu)["steps"]["data_collection"]
    tokens = gpu["plan"]["train_tokens"]
    assert dict(est["rows"])["corpus"].startswith(f"{tokens * 4 / 1e6:.3g} MB")  # what the plan reads, not 450 GB
    assert formulas.prepare_bytes(catalog, gpu) == math.ceil(tokens * 4 / 0.95 / 1e9) * 10**9


def test_finetune_defaults_follow_the_track_features_and_architecture(spec: TemplateSpec) -> None:
    """sft everywhere, the other methods where the repository has their layer; GPT-2 gets its own SFT step count."""
    tracks, catalog = spec.catalog["tracks"], spec.catalog
    beginner = formulas.finetune_defaults(catalog, tracks["beginner"], ["finetune"])
    researcher = formulas.finetune_defaults(catalog, tracks["researcher"], ["finetune", "lora", "qlora", "dpo"])
    assert list(beginner) == ["sft"] and beginner["sft"] == {"lr_factor": 1.0, "max_steps": 1200}
    assert list(researcher) == ["sft", "lora", "qlora", "dpo"] and researcher["sft"]["max_steps"] == 400
    assert spec.derive({"project_name": "p", "track": "practitioner", "budget": "cpu", "hours": 1,
                        "layers": ["lora"]})["finetune"] == {
        "sft": {"lr_factor": 1.0, "max_steps": 400}, "lora": {"lr_factor": 3.0, "max_steps": 400}}
