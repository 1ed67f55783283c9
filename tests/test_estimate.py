"""The estimator against numbers worked out by hand, the recorded calibration, and `estimate --all`."""

from __future__ import annotations

import json
import math

from pathlib import Path

import pytest

from generator.source import copy_template
from generator.estimate import CALIBRATION_FILE, TOLERANCE, estimate, measure
from generator.spec import TemplateSpec
from tests.conftest import ROOT


def answers(track: str = "beginner", budget: str = "cpu", hours: float = 1.0, **extra) -> dict:
    return {"project_name": "est", "track": track, "budget": budget, "hours": hours, "data_source": "shakespeare",
            "license": "MIT", "author": "", **extra}


def test_beginner_cpu_worked_by_hand(spec: TemplateSpec) -> None:
    est = estimate(spec, answers())
    # GPT-2 shapes of the cpu preset: L=4, d=256, T=256, V=4096, micro-batch 16, 8,192 tokens per step.
    L, d, T, V, B = 4, 256, 256, 4096, 16
    n_matmul = L * 12 * d * d + V * d  # attention 4d^2 + MLP 8d^2 per layer, plus the (tied) output layer
    flops_per_token = 6 * n_matmul + 12 * L * d * T  # = 28,311,552
    assert flops_per_token == 28_311_552
    rate = 0.93e12 * 0.4  # bf16 peak x MFU of the cpu budget: 3.72e11 FLOP/s
    steps = int(3600 * rate / flops_per_token / 8192)  # 5,774 whole steps fit in the hour
    tokens = steps * 8192
    t = est["training"]
    assert t["tokens"] == tokens == 47_300_608
    assert t["flops"] == flops_per_token * tokens
    assert t["flops_attention"] == 12 * L * d * T * tokens
    assert t["hours"] == pytest.approx(flops_per_token * tokens / rate / 3600)
    assert 0.999 < t["hours"] <= 1.0 and t["cost_usd"] == 0

    params = L * 12 * d * d + V * d + T * d  # + learned positions = 4,259,840
    mem = est["memory"]
    assert (mem["weights"], mem["grads"], mem["optimizer"]) == (4 * params, 4 * params, 8 * params)
    # Saved activations per token and layer: 16d bf16 values (attention 5d, MLP d + 2 x 4d, norms 2d).
    per_layer = B * T * (5 * d + (d + 2 * 4 * d) + 2 * d) * 2
    logits = B * T * V * (2 + 4 + 4)  # bf16 logits, their fp32 copy, the saved log-softmax
    assert mem["activations"] == L * per_layer + logits == 301_989_888
    assert mem["activations_ckpt"] == L * B * T * d * 2 + per_layer + logits
    assert mem["total"] == 16 * params + mem["activations"] and mem["fits"] and mem["capacity"] == 16 * 2**30

    chin = est["chinchilla"]
    compute = rate * 3600
    assert chin["compute"] == pytest.approx(compute)
    assert chin["params"] == int(math.sqrt(compute / 120)) == 3_340_658  # C = 6 N (20 N)
    assert chin["tokens"] == pytest.approx(20 * chin["params"], abs=20)


def test_per_step_times_worked_by_hand(spec: TemplateSpec) -> None:
    s = estimate(spec, answers())["steps"]
    assert s["tokenizer"]["hours"] == pytest.approx(5.01 / 1.8 / 3600)  # 5.01 MB read, cleaned, trained at 1.8 MB/s
    assert s["shards"]["hours"] == pytest.approx(5.01 / 25.0 / 3600)
    # 5,774 steps, an evaluation every 250 and one at steps 0 and 5,774: 25 x 20 micro-batches of 16 x 256,
    # forward only (a third of the training FLOPs per token).
    assert s["evaluation"]["hours"] == pytest.approx(25 * 20 * 16 * 256 * 28_311_552 / 3 / 3.72e11 / 3600)
    assert s["data_collection"]["hours"] is None and s["model"]["hours"] is None
    assert dict(s["initialisation"]["rows"])["first loss (tiny config)"] == "ln(2048) = 7.625"
    assert dict(s["initialisation"]["rows"])["first loss (default config)"] == f"ln(4096) = {math.log(4096):.3f}"
    files = estimate(spec, answers(data_source="files", data_path="d/*.txt"))["steps"]
    assert files["tokenizer"]["hours"] == pytest.approx(47_300_608 * 4.0 / 1e6 / 1.8 / 3600)  # 4 bytes per token


def test_steps_without_code_have_no_time_and_no_price(spec: TemplateSpec) -> None:
    """A step with no commands has no code in the generated repository: it says so and shows no price."""
    for budget in ("cpu", "cluster"):
        extra = {"nodes": 4} if budget == "cluster" else {}
        est = estimate(spec, answers("practitioner", budget, **extra))
        for sid, step in est["steps"].items():
            if spec.catalog["steps"][sid].get("commands"):
                continue
            rows = dict(step["rows"])
            assert step["hours"] is None and step["cost_usd"] is None and "cost" not in rows, sid
            assert not any(value.startswith("$") for value in rows.values()), sid
            assert rows["time"] == "not estimated: the template has no code for this step yet", sid
    assert "fine_tuning" in est["steps"] and "cleaning_pii" in est["steps"]
    assert "no PII or deduplication" not in dict(est["steps"]["cleaning_pii"]["rows"])["time"]


