"""The words of the roadmap and of checks.yml: small functions the template (as Jinja globals), ROADMAP.md, the
generator's `roadmap` command and its PDF share, so each sentence and each value format is written once.

Like generator/formulas.py, this module imports nothing from the generator package: copier.yml loads it on its
own by its path (`generator/roadmap_text.py:RoadmapText`). Functions returning a block of Markdown start it with
its own blank line and return "" when the block is absent, so the template stays a plain file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from jinja2.ext import Extension
from jinja2.utils import htmlsafe_json_dumps

Step = Mapping[str, Any]  # a step of tracks/roadmap.yml
Estimate = Mapping[str, Any]  # formulas.estimate's result: steps (in roadmap order), critical_path, ...


def per_track(value: Any, track: str) -> Any:
    """A value that may differ per track ({beginner: 5.42, practitioner: 5.0, ...}) for this track."""
    return value[track] if isinstance(value, Mapping) else value


# -- checks.yml ---------------------------------------------------------------------------------------------------

def _json(value: Any) -> str:
    """JSON the way Jinja's `tojson` writes it (sorted keys, HTML-safe), which YAML reads back unchanged."""
    return str(htmlsafe_json_dumps(value, dumps=json.dumps, sort_keys=True))


def check_value(value: Any, track: str, catalog: Mapping[str, Any], derived: Mapping[str, Any]) -> str:
    """A setup or figure value of tracks/checks.yml as YAML text: `from_derived KEY` and `from_catalog A.B.C`
    are looked up, a per-track mapping resolved for this track."""
    if isinstance(value, str) and value.startswith("from_derived "):
        return _json(derived[value.removeprefix("from_derived ")])
    if isinstance(value, str) and value.startswith("from_catalog "):
        found: Any = catalog
        for key in value.removeprefix("from_catalog ").split("."):
            found = found[key]
        return _json(found)
    if isinstance(value, Mapping) and track in value:
        value = value[track]
    if isinstance(value, float) and "." not in str(value):
        return str(value).replace("e", ".0e")  # YAML reads 1e-06 as a string: a float needs a dot before its exponent
    return _json(value)


def setup_text(setup: Mapping[str, Any], track: str, catalog: Mapping[str, Any], derived: Mapping[str, Any]) -> str:
    """A check's setup as a YAML flow mapping: '{steps: 20, lr: 0.001}'."""
    return "{" + ", ".join(f"{key}: {check_value(v, track, catalog, derived)}" for key, v in setup.items()) + "}"


def figure_text(figure: Mapping[str, Any], track: str) -> str:
    """A figure's expectation in words, for check.py's output, ROADMAP.md and the PDF: 'at most 0.5', '3.4 ± 0.3'."""
    tolerance = figure.get("tolerance", 0)
    within = "" if tolerance == 0 else (
        f" within {tolerance * 100:g}%" if figure.get("relative", False) else f" ± {tolerance:g}")
    if figure.get("shown", False):
        return f"compared with the estimate {figure['formula']}"
    if "at_most" in figure:
        return f"at most {per_track(figure['at_most'], track):g}"
    if "at_least" in figure:
        return f"at least {per_track(figure['at_least'], track):g}"
    if "formula" in figure:
        return figure["formula"] + within
    return f"{per_track(figure['expected'], track):g}" + (within or " exactly")


def figures_text(figures: Mapping[str, Mapping[str, Any]]) -> str:
    """The figures of one rendered check (with their `text`) in one line: 'loss: at most 5; steps: 20 exactly'."""
    return "; ".join(f"{f['label']}: {f['text']}" for f in figures.values())


# -- the roadmap --------------------------------------------------------------------------------------------------

def project_command(command: str, derived: Mapping[str, Any]) -> str:
    """A roadmap command as the user types it: the project's own command in front, pytest as it is."""
    return command if command.split()[0] == "pytest" else f"{derived['command']} {command}"


def experiment_expected(experiment: Mapping[str, Any], track: str, derived: Mapping[str, Any]) -> Any:
    """The micro-experiment's expected value for this track (`expected_from: section.key` reads the derived values)."""
    if "expected_from" in experiment:
        section, key = experiment["expected_from"].split(".")
        return derived[section][key]
    return per_track(experiment["expected"], track)


def expected_text(expected: Any, experiment: Mapping[str, Any]) -> str:
    """'38 (exactly)', '2,358,208 within 2%', '5.0 within 0.3', 'passed'."""
    if isinstance(expected, str):
        return expected
    shown = f"{expected:,}" if isinstance(expected, int) else str(expected)
    if experiment["tolerance"] == 0:
        return f"{shown} (exactly)"
    if experiment.get("relative", False):
        return f"{shown} within {experiment['tolerance'] * 100:g}%"
    return f"{shown} within {experiment['tolerance']:g}"


