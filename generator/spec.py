"""The template's questions, read from copier.yml and evaluated the way Copier evaluates them.

copier.yml is the one place that says what is asked, what the choices are (rendered from tracks/), what the
defaults are and what is valid; `derive` in generator/formulas.py is the one place that says what follows from the
answers. The wizard, the CLI flags, the plan and the tests all go through this module, so none of them keeps a
second copy of a table or a rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from jinja2 import FileSystemLoader
from jinja2.sandbox import SandboxedEnvironment

from generator.catalog import Catalog, load_catalog
from generator.errors import UserError

TEMPLATE_PACKAGE_DIR = "{{ derived.package_name }}"  # the generated package's folder in template/
# A subcommand of the generated CLI: argparse's `add_parser("NAME"` in cli.py, or a module's `@command("NAME"`.
_SUBCOMMAND = re.compile(r"""(?:\.add_parser|@command)\(\s*["']([\w-]+)["']""")


def cli_commands(root: Path) -> tuple[str, ...]:
    """The generated CLI's subcommands, each once, in file-name order of the template package's modules."""
    found: dict[str, None] = {}
    for path in sorted((root / "template" / TEMPLATE_PACKAGE_DIR).glob("*.py*")):
        found.update(dict.fromkeys(_SUBCOMMAND.findall(path.read_text(encoding="utf-8"))))
    if not found:
        raise UserError(f"{root}: no module of template/{TEMPLATE_PACKAGE_DIR} registers a command "
                        "(add_parser(\"NAME\" or @command(\"NAME\")")
    return tuple(found)

# Copier renders every template with these filters (regex_search, to_nice_yaml, from_yaml, ...), then the
# template's own `_jinja_extensions` (generator/formulas.py and generator/roadmap_text.py, loaded from the template
# root by their paths).
_COPIER_EXTENSIONS = ["jinja2_ansible_filters.AnsibleCoreFiltersExtension"]
_FALSE_STRINGS = {"", "false", "no", "none", "null", "0", "off"}


@dataclass(frozen=True)
class Question:
    """One user-facing question of copier.yml."""

    name: str
    type: str
    help: str
    raw: dict[str, Any]

    @property
    def flag(self) -> str:
        """The CLI flag for this question (`project_name` is asked as `--name`)."""
        return "--name" if self.name == "project_name" else "--" + self.name.replace("_", "-")


class TemplateSpec:
    """Questions, choices, defaults, validators and derived values of the template rooted at `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        config_file = root / "copier.yml"
        if not config_file.is_file():
            raise UserError(f"{root} is not an llm-blueprint template: copier.yml is missing")
        self.config: dict[str, Any] = yaml.safe_load(config_file.read_text(encoding="utf-8"))
        try:
            self._env = SandboxedEnvironment(
                loader=FileSystemLoader(str(root)),
                extensions=_COPIER_EXTENSIONS + list(self.config.get("_jinja_extensions", [])),
                keep_trailing_newline=True,
            )
        except Exception as exc:  # a missing module or file of a template's own extension
            raise UserError(f"{root}: cannot load the template's Jinja extensions: {exc}") from None

    @cached_property
    def _loaded(self) -> tuple[Catalog, dict[str, Any]]:
        return load_catalog(self.root, self.config["catalog"]["default"], cli_commands(self.root))

    @property
    def models(self) -> Catalog:
        """The tracks/ data as typed models (generator/catalog.py), loaded from exactly the files copier.yml
        includes, and validated."""
        return self._loaded[0]

    @property
    def catalog(self) -> dict[str, Any]:
        """The same data as plain dicts: what copier.yml's Jinja and generator/formulas.py read."""
        return self._loaded[1]

    @cached_property
    def questions(self) -> list[Question]:
        """User-facing questions in copier.yml order (computed values and settings excluded)."""
        found = []
        for name, raw in self.config.items():
            if name.startswith("_") or not isinstance(raw, dict) or raw.get("when") is False:
                continue
            found.append(Question(name, raw.get("type", "str"), raw.get("help", name), raw))
        return found

    def question(self, name: str) -> Question:
        for q in self.questions:
            if q.name == name:
                return q
        raise KeyError(name)

    # -- evaluation -------------------------------------------------------------------------------------

    def render(self, text: str, context: dict[str, Any]) -> str:
        return self._env.from_string(text).render({"catalog": self.catalog, **context})

    def _value(self, value: Any, context: dict[str, Any]) -> Any:
        return self.render(value, context) if isinstance(value, str) else value

    def is_asked(self, q: Question, context: dict[str, Any]) -> bool:
        when = self._value(q.raw.get("when", True), context)
        return when if isinstance(when, bool) else str(when).strip().lower() not in _FALSE_STRINGS

    def choices(self, q: Question, context: dict[str, Any]) -> list[tuple[str, Any]]:
        """(title, value) pairs, rendered from the catalog exactly as Copier renders them."""
        raw = q.raw.get("choices")
        if not raw:
            return []
        parsed = yaml.safe_load(self._value(raw, context)) if isinstance(raw, str) else raw
        items = parsed.items() if isinstance(parsed, dict) else ((str(v), v) for v in parsed)
        return [(str(title), value) for title, value in items]

    def default(self, q: Question, context: dict[str, Any]) -> Any:
        return self.cast(q, self._value(q.raw.get("default", ""), context))

    def cast(self, q: Question, value: Any) -> Any:
        """Convert a flag's or prompt's text to the question's type; a one-line UserError if it can't be."""
        try:
            if q.type == "int":
                return int(str(value).strip())
            if q.type == "float":
                return float(str(value).strip())
            if q.type == "bool":
                return str(value).strip().lower() not in _FALSE_STRINGS
            if q.type == "yaml":  # a list answer: YAML as Copier stores it, or names separated by commas (a flag)
                parsed = yaml.safe_load(value) if isinstance(value, str) else value
                if isinstance(parsed, str):
                    parsed = [name.strip() for name in parsed.split(",") if name.strip()]
                return [] if parsed is None else parsed
        except yaml.YAMLError:
            raise UserError(f"{q.flag} expects names separated by commas, got {value!r}") from None
        except ValueError:
            raise UserError(f"{q.flag} expects a{'n integer' if q.type == 'int' else ' number'}, got {value!r}") from None
        return "" if value is None else str(value)

    def error(self, q: Question, value: Any, context: dict[str, Any]) -> str | None:
        """Why `value` is not a valid answer to `q`, or None. Uses copier.yml's choices and validator."""
        options = self.choices(q, context)
        if options and value not in [v for _, v in options]:
            known = ", ".join(str(v) for _, v in options)
            return f"unknown {q.flag[2:]} {value!r}; choose one of: {known}"
        validator = q.raw.get("validator")
        if validator:
            message = self.render(validator, {**context, q.name: value}).strip()
            return message or None
        return None

    def derive(self, answers: dict[str, Any]) -> dict[str, Any]:
        """Everything the template computes from the answers (generator/formulas.py derive)."""
        return yaml.safe_load(self.render(self.config["derived"]["default"], answers))

