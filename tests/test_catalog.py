"""tracks/ schema validation: the real data passes, and each kind of mistake gets a precise one-line error."""

from __future__ import annotations

import re

from pathlib import Path

import pytest

from generator.source import copy_template
from generator.catalog import catalog_files
from generator.catalog_models import DATA_READERS
from generator.errors import UserError
from generator.spec import TEMPLATE_PACKAGE_DIR, TemplateSpec

ROOT = Path(__file__).resolve().parents[1]


def test_real_catalog_is_complete(spec: TemplateSpec) -> None:
    catalog = spec.catalog
    assert set(catalog["tracks"]) == {"beginner", "practitioner", "researcher"}
    assert set(catalog["budgets"]) == {"cpu", "gpu-24gb", "gpu-80gb", "node-8gpu", "cluster"}
    assert set(catalog["presets"]) == set(catalog["budgets"]) | {"tiny"}


def test_copier_yml_includes_every_data_file(spec: TemplateSpec) -> None:
    included = {Path(p).name for p in catalog_files(spec.config["catalog"]["default"])}
    on_disk = {p.name for p in (ROOT / "tracks").glob("*.yml")}
    assert included == on_disk


@pytest.fixture
def broken(tmp_path: Path):
    """Copy the template's data and config, apply an edit to one file, and load it."""

    def load(file: str, old: str, new: str) -> str:
        copy_template(ROOT, tmp_path)
        path = tmp_path / "tracks" / file
        text = path.read_text()
        assert old in text, f"test setup: {old!r} not in {file}"
        path.write_text(text.replace(old, new, 1))
        with pytest.raises(UserError) as info:
            _ = TemplateSpec(tmp_path).catalog
        message = str(info.value)
        assert "\n" not in message
        return message

    return load


@pytest.mark.parametrize(
    ("file", "old", "new", "expected"),
    [
        ("budgets.yml", "    mfu: 0.4\n", "    mfu: 1.5\n", "budgets.yml: budgets.cpu.mfu: expected a number in (0, 1], got 1.5"),
        ("budgets.yml", "    device: cpu\n", "    device: tpu\n", "budgets.cpu.device: expected one of cpu, cuda, got 'tpu'"),
        ("budgets.yml", "    default_hours: 1\n", "", "budgets.yml: budgets.cpu: missing field 'default_hours'"),
        ("tracks.yml", "    architecture: gpt2", "    architecture: rnn", "tracks.beginner.architecture: expected one of gpt2, llama"),
        ("tracks.yml", "    kv_head_ratio: 4", "    kv_head_ratio: 4\n    colour: red", "tracks.researcher: unknown field 'colour'"),
        ("tracks.yml", "      fsdp: true\n", "", "tracks/tracks.yml: tracks.researcher.features: missing field 'fsdp'"),
        ("tracks.yml", "      explain: long", "      explain: deep", "tracks.beginner.features.explain: expected one of long, short, got 'deep'"),
        ("tracks.yml", "    kv_head_ratio: 4", "", "tracks.researcher: kv_head_ratio is given exactly when features.gqa"),
        ("presets.yml", "    n_embd: 256\n", "    n_embd: 250\n", "presets.cpu: n_embd 250 is not divisible by n_head 4"),
        ("presets.yml", "  gpu-80gb:\n", "  gpu-80gb-old:\n", "no preset for budget 'gpu-80gb'"),
        ("presets.yml", "    vocab_size: 2048\n", "    vocab_size: 100\n", "tracks/presets.yml: presets.tiny.vocab_size: expected an integer >= 257, got 100"),
        ("presets.yml", "n_embd: 2560, lr", "n_embd: 2500, lr", "presets.cluster.sizes[2]: n_embd 2500 is not divisible"),
        ("presets.yml", "n_embd: 4096, lr", "n_embd: 4096, colour: red, lr", "presets.cluster.sizes[3]: unknown field 'colour'"),
        ("presets.yml", "      gpt2: 6.0e-3", "      rnn: 6.0e-3", "presets.tiny.lr_by_architecture: key 'rnn': expected one of gpt2, llama"),
        ("presets.yml", "  dpo: {lr_factor", "  ppo: {lr_factor", "tracks/presets.yml: finetune: missing field 'dpo' (and 1 more)"),
        ("presets.yml", "      gpt2: 1200", "      gpt2: 0", "finetune.sft.max_steps_by_architecture.gpt2: expected an integer >= 1, got 0"),
        ("choices.yml", "    title: MIT\n", "    title: '{{ x }}'\n", "choices.yml: line"),
        ("choices.yml", "    source: jsonl\n", "    source: csv\n", "data_sources.jsonl.source: expected one of shakespeare"),
        ("choices.yml", "    source: jsonl\n", "    source: jsonl\n    data_path: x.jsonl\n",
         "data_sources.jsonl: give exactly one of data_path and data_path_default"),
        ("budgets.yml", "    default_data_source: fineweb-edu\n", "    default_data_source: web\n",
         "budgets.gpu-24gb.default_data_source: 'web' is not a data source in choices.yml"),
        ("choices.yml", "licenses:\n", "licenses: [\n", "choices.yml: line"),
        ("choices.yml", "licenses:\n", "colours:\n", "tracks/choices.yml: colours: unknown section"),
    ],
)
def test_mistakes_are_reported_precisely(broken, file: str, old: str, new: str, expected: str) -> None:
    assert expected in broken(file, old, new)


def test_multi_node_budget_needs_node_limits(broken) -> None:
    assert "needs default_nodes and max_nodes" in broken("budgets.yml", "    max_nodes: 512\n", "")


def test_data_sources_name_the_readers_of_the_generated_prepare() -> None:
    """The wizard offers a source for every reader that the generated package registers in data.READERS (the core's
    in data.py, the datasets layer's in sources.py), and names no reader it lacks."""
    package = ROOT / "template" / TEMPLATE_PACKAGE_DIR
    texts = [p.read_text() for p in package.iterdir() if p.name.startswith(("data.py", "{% if derived.layers.datasets"))]
    kinds = [m.group(1) or m.group(2) for t in texts
             for m in re.finditer(r'^    "(\w+)": Reader\(|^READERS\["(\w+)"\] = Reader\(', t, re.MULTILINE)]
    assert sorted(kinds) == sorted(DATA_READERS)
    offered = {s["source"] for s in TemplateSpec(ROOT).catalog["data_sources"].values()}
    assert offered == set(DATA_READERS)
