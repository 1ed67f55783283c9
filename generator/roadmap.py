"""The roadmap for one set of answers: steps, estimates, code snippets cut from the real template, attachments.

`build` gathers everything the PDF (generator/roadmap_pdf.py) needs; `markdown` renders the ROADMAP.md a generated
project holds (template/ROADMAP.md.jinja, rendered the way Copier renders it).
Snippets come from the template files rendered for the same answers, so the code in the PDF is the code the
user's repository contains; a snippet that no longer resolves is an error, not a silent gap.
"""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass, field
from typing import Any

import nbformat
import yaml

from generator.errors import UserError
from generator.estimate import estimate
from generator.catalog import Catalog
from generator.formulas import with_needs
from generator.roadmap_models import SNIPPET_ROOT, Step as StepEntry
from generator.roadmap_text import experiment_expected, project_command, step_layers
from generator.spec import TEMPLATE_PACKAGE_DIR, TemplateSpec


@dataclass
class Snippet:
    path: str  # in the generated project, e.g. demo/train.py
    first_line: int  # 1-based, in the rendered file
    code: str  # dedented, so every snippet is valid Python on its own


@dataclass
class Step:
    id: str
    number: int
    data: StepEntry  # the step in tracks/roadmap.yml
    estimate: dict[str, Any]  # its entry in the estimate: optional, hours, cost_usd, rows
    snippet: Snippet
    commands: list[str] = field(default_factory=list)  # with the project's command in front
    experiment: dict[str, Any] | None = None  # the micro-experiment with `expected` resolved for this track
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)  # `check` entries of this step (checks.yml)
    layers: list[tuple[str, str | None]] = field(default_factory=list)  # roadmap_text.step_layers
    critical: bool = False


@dataclass
class Roadmap:
    answers: dict[str, Any]
    derived: dict[str, Any]
    catalog: Catalog
    estimate: dict[str, Any]
    steps: list[Step]

    @property
    def title(self) -> str:
        track = self.catalog.tracks[self.answers["track"]].title
        budget = self.catalog.budgets[self.answers["budget"]].title
        return f"Roadmap for {self.answers['project_name']}: {track} track, {budget}"


def template_file(spec: TemplateSpec, rel: str, answers: dict[str, Any], derived: dict[str, Any]) -> str:
    """A template file as Copier writes it for these answers; `rel` is PACKAGE/<module>.py. Conditional file names
    (one model.py per architecture) are rendered like Copier renders them, to find the source of that file."""
    context = {**answers, "derived": derived}
    folder = spec.root / "template" / TEMPLATE_PACKAGE_DIR
    wanted = rel.replace(SNIPPET_ROOT, "", 1)
    for path in sorted(folder.iterdir()):
        jinja = path.name.endswith(".jinja")
        name = path.name.removesuffix(".jinja")
        if path.is_file() and (spec.render(name, context) if "{" in name else name) == wanted:
            text = path.read_text(encoding="utf-8")
            return spec.render(text, context) if jinja else text
    raise UserError(f"roadmap snippet: template file {rel} does not exist")


def cut_snippet(source: str, start: str, end: str | None = None) -> tuple[int, str]:
    """(first line, code) of the statement that begins on the first line containing `start`.

    The statement's extent comes from Python's own parser (decorators included), so multi-line signatures and
    nested blocks are cut correctly; `end` instead stops at the first later line containing it.
    """
    lines = source.splitlines()
    try:
        first = next(i for i, line in enumerate(lines, 1) if start in line)
    except StopIteration:
        raise UserError(f"roadmap snippet: no line contains {start!r}") from None
    if end is not None:
        try:
            last = next(i for i, line in enumerate(lines, 1) if i >= first and end in line)
        except StopIteration:
            raise UserError(f"roadmap snippet: no line after {start!r} contains {end!r}") from None
    else:
        nodes = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.stmt) and n.lineno == first]
        if not nodes:
            raise UserError(f"roadmap snippet: the line containing {start!r} does not begin a statement")
        node = max(nodes, key=lambda n: n.end_lineno or n.lineno)  # the outermost statement on that line
        decorators = getattr(node, "decorator_list", [])
        first = min([first] + [d.lineno for d in decorators])
        last = node.end_lineno or first
    return first, textwrap.dedent("\n".join(lines[first - 1:last])) + "\n"


def _experiment(step: dict[str, Any], track: str, derived: dict[str, Any]) -> dict[str, Any] | None:
    """The step's micro-experiment as roadmap_text reads it: a plain mapping of tracks/roadmap.yml (that module is
    also a Jinja extension, which Copier hands plain data)."""
    exp = step.get("experiment")
    if exp is None:
        return None
    return {**exp, "expected": experiment_expected(exp, track, derived),
            "command": project_command(exp["command"], derived)}


