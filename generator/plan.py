"""The plan shown before anything is written: model size, training tokens, time and cost on the budget.

All figures come from generator/formulas.py's `derive` (through TemplateSpec.derive), the same values the
generated repository's configs and README are rendered from; this module only lays them out.
"""

from __future__ import annotations

from typing import Any

from generator.formulas import corpus_passes, human, passes_warning
from generator.spec import TemplateSpec


def plan_rows(spec: TemplateSpec, answers: dict[str, Any], derived: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows describing what the project will train and what it costs."""
    track = spec.models.tracks[answers["track"]]
    budget = spec.models.budgets[answers["budget"]]
    m, plan = derived["model"], derived["plan"]
    hardware = budget.accelerator
    if derived["nodes"] > 1:
        hardware = f"{derived['nodes']} nodes x {budget.gpus_per_node} GPUs ({derived['world_size']} GPUs)"
    heads = f"{m['n_head']} heads" + (f", {m['n_kv_head']} key/value heads" if m["n_kv_head"] != m["n_head"] else "")
    arch = f"{derived['architecture_title']} style"
    ratio = plan["train_tokens"] / plan["chinchilla_tokens"]
    warning = passes_warning(corpus_passes(spec.catalog, answers.get("data_source", ""), derived))
    return [
        ("track", f"{track.title}: {track.summary}"),
        ("budget", f"{budget.title} ({hardware})"),
        ("model", f"{human(m['params'])} parameters, {arch}: {m['n_layer']} layers x {m['n_embd']} wide, {heads}"),
        ("context", f"{m['block_size']} tokens, vocabulary {m['vocab_size']:,}"),
        ("training", f"{human(plan['train_tokens'])} tokens in {plan['max_steps']:,} steps of {human(m['batch_tokens'])} tokens"),
        ("compute-optimal", f"{human(plan['chinchilla_tokens'])} tokens (20 per parameter, Hoffmann et al. 2022): "
                            f"the plan is {ratio:.2g}x that; for this compute the optimal model has "
                            f"{human(plan['compute_optimal_params'])} parameters"),
        ("throughput", f"~{human(plan['tokens_per_s'])} tokens/s at {budget.mfu:.0%} MFU"),
        ("time", f"{plan['hours']:g} h of training"),
        ("cost", "free (your own machine)" if budget.price_per_hour == 0 else f"~${float(plan['cost_usd']):,.2f} "
                 f"at ${budget.price_per_hour:g}/h{' per node' if derived['nodes'] > 1 else ''}"),
        ("layers", ", ".join(derived["layer_list"]) or "none: the core alone (llm-blueprint add LAYER adds one later)"),
        *([("data", warning)] if warning else []),
    ]


def format_rows(rows: list[tuple[str, str]]) -> str:
    """Two indented columns, the labels padded to the longest."""
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"  {label.ljust(width)}  {value}" for label, value in rows)


def format_plan(spec: TemplateSpec, answers: dict[str, Any], derived: dict[str, Any]) -> str:
    """The plan `new` shows before it writes anything."""
    return f"Plan for {answers['project_name']}:\n" + format_rows(plan_rows(spec, answers, derived))
