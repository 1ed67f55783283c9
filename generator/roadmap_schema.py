"""Schema of tracks/roadmap.yml's `steps` section, plugged into generator/catalog.py.

Field checks are callables with a docstring (the catalog's error messages quote it); `cross_check` enforces the
rules that span steps and sections: edges point to earlier steps (so the file order is a topological order),
track and budget ids exist, every track has an explanation, a step with commands has a micro-experiment, and
every command is a subcommand of the generated CLI (read from the template's cli.py) or pytest.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

from generator.errors import UserError

Check = Callable[[Any], bool]

TOOL_KINDS = ("official", "open source", "paper")
SNIPPET_ROOT = "PACKAGE/"
PACKAGE_DIR = "{{ derived.package_name }}"  # the package folder's name in template/
_SUBCOMMAND = re.compile(r"""@command\(\s*["']([\w-]+)["']""")


def cli_commands(root: Path) -> tuple[str, ...]:
    """The generated CLI's subcommands: each `@command("name", ...)` in the template's package (every module
    registers its own commands with cli.py's table), sorted."""
    package = root / "template" / PACKAGE_DIR
    found = {name for path in sorted(package.iterdir()) if path.is_file()
             for name in _SUBCOMMAND.findall(path.read_text(encoding="utf-8"))}
    if not found:
        raise UserError(f"{root}: the template's {PACKAGE_DIR}/ registers no command")
    return tuple(sorted(found))


def _doc(text: str) -> Callable[[Check], Check]:
    def wrap(check: Check) -> Check:
        check.__doc__ = text
        return check

    return wrap


def _text(v: Any) -> bool:
    return isinstance(v, str) and bool(v.strip())


@_doc("a list of strings (may be empty)")
def str_list(v: Any) -> bool:
    return isinstance(v, list) and all(_text(x) for x in v)


@_doc("a non-empty list of commands")
def commands(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(_text(c) for c in v)


@_doc("a mapping of track id to a non-empty text")
def explanation(v: Any) -> bool:
    return isinstance(v, dict) and bool(v) and all(_text(t) for t in v.values())


@_doc("a list of {kind: official | open source | paper, title, url: https://...}")
def tools(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(
        isinstance(t, dict) and set(t) == {"kind", "title", "url"} and t["kind"] in TOOL_KINDS
        and _text(t["title"]) and isinstance(t["url"], str) and t["url"].startswith("https://") for t in v)


@_doc("a list of {topic, note, check: a test node id tests/<file>.py::<test> or null}")
def security(v: Any) -> bool:
    def ok(n: Any) -> bool:
        return (isinstance(n, dict) and set(n) == {"topic", "note", "check"} and _text(n["topic"]) and _text(n["note"])
                and (n["check"] is None or bool(re.fullmatch(r"tests/\w+\.py::\w+", str(n["check"])))))

    return isinstance(v, list) and all(ok(n) for n in v)


@_doc("{file: PACKAGE/<module>.py, start: text of the first line, end (optional): text of the last line}")
def snippet(v: Any) -> bool:
    return (isinstance(v, dict) and {"file", "start"} <= set(v) <= {"file", "start", "end"}
            and all(_text(x) for x in v.values()) and v["file"].startswith(SNIPPET_ROOT) and v["file"].endswith(".py"))


@_doc("{command, observe, pattern (a regex with one group), expected (a value, or one per track) or expected_from "
      "(section.key of the derived values), tolerance >= 0, relative?}")
def experiment(v: Any) -> bool:
    if not isinstance(v, dict) or not {"command", "observe", "pattern", "tolerance"} <= set(v):
        return False
    if set(v) - {"command", "observe", "pattern", "expected", "expected_from", "tolerance", "relative"}:
        return False
    if ("expected" in v) == ("expected_from" in v):  # exactly one of them
        return False
    if "expected_from" in v and not re.fullmatch(r"\w+\.\w+", str(v["expected_from"])):  # section.key of derived
        return False
    expected = v.get("expected")
    if isinstance(expected, dict):  # per track
        if not expected or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in expected.values()):
            return False
    elif "expected" in v and not (isinstance(expected, (int, float, str)) and not isinstance(expected, bool)):
        return False
    try:
        groups = re.compile(v["pattern"]).groups
    except (re.error, TypeError):
        return False
    tol = v["tolerance"]
    return (groups == 1 and _text(v["command"]) and _text(v["observe"])
            and isinstance(tol, (int, float)) and not isinstance(tol, bool) and tol >= 0
            and isinstance(v.get("relative", False), bool))


@_doc("a mapping of positive numbers with a `source` text")
def estimate(v: Any) -> bool:
    if not isinstance(v, dict) or not _text(v.get("source")):
        return False
    return all(isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for k, x in v.items() if k != "source")


def step_schema(text: Check, ids: Check) -> tuple[dict[str, Check], dict[str, Check]]:
    """(required, optional) fields of a step, for catalog.SCHEMA; `text`/`ids` are the catalog's own checks."""
    required = {
        "title": text, "summary": text, "depends_on": str_list, "prerequisites": str_list,
        "explanation": explanation, "tools": tools, "security": security, "snippet": snippet,
    }
    optional = {  # a step without tracks or budgets applies to all of them
        "tracks": ids, "budgets": ids, "optional_tracks": ids, "optional_budgets": ids, "commands": commands,
        "layers": ids,
        "experiment": experiment,
        "estimate": estimate,
    }
    return required, optional


def _fail(where: str, message: str) -> UserError:
    return UserError(f"tracks data roadmap.yml: steps.{where}: {message}")


def cross_check(catalog: dict[str, Any], cli: tuple[str, ...]) -> None:
    """Rules between steps, against the tracks and budgets sections and against the generated CLI's commands."""
    tracks, budgets = set(catalog["tracks"]), set(catalog["budgets"])
    runners = cli + ("pytest",)
    seen: list[str] = []
    for sid, step in catalog["steps"].items():
        for dep in step["depends_on"]:
            if dep not in seen:
                raise _fail(f"{sid}.depends_on", f"{dep!r} is not a step listed above {sid!r}")
        for field, known in (("tracks", tracks), ("budgets", budgets), ("optional_tracks", tracks),
                             ("optional_budgets", budgets)):
            unknown = set(step.get(field, [])) - known
            if unknown:
                raise _fail(f"{sid}.{field}", f"unknown id {sorted(unknown)[0]!r}")
        if set(step["explanation"]) != tracks:
            raise _fail(f"{sid}.explanation", f"expected one text for each of {', '.join(sorted(tracks))}")
        unknown_command = [c for c in step.get("commands", []) if c.split()[0] not in runners]
        if unknown_command:
            raise _fail(f"{sid}.commands", f"expected a non-empty list of commands, each starting with "
                                           f"{', '.join(runners)}; got {unknown_command[0]!r}")
        if ("commands" in step) != ("experiment" in step):
            raise _fail(sid, "a step with commands needs a micro-experiment, and an experiment needs commands")
        if "experiment" in step and step["experiment"]["command"] not in step["commands"]:
            raise _fail(f"{sid}.experiment.command", "must be one of the step's commands")
        expected = step.get("experiment", {}).get("expected")
        if isinstance(expected, dict) and set(expected) != tracks:
            raise _fail(f"{sid}.experiment.expected", f"a per-track value needs each of {', '.join(sorted(tracks))}")
        seen.append(sid)