def rendered_checks(spec: TemplateSpec, answers: dict[str, Any], derived: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The checks.yml a project generated with these answers holds (its `check` command's expectations)."""
    text = (spec.root / "template" / "checks.yml.jinja").read_text(encoding="utf-8")
    return yaml.safe_load(spec.render(text, {**answers, "derived": derived}))


def _snippet(spec: TemplateSpec, answers: dict[str, Any], derived: dict[str, Any], data: StepEntry,
             cache: dict) -> Snippet:
    """The step's code as it is in the repository once the step's layers are in it (`llm-blueprint add` brings
    them), so a step whose layer is missing still shows the code that layer adds."""
    ref = data.snippet
    layers = tuple(with_needs(spec.catalog, [*derived["layer_list"], *(data.layers or [])]))
    if (ref.file, layers) not in cache:
        with_layers = {**answers, "layers": list(layers)}
        cache[ref.file, layers] = template_file(spec, ref.file, with_layers, spec.derive(with_layers))
    first, code = cut_snippet(cache[ref.file, layers], ref.start, ref.end)
    return Snippet(ref.file.replace(SNIPPET_ROOT, derived["package_name"] + "/", 1), first, code)


def build(spec: TemplateSpec, answers: dict[str, Any]) -> Roadmap:
    derived = spec.derive(answers)
    est = estimate(spec, answers, derived)
    catalog = spec.models
    rendered: dict[tuple[str, tuple[str, ...]], str] = {}
    checks = rendered_checks(spec, answers, derived)
    steps = []
    for number, (sid, entry) in enumerate(est["steps"].items(), 1):
        data = catalog.steps[sid]
        steps.append(Step(
            id=sid, number=number, data=data, estimate=entry, snippet=_snippet(spec, answers, derived, data, rendered),
            commands=[project_command(c, derived) for c in data.commands or []],
            experiment=_experiment(spec.catalog["steps"][sid], answers["track"], derived),
            critical=sid in est["critical_path"],
            checks={name: c for name, c in checks.items() if c["step"] == data.title},
            layers=step_layers(spec.catalog["steps"][sid], spec.catalog["layers"], derived),
        ))
    return Roadmap(answers, derived, catalog, est, steps)


# -- attachments ------------------------------------------------------------------------------------------------

def attachment_py(roadmap: Roadmap, step: Step) -> str:
    """The step's snippet as a .py file, with a header saying where it comes from and how to try it."""
    s = step.snippet
    last = s.first_line + s.code.count("\n") - 1
    header = [f"# Step {step.number}, {step.data.title}: {s.path}, lines {s.first_line}-{last}, as generated for "
              f"the {roadmap.answers['track']} track ({roadmap.answers['budget']} budget)."]
    header += [f"# First: {add} (the repository lacks {name})" for name, add in step.layers if add]
    header += [f"# Try: {c}" for c in step.commands] or ["# The template has no command for this step yet."]
    return "\n".join(header) + "\n\n" + s.code


def attachment_ipynb(roadmap: Roadmap, step: Step) -> str:
    """A notebook with the explanation, the snippet and the commands; fixed cell ids keep the bytes stable."""
    v4 = nbformat.v4
    track = roadmap.answers["track"]
    intro = f"# {step.number}. {step.data.title}\n\n{step.data.summary}\n\n{step.data.explanation[track]}"
    cells = [
        v4.new_markdown_cell(intro, id=f"{step.id}-intro"),
        v4.new_markdown_cell(f"From `{step.snippet.path}` (line {step.snippet.first_line}) of the generated project:",
                             id=f"{step.id}-source"),
        v4.new_code_cell(step.snippet.code.rstrip("\n"), id=f"{step.id}-code"),
    ]
    if step.commands:
        run = "\n".join(f"!{c}" for c in step.commands)
        cells.append(v4.new_markdown_cell("Run in the project folder:", id=f"{step.id}-run-intro"))
        cells.append(v4.new_code_cell(run, id=f"{step.id}-run"))
    nb = v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    })
    nbformat.validate(nb)
    return nbformat.writes(nb)


# -- writing ----------------------------------------------------------------------------------------------------

def markdown(spec: TemplateSpec, answers: dict[str, Any]) -> str:
    """The ROADMAP.md a project generated with these answers holds."""
    text = (spec.root / "template" / "ROADMAP.md.jinja").read_text(encoding="utf-8")
    return spec.render(text, {**answers, "derived": spec.derive(answers)})
