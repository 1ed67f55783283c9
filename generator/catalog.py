"""Load the tracks/ YAML data and check it against a schema, with errors that name file, key and value.

copier.yml includes the data files into its `catalog` variable; the same include list is read here, so the
wizard and Copier always see the same files. Each file is parsed on its own (so a YAML error names its file),
checked for Jinja syntax (Copier renders included files as templates), validated, then merged.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

import yaml

from generator.checks_schema import check_schema
from generator.checks_schema import cross_check as _check_checks
from generator.errors import UserError
from generator.roadmap_schema import cli_commands, step_schema
from generator.roadmap_schema import cross_check as _check_steps

_INCLUDE = re.compile(r"include\s+'([^']+)'")
_JINJA = re.compile(r"\{\{|\{%|\{#")

Check = Callable[[Any], bool]


def _str(v: Any) -> bool:
    return isinstance(v, str) and bool(v.strip())


def _num(lo: float, hi: float = float("inf"), lo_open: bool = False) -> Check:
    def check(v: Any) -> bool:
        ok_type = isinstance(v, (int, float)) and not isinstance(v, bool)
        return ok_type and (v > lo if lo_open else v >= lo) and v <= hi

    check.__doc__ = f"a number in {'(' if lo_open else '['}{lo}, {hi}]"
    return check


def _int(lo: int) -> Check:
    def check(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= lo

    check.__doc__ = f"an integer >= {lo}"
    return check


def _one_of(*options: str) -> Check:
    def check(v: Any) -> bool:
        return v in options

    check.__doc__ = "one of " + ", ".join(options)
    return check


def _str_list(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(_str(x) for x in v)


def _bool(v: Any) -> bool:
    return isinstance(v, bool)


ARCHITECTURES = ("gpt2", "llama")
_LR = _num(0, 1, lo_open=True)


def _by_architecture(value: Check) -> Check:
    """A check of a mapping from architectures to values that `value` accepts (a preset's override per model)."""
    def check(v: Any) -> bool:
        return isinstance(v, dict) and bool(v) and all(k in ARCHITECTURES and value(x) for k, x in v.items())

    check.__doc__ = f"a mapping of architectures ({', '.join(ARCHITECTURES)}), each to {value.__doc__}"
    return check


# `finetune --method`: sft on every track, the others where the track has the feature of that name.
FINETUNE_METHODS = ("sft", "lora", "qlora", "dpo")


# What a track can get, by name (tracks/tracks.yml explains each). Template files test these names, never a
# track's id; every track lists every feature, so a template never meets a missing one.
FEATURES: dict[str, Check] = {
    "explain": _one_of("long", "short"),
    "notebook": _bool,
    "cpu_kernels": _bool,
    "gqa": _bool,
    "qk_norm": _bool,
    "ablations": _bool,
    "wsd_schedule": _bool,
    "fsdp": _bool,
    "lora": _bool,
    "dpo": _bool,
    "qlora": _bool,
}


_SIZE = {"n_layer": _int(1), "n_head": _int(1), "n_embd": _int(1), "lr": _LR}


def _sizes(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(
        isinstance(size, dict) and set(size) == set(_SIZE) and all(_SIZE[k](x) for k, x in size.items()) for size in v)


def _features(v: Any) -> bool:
    return isinstance(v, dict) and set(v) == set(FEATURES) and all(FEATURES[k](x) for k, x in v.items())


_str.__doc__ = "a non-empty string"
_str_list.__doc__ = "a non-empty list of strings"
_bool.__doc__ = "true or false"
_sizes.__doc__ = "a non-empty list of model sizes, each exactly n_layer, n_head, n_embd and lr"
_features.__doc__ = "a mapping of every feature (" + ", ".join(FEATURES) + ") to its value"

# The readers of the generated `prepare` (SOURCE_KINDS in the template's sources.py; a test keeps the two equal).
DATA_READERS = ("shakespeare", "stdlib", "files", "jsonl", "parquet", "hf")

# Per section: (required fields, optional fields). Every entry of the section must satisfy them.
_TITLED = {"title": _str, "summary": _str}
SCHEMA: dict[str, tuple[dict[str, Check], dict[str, Check]]] = {
    "tracks": (
        {**_TITLED, "architecture": _one_of(*ARCHITECTURES), "features": _features, "gives": _str_list},
        {"kv_head_ratio": _int(2)},
    ),
    "budgets": (
        {
            **_TITLED,
            "device": _one_of("cpu", "cuda"),
            "accelerator": _str,
            "gpus_per_node": _int(1),
            "memory_gb": _num(0, lo_open=True),
            "peak_tflops_bf16": _num(0, lo_open=True),
            "peak_tflops_fp32": _num(0, lo_open=True),
            "mfu": _num(0, 1, lo_open=True),
            "price_per_hour": _num(0),
            "default_hours": _num(0, 10000, lo_open=True),
            "source": _str,  # where the peak FLOP/s, memory, MFU and price come from
        },
        {"multi_node": _bool, "default_nodes": _int(2), "max_nodes": _int(2), "default_data_source": _str},
    ),
    "presets": (
        {
            "n_layer": _int(1),
            "n_head": _int(1),
            "n_embd": _int(1),
            "block_size": _int(2),
            "vocab_size": _int(257),
            "micro_batch_size": _int(1),
            "batch_tokens": _int(1),
            "lr": _LR,
            "warmup_steps": _int(0),
            "eval_interval": _int(1),
            "precision": _one_of("auto", "bf16", "fp16", "fp32"),
        },
        {"max_steps": _int(1), "lr_by_architecture": _by_architecture(_LR), "sizes": _sizes},
    ),
    "finetune": ({"lr_factor": _num(0, 100, lo_open=True), "max_steps": _int(1)},
                 {"max_steps_by_architecture": _by_architecture(_int(1))}),
    "feature_notes": ({"title": _str, "note": _str}, {}),
    "data_sources": (
        {**_TITLED, "source": _str},
        {"data_path": _str, "data_path_default": _str, "hf_name": _str, "licence": _str,
         "mb": _num(0, lo_open=True), "streamed": _bool},
    ),
    "licenses": (_TITLED, {}),
    "steps": step_schema(_str, _str_list),  # tracks/roadmap.yml, see generator/roadmap_schema.py
    "checks": check_schema(_str),  # tracks/checks.yml, see generator/checks_schema.py
}


def _fail(file: str, where: str, message: str) -> UserError:
    return UserError(f"tracks data {file}: {where}: {message}")


def _validate_section(file: str, section: str, entries: Any) -> None:
    required, optional = SCHEMA[section]
    if not isinstance(entries, dict) or not entries:
        raise _fail(file, section, "expected a mapping of ids to entries")
    for key, entry in entries.items():
        where = f"{section}.{key}"
        if not isinstance(entry, dict):
            raise _fail(file, where, "expected a mapping")
        unknown = set(entry) - set(required) - set(optional)
        if unknown:
            raise _fail(file, where, f"unknown field {sorted(unknown)[0]!r}")
        for field, check in {**required, **optional}.items():
            if field not in entry:
                if field in required:
                    raise _fail(file, where, f"missing field {field!r}")
                continue
            if not check(entry[field]):
                raise _fail(file, f"{where}.{field}", f"expected {check.__doc__}, got {entry[field]!r}")


def _cross_check(catalog: dict[str, Any], cli: tuple[str, ...]) -> None:
    """Rules that span sections: every budget has a preset, shapes divide, multi-node budgets are complete."""
    for budget, b in catalog["budgets"].items():
        if budget not in catalog["presets"]:
            raise _fail("presets.yml", "presets", f"no preset for budget {budget!r}")
        if b.get("multi_node") and not {"default_nodes", "max_nodes"} <= set(b):
            raise _fail("budgets.yml", f"budgets.{budget}", "a multi_node budget needs default_nodes and max_nodes")
        if b.get("default_data_source", "shakespeare") not in catalog["data_sources"]:
            raise _fail("budgets.yml", f"budgets.{budget}.default_data_source",
                        f"{b['default_data_source']!r} is not a data source in choices.yml")
    for name, s in catalog["data_sources"].items():
        if s["source"] not in DATA_READERS:
            raise _fail("choices.yml", f"data_sources.{name}.source",
                        f"expected one of {', '.join(DATA_READERS)}, got {s['source']!r}")
        if s["source"] not in ("shakespeare", "stdlib") and ("data_path" in s) == ("data_path_default" in s):
            raise _fail("choices.yml", f"data_sources.{name}", "give exactly one of data_path and data_path_default")
    if set(catalog["finetune"]) != set(FINETUNE_METHODS):
        raise _fail("presets.yml", "finetune", f"expected exactly the methods {', '.join(FINETUNE_METHODS)}")
    if "tiny" not in catalog["presets"] or "max_steps" not in catalog["presets"]["tiny"]:
        raise _fail("presets.yml", "presets.tiny", "the tiny preset with max_steps is required")
    for name in catalog["feature_notes"]:
        if name not in FEATURES:
            raise _fail("tracks.yml", f"feature_notes.{name}", f"not a feature (known: {', '.join(FEATURES)})")
    for track, t in catalog["tracks"].items():
        if t["features"]["gqa"] != ("kv_head_ratio" in t):
            raise _fail("tracks.yml", f"tracks.{track}", "kv_head_ratio is given exactly when features.gqa is true")
        if t["features"]["qlora"] and not t["features"]["lora"]:
            raise _fail("tracks.yml", f"tracks.{track}", "features.qlora needs features.lora (qlora.py builds on lora.py)")
    ratios = [t.get("kv_head_ratio", 1) for t in catalog["tracks"].values()]
    for name, preset in catalog["presets"].items():
        for i, p in enumerate([preset, *preset.get("sizes", [])]):
            where = f"presets.{name}" + (f".sizes[{i - 1}]" if i else "")
            if p["n_embd"] % p["n_head"]:
                raise _fail("presets.yml", where, f"n_embd {p['n_embd']} is not divisible by n_head {p['n_head']}")
            for ratio in ratios:
                if p["n_head"] % ratio:
                    raise _fail("presets.yml", where, f"n_head {p['n_head']} is not divisible by kv_head_ratio {ratio}")
    _check_steps(catalog, cli)
    _check_checks(catalog)


def catalog_files(include_expression: str) -> list[str]:
    """The data files named by copier.yml's `catalog` default (its `{% include '...' %}` list)."""
    return _INCLUDE.findall(include_expression)


def load_catalog(root: Path, include_expression: str) -> dict[str, Any]:
    """Parse, check and merge the data files that copier.yml includes."""
    catalog: dict[str, Any] = {}
    for rel in catalog_files(include_expression):
        path = root / rel
        name = Path(rel).name
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise _fail(name, "file", f"cannot be read ({exc.strerror})") from None
        for lineno, line in enumerate(text.splitlines(), 1):
            if _JINJA.search(line):
                raise _fail(name, f"line {lineno}", "Jinja syntax is not allowed in data files")
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}" if mark else "file"
            raise _fail(name, where, f"invalid YAML ({getattr(exc, 'problem', exc)})") from None
        if not isinstance(data, dict):
            raise _fail(name, "file", "expected a mapping at the top level")
        for section, entries in data.items():
            if section not in SCHEMA:
                raise _fail(name, section, f"unknown section (known: {', '.join(SCHEMA)})")
            if section in catalog:
                raise _fail(name, section, "section is defined in two files")
            _validate_section(name, section, entries)
            catalog[section] = entries
    missing = [s for s in SCHEMA if s not in catalog]
    if missing:
        raise _fail("tracks/", missing[0], "section is missing")
    _cross_check(catalog, cli_commands(root))
    return catalog
