"""Collect the answers to the template's questions: from flags, from a questionary wizard, or from defaults.

The questions, their choices, defaults and validators all come from copier.yml through TemplateSpec, so the
wizard asks exactly what plain `copier copy` would ask. With no terminal (or CI set) nothing is ever prompted:
a question without a flag takes its default under --yes, and is otherwise a one-line error naming the flag.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any

import questionary

from generator.errors import UserError
from generator.spec import Question, TemplateSpec


def is_interactive() -> bool:
    """Prompt only for a person at a terminal; CI and pipes get flags and defaults."""
    return sys.stdin.isatty() and sys.stdout.isatty() and not os.environ.get("CI")


def _referenced(q: Question, answers: dict[str, Any]) -> str:
    """The earlier answers a question's `when` condition depends on, as flags (for error messages)."""
    when = str(q.raw.get("when", ""))
    return ", ".join(f"--{name.replace('_', '-')} {answers[name]}" for name in answers if re.search(rf"\b{name}\b", when))


def _ask_layers(spec: TemplateSpec, q: Question, context: dict[str, Any], default: list[str]) -> list[str]:
    """The layers as a checkbox (space toggles, enter accepts), the track's, budget's and data source's ticked."""
    choices = [questionary.Choice(f"{name}: {layer['title']} ({layer['adds']})", value=name, checked=name in default)
               for name, layer in spec.catalog["layers"].items()]

    def validate(picked: list[str]) -> bool | str:
        return spec.error(q, picked, context) or True

    return questionary.checkbox(q.help, choices=choices, validate=validate).unsafe_ask()


def _ask(spec: TemplateSpec, q: Question, context: dict[str, Any]) -> Any:
    default = spec.default(q, context)
    if q.name == "layers":  # the one list answer: chosen from the layer registry
        return _ask_layers(spec, q, context, default)
    options = spec.choices(q, context)
    if options:
        choices = [questionary.Choice(title, value=value) for title, value in options]
        selected = next((c for c in choices if c.value == default), choices[0])
        return questionary.select(q.help, choices=choices, default=selected).unsafe_ask()

    def validate(text: str) -> bool | str:
        try:
            return spec.error(q, spec.cast(q, text), context) or True
        except UserError as exc:
            return str(exc)

    shown = f"{default:g}" if isinstance(default, float) else str(default)
    text = questionary.text(q.help, default=shown, validate=validate).unsafe_ask()
    return spec.cast(q, text)


def collect_answers(
    spec: TemplateSpec,
    given: dict[str, Any],
    *,
    interactive: bool,
    assume_defaults: bool,
    folder_name: str,
) -> dict[str, Any]:
    """Answer every question that applies, in copier.yml order. `given` maps question names to flag values."""
    answers: dict[str, Any] = {}
    for q in spec.questions:
        context = {**answers, "_folder_name": folder_name}
        if not spec.is_asked(q, context):
            if q.name in given:
                raise UserError(f"{q.flag} does not apply with {_referenced(q, answers)}")
            continue
        if q.name in given:
            value = spec.cast(q, given[q.name])
        elif interactive:
            value = _ask(spec, q, context)
        elif assume_defaults:
            value = spec.default(q, context)
        else:
            raise UserError(f"missing {q.flag} (no terminal to ask on: pass it, or --yes to take the defaults)")
        error = spec.error(q, value, context)
        if error:
            raise UserError(f"{error} ({q.flag})")
        answers[q.name] = value
    return answers


def confirm(message: str) -> bool:
    return bool(questionary.confirm(message, default=True).unsafe_ask())
