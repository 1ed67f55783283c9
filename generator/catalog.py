"""Load the tracks/ YAML data into typed models (pydantic), with errors that name file, key path and value.

copier.yml includes the data files into its `catalog` variable; the same include list is read here, so the
wizard and Copier always see the same files. Each file is parsed on its own (so a YAML error names its file),
checked for Jinja syntax (Copier renders included files as templates), then the merged sections are validated
as one `Catalog`: each entry by its model (generator/catalog_models.py, generator/roadmap_models.py), then the
rules between sections below. `load_catalog` returns the models and the same data as plain dicts, which Copier's
Jinja and generator/formulas.py read.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import yaml
from annotated_types import MinLen
from pydantic import BaseModel, ValidationError, ValidationInfo, model_validator

from generator.catalog_fields import Entry, Text, describe, one_of, rule
from generator.catalog_models import (FEATURES, SWITCHES, Budget, DataSource, FeatureNote, Finetune, Layer,
                                      LayerDefaults, Licence, Preset, Shape, Track)
from generator.errors import UserError
from generator.roadmap_models import Check, Step

_INCLUDE = re.compile(r"include\s+'([^']+)'")
_JINJA = re.compile(r"\{\{|\{%|\{#")


def _section(model: Any) -> Any:
    return Annotated[dict[Text, model], MinLen(1)]


class Catalog(Entry):
    """Every section of tracks/, validated together: the rules below span sections."""

    tracks: _section(Track)
    budgets: _section(Budget)
    presets: _section(Preset)
    finetune: Finetune
    feature_notes: Annotated[dict[one_of(*FEATURES), FeatureNote], MinLen(1)]
    data_sources: _section(DataSource)
    licenses: _section(Licence)
    layers: _section(Layer)
    layer_defaults: LayerDefaults
    steps: _section(Step)
    checks: _section(Check)

    @model_validator(mode="after")
    def _budgets_are_complete(self) -> Catalog:
        for budget, b in self.budgets.items():
            if budget not in self.presets:
                raise rule(f"no preset for budget {budget!r}", "presets")
            if b.default_data_source is not None and b.default_data_source not in self.data_sources:
                raise rule(f"{b.default_data_source!r} is not a data source in choices.yml",
                           f"budgets.{budget}.default_data_source")
        if "tiny" not in self.presets or self.presets["tiny"].max_steps is None:
            raise rule("the tiny preset with max_steps is required", "presets.tiny")
        return self

    @model_validator(mode="after")
    def _heads_divide_by_kv_ratio(self) -> Catalog:
        ratios = {t.kv_head_ratio for t in self.tracks.values() if t.kv_head_ratio is not None}
        for name, preset in self.presets.items():
            shapes: list[tuple[str, Shape]] = [("", preset), *((f"[{i}]", s) for i, s in enumerate(preset.sizes or []))]
            for index, shape in shapes:
                bad = [r for r in sorted(ratios) if shape.n_head % r]
                if bad:
                    raise rule(f"n_head {shape.n_head} is not divisible by kv_head_ratio {bad[0]}",
                               f"presets.{name}" + (f".sizes{index}" if index else ""))
        return self

    @model_validator(mode="after")
    def _layers_are_known(self) -> Catalog:
        known = f"known: {', '.join(self.layers)}"
        for name, layer in self.layers.items():
            for need in layer.needs:
                if need not in self.layers:
                    raise rule(f"{need!r} is not a layer ({known})", f"layers.{name}.needs")
        for name in self.layers:
            cycle = _cycle(name, {n: layer.needs for n, layer in self.layers.items()})
            if cycle:
                raise rule(f"the layers need each other in a cycle: {' -> '.join(cycle)}", f"layers.{name}.needs")
        for kind, ids in (("tracks", self.tracks), ("budgets", self.budgets)):
            defaults = getattr(self.layer_defaults, kind)
            if set(defaults) != set(ids):
                raise rule(f"expected one list of layers for each of {', '.join(ids)}", f"layer_defaults.{kind}")
            for key, names in defaults.items():
                unknown = [n for n in names if n not in self.layers]
                if unknown:
                    raise rule(f"{unknown[0]!r} is not a layer ({known})", f"layer_defaults.{kind}.{key}")
        for name, source in self.data_sources.items():
            if source.layer is not None and source.layer not in self.layers:
                raise rule(f"{source.layer!r} is not a layer ({known})", f"data_sources.{name}.layer")
        return self

    @model_validator(mode="after")
    def _steps_are_ordered(self, info: ValidationInfo) -> Catalog:
        """Edges point to earlier steps (so the file order is a topological order), ids exist, commands run."""
        tracks, budgets = set(self.tracks), set(self.budgets)
        runners = (*(info.context or {}).get("cli_commands", ()), "pytest")
        seen: set[str] = set()
        for sid, step in self.steps.items():
            where = f"steps.{sid}"
            for dep in step.depends_on:
                if dep not in seen:
                    raise rule(f"{dep!r} is not a step listed above {sid!r}", f"{where}.depends_on")
            for field, known in (("tracks", tracks), ("budgets", budgets), ("optional_tracks", tracks),
                                 ("optional_budgets", budgets), ("layers", set(self.layers))):
                unknown = sorted(set(getattr(step, field) or []) - known)
                if unknown:
                    raise rule(f"unknown id {unknown[0]!r} (known: {', '.join(sorted(known))})", f"{where}.{field}")
            if set(step.explanation) != tracks:
                raise rule(f"expected one text for each of {', '.join(sorted(tracks))}", f"{where}.explanation")
            unknown_command = [c for c in step.commands or [] if c.split()[0] not in runners]
            if unknown_command:
                raise rule(f"expected commands starting with one of {', '.join(runners)}; got {unknown_command[0]!r}",
                           f"{where}.commands")
            if step.experiment is not None and isinstance(step.experiment.expected, dict):
                _per_track(step.experiment.expected, tracks, f"{where}.experiment.expected")
            seen.add(sid)
        return self

    @model_validator(mode="after")
    def _checks_point_to_the_catalog(self) -> Catalog:
        tracks = set(self.tracks)
        for name, c in self.checks.items():
            where = f"checks.{name}"
            if c.step not in self.steps:
                raise rule(f"unknown roadmap step {c.step!r}", f"{where}.step")
            if c.layer is not None and c.layer not in self.layers:
                raise rule(f"not a layer of tracks/layers.yml (known: {', '.join(self.layers)})", f"{where}.layer")
            if c.feature is not None and c.feature not in SWITCHES:
                raise rule(f"not a true/false track feature (known: {', '.join(SWITCHES)})", f"{where}.feature")
            for fname, f in c.figures.items():
                for key in ("expected", "at_most", "at_least"):
                    value = getattr(f, key)
                    if isinstance(value, dict):
                        _per_track(value, tracks, f"{where}.figures.{fname}.{key}")
            for key, v in (c.setup or {}).items():
                if isinstance(v, str) and v.startswith("from_catalog "):
                    missing = _unresolved(self, v.removeprefix("from_catalog ").split("."))
                    if missing:
                        raise rule(f"{v!r} does not resolve (no {missing!r})", f"{where}.setup.{key}")
        return self


def _per_track(value: dict[str, Any], tracks: set[str], path: str) -> None:
    if set(value) != tracks:
        raise rule(f"a per-track value needs each of {', '.join(sorted(tracks))}", path)


def _cycle(start: str, needs: dict[str, list[str]]) -> list[str]:
    """The layers from `start` back to itself through `needs`, or [] when `start` is on no cycle."""
    paths, done = [[start]], set()
    while paths:
        path = paths.pop()
        for need in needs.get(path[-1], []):
            if need == start:
                return [*path, start]
            if need not in done:
                done.add(need)
                paths.append([*path, need])
    return []


def _unresolved(node: Any, parts: list[str]) -> str | None:
    """The first key of `parts` not found walking down from `node` (keys given in tracks/ only), else None."""
    for part in parts:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, BaseModel) and (part in node.model_fields_set or part in (node.model_extra or {})):
            node = getattr(node, part)
        else:
            return part
    return None


def catalog_files(include_expression: str) -> list[str]:
    """The data files named by copier.yml's `catalog` default (its `{% include '...' %}` list)."""
    return _INCLUDE.findall(include_expression)