def test_chinchilla_matches_hoffmann_table_3(spec: TemplateSpec) -> None:
    """Hoffmann et al. (2022), table 3: a 1 B model is compute-optimal at 1.21e20 FLOPs on 20.2 B tokens."""
    hours = 1.21e20 / (989e12 * 0.4) / 3600  # one H100 at 40% MFU
    chin = estimate(spec, answers("practitioner", "gpu-80gb", hours=hours))["chinchilla"]
    assert chin["params"] == pytest.approx(1.0e9, rel=0.01)
    assert chin["tokens"] == pytest.approx(20.2e9, rel=0.02)


def test_cluster_cost_memory_and_critical_path(spec: TemplateSpec) -> None:
    est = estimate(spec, answers("researcher", "cluster", hours=10.0, nodes=8))
    assert est["compute"]["world_size"] == 64 and est["compute"]["price_per_hour"] == 160.0  # 8 nodes x $20/h
    assert est["training"]["cost_usd"] == pytest.approx(est["training"]["hours"] * 160.0)
    single = estimate(spec, answers("researcher", "node-8gpu", hours=10.0))
    assert est["memory"]["weights"] > single["memory"]["weights"]  # the cluster preset is wider
    assert est["memory"]["total_ckpt"] < est["memory"]["total"]
    path = est["critical_path"]
    steps = spec.catalog["steps"]
    assert path[0] == "data_collection" and "training_loop" in path
    assert all(a in steps[b]["depends_on"] for a, b in zip(path, path[1:]))  # a chain along the edges
    assert not any(est["steps"][sid]["optional"] for sid in path)
    assert "distributed" in est["steps"] and "distributed" not in estimate(spec, answers())["steps"]


def test_memory_that_does_not_fit(tmp_path: Path) -> None:
    copy_template(ROOT, tmp_path)
    budgets = tmp_path / "tracks" / "budgets.yml"
    budgets.write_text(budgets.read_text().replace("    memory_gb: 24\n", "    memory_gb: 8\n", 1))
    est = estimate(TemplateSpec(tmp_path), answers("beginner", "gpu-24gb", hours=12.0))
    mem = est["memory"]
    assert mem["capacity"] == 8 * 2**30 and mem["total"] > mem["capacity"] and not mem["fits"]
    assert mem["fits_ckpt"] == (mem["total_ckpt"] <= mem["capacity"])
    assert "does not fit" in dict(est["steps"]["training_loop"]["rows"])["memory per device"]


def test_estimate_all_prints_every_combination(cli, spec: TemplateSpec) -> None:
    code, out, _ = cli("estimate", "--all")
    assert code == 0
    rows = [line.split() for line in out.splitlines()[2:] if line.split()[:1] in (["beginner"], ["practitioner"], ["researcher"])]
    assert len(rows) == 15
    for track in spec.catalog["tracks"]:
        for budget in spec.catalog["budgets"]:
            assert any(r[0] == track and r[1] == budget for r in rows), (track, budget)
    code, _, err = cli("estimate", "--all", "--track", "beginner")
    assert code == 2 and "drop --track" in err


def test_estimate_prints_flops_memory_and_steps(cli) -> None:
    code, out, _ = cli("estimate", "--track", "beginner", "--budget", "cpu")
    assert code == 0
    assert "training FLOPs   1.34e+15" in out and "memory/device" in out and "compute-optimal  3.34 M" in out
    assert "Tokenizer" in out and "Training loop" in out and "60 min" in out
    assert "Plan for" not in out and out.startswith("  track")  # no label naming a project that does not exist


def test_recorded_cpu_figures_are_within_tolerance(spec: TemplateSpec) -> None:
    """The measured times in docs/calibration/cpu.json (from `estimate --measure`) against today's estimates."""
    record = json.loads((ROOT / CALIBRATION_FILE).read_text())
    assert set(record["tracks"]) == set(spec.catalog["tracks"])
    for track, figures in record["tracks"].items():
        est = estimate(spec, answers(track))
        measured = figures["train_tokens"] / figures["tokens_per_s"] / 3600
        ratio = measured / est["training"]["hours"]
        assert abs(ratio - 1) <= TOLERANCE, f"{track}: measured {measured:.2f} h vs estimated {est['training']['hours']:.2f} h"
    data = record["data"]
    steps = estimate(spec, answers())["steps"]
    for name, step in (("tokenizer", "tokenizer"), ("encode", "shards")):
        ratio = data[f"{name}_s"] / (steps[step]["hours"] * 3600)
        assert abs(ratio - 1) <= TOLERANCE, f"{name}: {ratio:.2f}x the estimate"


@pytest.mark.slow
def test_measure_runs_prepare_and_bench(spec: TemplateSpec) -> None:
    pytest.importorskip("torch")
    record = measure(spec, steps=2, repeats=1, tracks=["beginner"], log=lambda *_: None)
    assert record["data"]["corpus_mb"] == pytest.approx(5.01, abs=0.05)
    assert record["data"]["tokenizer_s"] > 0 and record["data"]["encode_s"] > 0
    r = record["tracks"]["beginner"]
    assert r["tokens_per_s"] > 0 and r["train_hours"] == pytest.approx(r["train_tokens"] / r["tokens_per_s"] / 3600, rel=1e-3)
