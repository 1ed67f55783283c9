"""The typed catalog: one precise line per mistake in each section, the rules between sections, the layers, the
plain data Copier reads, and the generated CLI's commands in both registration forms."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from generator.catalog import validate_catalog
from generator.errors import UserError
from generator.spec import TEMPLATE_PACKAGE_DIR, TemplateSpec, cli_commands

FILES = {"tracks": "tracks/tracks.yml", "feature_notes": "tracks/tracks.yml", "budgets": "tracks/budgets.yml",
         "presets": "tracks/presets.yml", "finetune": "tracks/presets.yml", "data_sources": "tracks/choices.yml",
         "licenses": "tracks/choices.yml", "steps": "tracks/roadmap.yml", "checks": "tracks/checks.yml",
         "layers": "tracks/layers.yml", "layer_defaults": "tracks/layers.yml"}
LEAVE_OUT = object()  # as a value: delete the key


def mistake(spec: TemplateSpec, path: tuple[Any, ...], value: Any) -> str:
    """The error for the real catalog with the value at `path` (keys and list indexes) replaced."""
    data = copy.deepcopy(spec.catalog)
    node = data
    for key in path[:-1]:
        node = node[key]
    if value is LEAVE_OUT:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    with pytest.raises(UserError) as info:
        validate_catalog(data, FILES, cli_commands(spec.root))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_the_real_catalog_validates_into_models(spec: TemplateSpec) -> None:
    models = spec.models
    assert models.tracks["researcher"].kv_head_ratio == 4 and models.tracks["beginner"].kv_head_ratio is None
    assert models.presets["cluster"].sizes and models.presets["cluster"].sizes[0].n_embd == 1536
    assert models.layers["qlora"].needs == ["lora", "quantize"]
    assert models.checks["data_manifest"].layer == "governance"


def test_plain_data_is_what_copier_includes(spec: TemplateSpec) -> None:
    included = yaml.safe_load(spec.render(spec.config["catalog"]["default"], {}))
    assert spec.catalog == included


@pytest.mark.parametrize(("path", "value", "expected"), [
    (("presets", "cpu", "n_head"), "x", "tracks/presets.yml: presets.cpu.n_head: expected an integer >= 1, got 'x'"),
    (("presets", "cpu", "precision"), "int8",
     "tracks/presets.yml: presets.cpu.precision: expected one of auto, bf16, fp16, fp32, got 'int8'"),
    (("presets", "cluster", "sizes"), [], "tracks/presets.yml: presets.cluster.sizes: expected at least one entry"),
    (("presets", "tiny", "lr"), 2, "tracks/presets.yml: presets.tiny.lr: expected a number in (0, 1], got 2"),
    (("finetune", "lora", "lr_factor"), 0, "tracks/presets.yml: finetune.lora.lr_factor: expected a number in (0, 100], got 0"),
    (("tracks", "beginner", "features", "gqa"), "yes",
     "tracks/tracks.yml: tracks.beginner.features.gqa: expected true or false, got 'yes'"),
    (("tracks", "beginner", "gives"), [], "tracks/tracks.yml: tracks.beginner.gives: expected a non-empty list of strings, got []"),
    (("tracks", "researcher", "kv_head_ratio"), 1, "tracks.researcher.kv_head_ratio: expected an integer >= 2, got 1"),
    (("feature_notes", "colour"), {"title": "Colour", "note": "red"},
     "tracks/tracks.yml: feature_notes: key 'colour': expected one of explain, notebook, cpu_kernels"),
    (("budgets", "cpu", "gpus_per_node"), 0, "tracks/budgets.yml: budgets.cpu.gpus_per_node: expected an integer >= 1, got 0"),
    (("budgets", "cpu", "price_per_hour"), -1, "budgets.cpu.price_per_hour: expected a number >= 0, got -1"),
    (("budgets", "gpu-24gb", "default_data_source"), None,
     "budgets.gpu-24gb.default_data_source: expected a value (leave the key out instead), got None"),
    (("data_sources", "stdlib", "mb"), 0, "tracks/choices.yml: data_sources.stdlib.mb: expected a number > 0, got 0"),
    (("licenses", "MIT", "title"), " ", "tracks/choices.yml: licenses.MIT.title: expected a non-empty string, got ' '"),
    (("layers", "lora", "needs"), "finetune", "tracks/layers.yml: layers.lora.needs: expected a list of names, got 'finetune'"),
    (("layers", "lora", "modules"), [], "layers.lora.modules: expected a non-empty list of strings, got []"),
    (("layers", "lora", "words"), LEAVE_OUT, "tracks/layers.yml: layers.lora: missing field 'words'"),
    (("layer_defaults", "tracks"), ["core"], "layer_defaults.tracks: expected a mapping of track ids to lists of layers"),
    (("steps", "model", "tools", 0, "url"), "http://x", "tracks/roadmap.yml: steps.model.tools[0].url: expected an https:// address, got 'http://x'"),
    (("steps", "model", "snippet", "file"), "model.py", "steps.model.snippet.file: expected PACKAGE/<module>.py, got 'model.py'"),
    (("steps", "model", "experiment", "pattern"), "(a)(b)",
     "steps.model.experiment.pattern: expected a regular expression with exactly one group, got '(a)(b)'"),
    (("steps", "data_collection", "estimate", "bytes_per_token"), 0,
     "steps.data_collection.estimate.bytes_per_token: expected a number > 0, got 0"),
    (("steps", "data_collection", "security", 0, "check"), "the tests",
     "steps.data_collection.security[0].check: expected a test node id tests/<file>.py::<test>, or null"),
    (("steps", "model", "layers"), "governance", "tracks/roadmap.yml: steps.model.layers: expected a list of names"),
    (("checks", "tokenizer", "seconds"), 1.5,
     "tracks/checks.yml: checks.tokenizer.seconds: expected an integer >= 1, got 1.5"),
    (("checks", "tokenizer", "figures", "bad-name"), {}, "checks.tokenizer.figures: key 'bad-name': expected a name"),
    (("checks", "data_manifest", "setup", "documents"), {"a": 1}, "checks.data_manifest.setup.documents: expected a number, a text"),
    (("checks", "data_manifest", "look_at"), "sources.py", "checks.data_manifest.look_at: expected PACKAGE/<file>"),
])
def test_field_mistakes(spec: TemplateSpec, path: tuple[Any, ...], value: Any, expected: str) -> None:
    assert expected in mistake(spec, path, value)


@pytest.mark.parametrize(("path", "value", "expected"), [
    (("presets", "tiny", "n_head"), 2, "tracks/presets.yml: presets.tiny: n_head 2 is not divisible by kv_head_ratio 4"),
    (("presets", "tiny", "max_steps"), LEAVE_OUT, "presets.tiny: the tiny preset with max_steps is required"),
    (("budgets", "cluster", "max_nodes"), LEAVE_OUT, "budgets.cluster: a multi_node budget needs default_nodes and max_nodes"),
    (("steps", "model", "explanation", "beginner"), LEAVE_OUT,
     "steps.model.explanation: expected one text for each of beginner, practitioner, researcher"),
    (("steps", "model", "experiment", "command"), "bench", "steps.model.experiment.command: must be one of the step's commands"),
    (("steps", "model", "layers"), ["governance", "gpu"], "tracks/roadmap.yml: steps.model.layers: unknown id 'gpu'"),
    (("checks", "tokenizer", "layer"), "tokenizers", "tracks/checks.yml: checks.tokenizer.layer: not a layer of tracks/layers.yml"),
    (("checks", "tokenizer", "figures", "round_trip_failures", "shown"), True,
     "checks.tokenizer.figures.round_trip_failures: expected exactly one of expected, formula, at_most, at_least and "
     "shown: true, got expected, shown"),
])
def test_rules_within_and_between_sections(spec: TemplateSpec, path: tuple[Any, ...], value: Any, expected: str) -> None:
    assert expected in mistake(spec, path, value)


@pytest.mark.parametrize(("path", "value", "expected"), [
    (("layers", "lora", "needs"), ["finetune", "adapters"], "tracks/layers.yml: layers.lora.needs: 'adapters' is not a layer (known: governance"),
    (("layers", "chat", "needs"), ["serve"], "layers.chat.needs: the layers need each other in a cycle: chat -> serve -> chat"),
    (("layers", "chat", "needs"), ["chat"], "layers.chat.needs: the layers need each other in a cycle: chat -> chat"),
    (("layer_defaults", "tracks", "researcher"), LEAVE_OUT,
     "layer_defaults.tracks: expected one list of layers for each of beginner, practitioner, researcher"),
    (("layer_defaults", "budgets", "tpu"), [], "layer_defaults.budgets: expected one list of layers for each of cpu, gpu-24gb"),
    (("layer_defaults", "budgets", "cpu"), ["gpu"], "tracks/layers.yml: layer_defaults.budgets.cpu: 'gpu' is not a layer"),
    (("data_sources", "jsonl", "layer"), "readers", "tracks/choices.yml: data_sources.jsonl.layer: 'readers' is not a layer"),
])
def test_layer_mistakes(spec: TemplateSpec, path: tuple[Any, ...], value: Any, expected: str) -> None:
    assert expected in mistake(spec, path, value)


def test_cli_commands_reads_both_registration_forms(tmp_path: Path) -> None:
    package = tmp_path / "template" / TEMPLATE_PACKAGE_DIR
    package.mkdir(parents=True)
    (package / "cli.py").write_text('sub.add_parser("train", help="x")\nsub.add_parser(\n    "tokenizer-eval")\n')
    (package / "{% if derived.layers.serve %}serve.py{% endif %}.jinja").write_text(
        '@command("serve", help="an HTTP server")\ndef serve(args): ...\n@command(\'train\')\ndef again(args): ...\n')
    (package / "model.py").write_text("def command(name): ...\n")
    assert cli_commands(tmp_path) == ("train", "tokenizer-eval", "serve")


def test_cli_commands_needs_a_registered_command(tmp_path: Path) -> None:
    (tmp_path / "template" / TEMPLATE_PACKAGE_DIR).mkdir(parents=True)
    with pytest.raises(UserError, match="registers a command"):
        cli_commands(tmp_path)