def _read(root: Path, rel: str) -> dict[str, Any]:
    """One data file's sections, refusing what Copier could not include."""
    try:
        text = (root / rel).read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{rel}: cannot be read ({exc.strerror})") from None
    for lineno, line in enumerate(text.splitlines(), 1):
        if _JINJA.search(line):
            raise UserError(f"{rel}: line {lineno}: Jinja syntax is not allowed in data files")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "file"
        raise UserError(f"{rel}: {where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise UserError(f"{rel}: expected a mapping at the top level")
    return data


def load_catalog(root: Path, include_expression: str,
                 cli_commands: tuple[str, ...]) -> tuple[Catalog, dict[str, Any]]:
    """Parse, merge and validate the data files that copier.yml includes: the typed Catalog, and the same data as
    plain dicts (exactly what Copier includes). `cli_commands` are the generated CLI's subcommands, which the
    roadmap's commands must name."""
    data: dict[str, Any] = {}
    files: dict[str, str] = {}
    for rel in catalog_files(include_expression):
        for section, entries in _read(root, rel).items():
            if section not in Catalog.model_fields:
                raise UserError(f"{rel}: {section}: unknown section (known: {', '.join(Catalog.model_fields)})")
            if section in data:
                raise UserError(f"{rel}: {section}: section is defined in {files[section]} too")
            data[section], files[section] = entries, rel
    return validate_catalog(data, files, cli_commands), data


def validate_catalog(data: dict[str, Any], files: dict[str, str], cli_commands: tuple[str, ...]) -> Catalog:
    """The merged sections as a Catalog, or a one-line UserError naming the file (files: section -> file)."""
    try:
        return Catalog.model_validate(data, context={"cli_commands": cli_commands})
    except ValidationError as exc:
        raise UserError(describe(exc, files)) from None