def mermaid_graph(steps: Mapping[str, Step], est: Estimate) -> str:
    """The step graph in Mermaid: numbered boxes with their time, arrows from each dependency, thick boxes on the
    critical path, dashed ones optional."""
    lines = ["graph TD"]
    for number, (sid, entry) in enumerate(est["steps"].items(), 1):
        time = f"<br/>{entry['rows'][0][1]}" if entry["hours"] is not None else ""
        lines.append(f'  {sid}["{number}. {steps[sid]["title"]}{time}"]')
    for sid in est["steps"]:
        lines += [f"  {dep} --> {sid}" for dep in steps[sid]["depends_on"] if dep in est["steps"]]
    lines += ["  classDef critical stroke-width:4px", "  classDef optional stroke-dasharray:6 4",
              f"  class {','.join(est['critical_path'])} critical"]
    optional = [sid for sid, entry in est["steps"].items() if entry["optional"]]
    if optional:
        lines.append(f"  class {','.join(optional)} optional")
    return "\n".join(lines)


def checklist(steps: Mapping[str, Step], est: Estimate) -> str:
    """One box per step, linked to its section (GitHub's heading anchors: lower case, spaces as hyphens)."""
    lines = []
    for number, (sid, entry) in enumerate(est["steps"].items(), 1):
        title = steps[sid]["title"]
        anchor = f"{number}-{title.lower().replace(' ', '-')}"
        lines.append(f"- [ ] [{number}. {title}](#{anchor}){' (optional)' if entry['optional'] else ''}")
    return "\n".join(lines)


def after_text(step: Step, steps: Mapping[str, Step], est: Estimate) -> str:
    """' After: Tokenizer, Data loader.' for the step's dependencies in this roadmap, or ''."""
    after = [steps[dep]["title"] for dep in step["depends_on"] if dep in est["steps"]]
    return f" After: {', '.join(after)}." if after else ""


def step_layers(step: Step, registry: Mapping[str, Any], derived: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    """Per layer the step's commands or code are in: 'serve (Server)', and the command that adds it where this
    repository lacks it (None where it has it)."""
    return [(f"{name} ({registry[name]['title']})", None if derived["layers"][name] else f"llm-blueprint add {name}")
            for name in step.get("layers", [])]


def layers_text(step: Step, registry: Mapping[str, Any], derived: Mapping[str, Any]) -> str:
    """'**Layers:** serve (Server), not in this repository yet: `llm-blueprint add serve`.' or ''."""
    named = [name + (f", not in this repository yet: `{add}`" if add else ", in this repository")
             for name, add in step_layers(step, registry, derived)]
    return f"\n\n**Layers:** {'; '.join(named)}." if named else ""


def run_text(step: Step, track: str, derived: Mapping[str, Any]) -> str:
    """The step's commands as boxes and its micro-experiment with the expected result."""
    if not step.get("commands"):
        return "\n\n*No command yet: the template has no code for this step.*"
    boxes = "".join(f"\n- [ ] `{project_command(c, derived)}`" for c in step["commands"])
    e = step["experiment"]
    expected = expected_text(experiment_expected(e, track, derived), e)
    return (f"\n\n**Run it:**\n{boxes}\n\n**Micro-experiment:** `{project_command(e['command'], derived)}`: "
            f"{e['observe']}.\nExpected: {expected}.")


def checks_text(step: Step, checks: Mapping[str, Mapping[str, Any]], derived: Mapping[str, Any]) -> str:
    """The rendered checks (checks.yml) of this step, one box each, or ''."""
    mine = [(name, c) for name, c in checks.items() if c["step"] == step["title"]]
    if not mine:
        return ""
    command = derived["command"]
    boxes = "".join(
        f"\n- [ ] `{command} check run {name}` ({'fast' if c['fast'] else 'slow'}, about {c['seconds']} s): "
        f"{c['observe']}. Expected: {figures_text(c['figures'])}." for name, c in mine)
    return f"\n\n**Check it** (`{command} check all` runs every check and ends with a table):{boxes}"


def estimate_rows(rows: list[tuple[str, str]]) -> str:
    """The step's estimate rows of a Markdown table, each on its own line after the header."""
    return "".join(f"\n| {label} | {value} |" for label, value in rows)


def tool_list(tools: list[Mapping[str, str]]) -> str:
    return "".join(f"\n- {t['kind']}: [{t['title']}]({t['url']})" for t in tools)


def security_text(notes: list[Mapping[str, str]]) -> str:
    """Security and compliance notes, each naming the test that enforces it, or ''."""
    if not notes:
        return ""
    items = "".join(
        f"\n- *{n['topic']}*: {n['note']} " + (f"Checked by `{n['check']}`." if n.get("check") else "No automated check yet.")
        for n in notes)
    return f"\n\n**Security and compliance:**{items}"


# What the template calls, each under its own name.
JINJA_GLOBALS = (check_value, setup_text, figure_text, mermaid_graph, checklist, after_text, layers_text, run_text,
                 checks_text, estimate_rows, tool_list, security_text)


class RoadmapText(Extension):
    """Makes JINJA_GLOBALS Jinja globals for template/ROADMAP.md.jinja and template/checks.yml.jinja."""

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        environment.globals.update({function.__name__: function for function in JINJA_GLOBALS})
