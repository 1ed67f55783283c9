"""Models of tracks/tracks.yml, budgets.yml, presets.yml, choices.yml and layers.yml: one class per kind of entry.

Each model checks its own fields and the rules inside one entry; rules between sections (a budget's preset, a
data source's layer) are the Catalog's, in generator/catalog.py. Field types come from generator/catalog_fields.py.
"""

from __future__ import annotations

from typing import Annotated, Any

from annotated_types import MinLen
from pydantic import model_validator

from generator.catalog_fields import Entry, Flag, Names, Text, TextList, expect, integer, number, one_of, optional, rule

ARCHITECTURES = ("gpt2", "llama")
LearningRate = number(0, 1, lo_open=True)


def by_architecture(value: Any) -> Any:
    """A preset's override per architecture: a non-empty mapping of architectures to `value`."""
    return Annotated[dict[one_of(*ARCHITECTURES), value], MinLen(1)]


class Features(Entry):
    """What a track gets, by name (tracks.yml explains each). Template files test these names, never a track's id;
    every track lists every feature, so a template never meets a missing one."""

    explain: one_of("long", "short")
    notebook: Flag
    cpu_kernels: Flag
    gqa: Flag
    qk_norm: Flag
    ablations: Flag
    wsd_schedule: Flag
    fsdp: Flag


FEATURES = tuple(Features.model_fields)
SWITCHES = tuple(name for name, field in Features.model_fields.items() if field.annotation is bool)


class Track(Entry):
    title: Text
    summary: Text
    architecture: one_of(*ARCHITECTURES)
    features: Features
    gives: TextList
    kv_head_ratio: optional(integer(2)) = None

    @model_validator(mode="after")
    def _ratio_with_gqa(self) -> Track:
        if self.features.gqa != (self.kv_head_ratio is not None):
            raise rule("kv_head_ratio is given exactly when features.gqa is true")
        return self


class Budget(Entry):
    title: Text
    summary: Text
    device: one_of("cpu", "cuda")
    accelerator: Text
    gpus_per_node: integer(1)
    memory_gb: number(0, lo_open=True)
    peak_tflops_bf16: number(0, lo_open=True)
    peak_tflops_fp32: number(0, lo_open=True)
    mfu: number(0, 1, lo_open=True)
    price_per_hour: number(0)
    default_hours: number(0, 10000, lo_open=True)
    source: Text  # where the peak FLOP/s, memory, MFU and price come from
    multi_node: Flag = False
    default_nodes: optional(integer(2)) = None
    max_nodes: optional(integer(2)) = None
    default_data_source: optional(Text) = None

    @model_validator(mode="after")
    def _node_limits(self) -> Budget:
        if self.multi_node and (self.default_nodes is None or self.max_nodes is None):
            raise rule("a multi_node budget needs default_nodes and max_nodes")
        return self


class Shape(Entry):
    """A model's shape and peak learning rate: a preset, or one of a cluster preset's larger `sizes`."""

    n_layer: integer(1)
    n_head: integer(1)
    n_embd: integer(1)
    lr: LearningRate

    @model_validator(mode="after")
    def _heads_divide(self) -> Shape:
        if self.n_embd % self.n_head:
            raise rule(f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
        return self


class Preset(Shape):
    block_size: integer(2)
    vocab_size: integer(257)  # more than the 256 bytes the tokenizer starts from
    micro_batch_size: integer(1)
    batch_tokens: integer(1)
    warmup_steps: integer(0)
    eval_interval: integer(1)
    precision: one_of("auto", "bf16", "fp16", "fp32")
    max_steps: optional(integer(1)) = None
    lr_by_architecture: optional(by_architecture(LearningRate)) = None
    sizes: optional(Annotated[list[Shape], MinLen(1)]) = None


class FinetuneMethod(Entry):
    lr_factor: number(0, 100, lo_open=True)
    max_steps: integer(1)
    max_steps_by_architecture: optional(by_architecture(integer(1))) = None


class Finetune(Entry):
    """`finetune --method`: sft on every track, the others where the repository has the layer of that name."""

    sft: FinetuneMethod
    lora: FinetuneMethod
    qlora: FinetuneMethod
    dpo: FinetuneMethod


FINETUNE_METHODS = tuple(Finetune.model_fields)


class FeatureNote(Entry):
    title: Text
    note: Text


# The readers of the generated `prepare` (SOURCE_KINDS in the template's sources.py; a test keeps the two equal).
DATA_READERS = ("shakespeare", "stdlib", "files", "jsonl", "parquet", "hf")


class DataSource(Entry):
    title: Text
    summary: Text
    source: one_of(*DATA_READERS)
    data_path: optional(Text) = None
    data_path_default: optional(Text) = None
    hf_name: optional(Text) = None
    licence: optional(Text) = None
    mb: optional(number(0, lo_open=True)) = None
    streamed: Flag = False
    layer: optional(Text) = None

    @model_validator(mode="after")
    def _one_path(self) -> DataSource:
        built_in = self.source in ("shakespeare", "stdlib")
        if not built_in and (self.data_path is None) == (self.data_path_default is None):
            raise rule("give exactly one of data_path and data_path_default")
        return self


class Licence(Entry):
    title: Text
    summary: Text


class Layer(Entry):
    title: Text
    adds: Text
    needs: Names
    modules: TextList
    words: TextList
    requires: Names = []
    extras: Annotated[dict[Text, Names], expect("a mapping of extra names to lists of packages")] = {}
    dev: Names = []


class LayerDefaults(Entry):
    """Each track's and each budget's default layers."""

    tracks: Annotated[dict[Text, Names], expect("a mapping of track ids to lists of layers")]
    budgets: Annotated[dict[Text, Names], expect("a mapping of budget ids to lists of layers")]
