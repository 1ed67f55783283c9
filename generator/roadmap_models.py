"""Models of tracks/roadmap.yml (`steps`) and tracks/checks.yml (`checks`, the generated `check` command).

Each model checks one step or check; the rules that reach other sections (a step's edges and ids, a check's step,
feature and layer, `from_catalog` paths) are the Catalog's, in generator/catalog.py.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Union

from annotated_types import MinLen
from pydantic import AfterValidator, model_validator

from generator.catalog_fields import (Entry, Flag, Names, Number, Text, TextList, expect, integer, number, optional,
                                      pattern, rule)

SNIPPET_ROOT = "PACKAGE/"  # a snippet's or look_at's file, in the generated package
TOOL_KINDS = ("official", "open source", "paper")
BASES = ("formula", "measured", "reference", "estimate")
PerTrack = Annotated[Union[Number, dict[Text, Number]], expect("a number, or a mapping of track ids to numbers")]
Tolerance = number(0)


class Tool(Entry):
    kind: Annotated[Literal[TOOL_KINDS], expect("one of " + ", ".join(TOOL_KINDS))]
    title: Text
    url: pattern(r"https://", "an https:// address")


class SecurityNote(Entry):
    topic: Text
    note: Text
    check: Annotated[pattern(r"tests/\w+\.py::\w+$", "a test node id tests/<file>.py::<test>") | None,
                     expect("a test node id tests/<file>.py::<test>, or null")]


class Snippet(Entry):
    file: pattern(re.escape(SNIPPET_ROOT) + r".+\.py$", f"{SNIPPET_ROOT}<module>.py")
    start: Text
    end: optional(Text) = None


def _one_group(regex: str) -> str:
    try:
        groups = re.compile(regex).groups
    except re.error as exc:
        raise ValueError(f"not a regular expression ({exc})") from None
    if groups != 1:
        raise ValueError("a regular expression with exactly one group")
    return regex


class Experiment(Entry):
    """The micro-experiment of a step: run `command`, read group 1 of `pattern`, compare with the expectation."""

    command: Text
    observe: Text
    pattern: Annotated[str, AfterValidator(_one_group), expect("a regular expression with exactly one group")]
    expected: optional(Annotated[Union[Number, Text, dict[Text, Number]],
                                 expect("a number, a text, or a mapping of track ids to numbers")]) = None
    expected_from: optional(pattern(r"\w+\.\w+$", "section.key of the derived values")) = None
    tolerance: Tolerance
    relative: Flag = False

    @model_validator(mode="after")
    def _one_expectation(self) -> Experiment:
        if (self.expected is None) == (self.expected_from is None):
            raise rule("give exactly one of expected and expected_from")
        return self


class Estimate(Entry, extra="allow"):
    """Inputs of a step's figures (each a positive number, any name), and where they come from."""

    __pydantic_extra__: dict[str, number(0, lo_open=True)]
    source: Text


class Step(Entry):
    title: Text
    summary: Text
    depends_on: Names
    prerequisites: Names
    explanation: Annotated[dict[Text, Text], MinLen(1)]
    tools: Annotated[list[Tool], MinLen(1)]
    security: list[SecurityNote]
    snippet: Snippet
    # Without tracks or budgets a step applies to all of them.
    tracks: optional(TextList) = None
    budgets: optional(TextList) = None
    optional_tracks: optional(TextList) = None
    optional_budgets: optional(TextList) = None
    commands: optional(TextList) = None
    experiment: optional(Experiment) = None
    estimate: optional(Estimate) = None
    layers: optional(Names) = None  # the layers (tracks/layers.yml) the step's code is in

    @model_validator(mode="after")
    def _experiment_runs_a_command(self) -> Step:
        if (self.commands is None) != (self.experiment is None):
            raise rule("a step with commands needs a micro-experiment, and an experiment needs commands")
        if self.experiment is not None and self.experiment.command not in (self.commands or []):
            raise rule("must be one of the step's commands", "experiment.command")
        return self


class Figure(Entry):
    """One figure of a check, with one way to judge it (or `shown: true`: an estimate printed, never judged)."""

    label: Text
    basis: Annotated[Literal[BASES], expect("one of " + ", ".join(BASES))]
    reason: Text
    expected: optional(PerTrack) = None
    formula: optional(Text) = None
    at_most: optional(PerTrack) = None
    at_least: optional(PerTrack) = None
    shown: optional(Annotated[Literal[True], expect("true")]) = None
    tolerance: optional(Tolerance) = None
    relative: Flag = False

    @model_validator(mode="after")
    def _one_way(self) -> Figure:
        ways = [k for k in ("expected", "at_most", "at_least", "shown") if getattr(self, k) is not None]
        if self.formula is not None and self.shown is None:
            ways.append("formula")
        if len(ways) != 1:
            raise rule(f"expected exactly one of expected, formula, at_most, at_least and shown: true, "
                       f"got {', '.join(ways) or 'none'}")
        if (self.tolerance is not None) != (ways[0] in ("expected", "formula")):
            raise rule("a tolerance goes with expected or formula, and only with them")
        if (self.basis == "estimate") != (self.shown is not None):
            raise rule("shown: true is for basis: estimate, and an estimate is shown")
        return self


SetupValue = Annotated[Union[None, Number, str, list[Number]],
                       expect("a number, a text, a list of numbers, null, or 'from_derived NAME' / "
                              "'from_catalog SECTION.ID.KEY'")]
Word = pattern(r"\w+$", "a name of letters, digits and _")


class Check(Entry):
    step: Text
    title: Text
    observe: Text
    fast: Flag
    seconds: integer(1)
    look_at: pattern(rf".*{re.escape(SNIPPET_ROOT)}", f"{SNIPPET_ROOT}<file> and the function(s) to look at")
    figures: Annotated[dict[Word, Figure], MinLen(1)]
    setup: optional(dict[Word, SetupValue]) = None
    feature: optional(Text) = None  # the check appears only on tracks where this feature is true
    layer: optional(Text) = None  # the check belongs to this layer and appears only with it
