"""`check`: the roadmap's micro-experiments, each measured against its expected output.

checks.yml (at the repository root, rendered from llm-blueprint's tracks/checks.yml for this track and budget)
says, for every check, the roadmap step it belongs to, what it measures and, per figure, the expected value
with its tolerance and the reason for both: a formula (ln(vocab_size) for the initial loss), a value measured
over several seeds with the spread they showed, or a reference figure with its source. experiments.py holds
the code that measures. This module runs experiments, judges every figure (PASS, or FAIL with the gap and
the file and function most likely at fault), writes runs/checks/<name>.json and prints a table at the end.

    check list                 one line per check: name, step, about how long, fast or not
    check run NAME [NAME ...]  run some checks
    check all [--fast]         run every check (or only the fast ones, as the tests do)
"""

from __future__ import annotations

import argparse
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from .cli import command, load_package
from .checkpoint import write_json
from .config import COMMAND, REPO_ROOT

EXPECTATIONS = REPO_ROOT / "checks.yml"
RESULTS = Path("runs") / "checks"
EXPERIMENTS: dict[str, Callable] = {}


def experiment(fn):
    EXPERIMENTS[fn.__name__] = fn
    return fn


@dataclass
class Figure:
    """One measured number and what it should be: `expected` ± `tolerance` (a fraction of it when
    `relative`), at most `at_most`, at least `at_least`, or `shown` only (compared, never judged)."""

    name: str
    label: str
    text: str  # the expectation in words, e.g. "0 exactly", "at most 1e-06", "ln(vocab_size) ± 0.05"
    basis: str  # formula | measured | reference | estimate
    reason: str
    expected: float | None = None  # None with a formula or an estimate: the experiment computes it
    tolerance: float = 0.0
    relative: bool = False
    at_most: float | None = None
    at_least: float | None = None
    formula: str | None = None
    shown: bool = False  # an estimate to compare with, not a pass/fail criterion

    def judge(self, measured: float, expected: float | None) -> tuple[bool, float]:
        """(passed, gap): the gap is how far `measured` lies outside the allowed range (0 inside)."""
        if self.shown:
            return True, 0.0
        if self.at_most is not None:
            return measured <= self.at_most, max(0.0, measured - self.at_most)
        if self.at_least is not None:
            return measured >= self.at_least, max(0.0, self.at_least - measured)
        allowed = self.tolerance * abs(expected) if self.relative else self.tolerance
        off = abs(measured - expected)
        return off <= allowed, max(0.0, off - allowed)

    def wanted(self, expected: float | None) -> str:
        """The expectation in words (`text`, rendered with checks.yml), with a computed value in front."""
        if self.shown:
            return f"~{expected:.4g} (estimate)"
        return f"{expected:.4g} = {self.text}" if self.formula is not None else self.text


@dataclass
class Check:
    name: str
    step: str  # the roadmap step's title
    title: str
    observe: str  # what the experiment does, in one sentence
    fast: bool
    seconds: int  # about how long it takes on a 2-core laptop CPU
    look_at: str  # on FAIL: the file and function most likely at fault
    figures: dict[str, Figure]
    setup: dict[str, Any] = field(default_factory=dict)  # the experiment's knobs (steps, tokens, ...)


def load_checks(path: Path = EXPECTATIONS) -> dict[str, Check]:
    """The checks of this repository, in roadmap order."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: it holds the checks' expected outputs")
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    checks = {}
    for name, c in raw.items():
        figures = {k: Figure(name=k, **f) for k, f in c.pop("figures").items()}
        checks[name] = Check(name=name, figures=figures, **c)
    return checks


def select(checks: dict[str, Check], names: list[str], fast_only: bool = False) -> list[Check]:
    """The named checks (all when `names` is empty), only the fast ones if asked; unknown names are an error."""
    unknown = [n for n in names if n not in checks]
    if unknown:
        raise ValueError(f"unknown check '{unknown[0]}' (run 'check list'; known: {', '.join(checks)})")
    chosen = [checks[n] for n in names] if names else list(checks.values())
    return [c for c in chosen if c.fast or not fast_only]


def format_list(checks: dict[str, Check]) -> str:
    rows = [f"{'check':<22} {'roadmap step':<34} {'time':>7}  speed"]
    for c in checks.values():
        rows.append(f"{c.name:<22} {c.step:<34} {_duration(c.seconds):>7}  {'fast' if c.fast else 'slow'}")
    return "\n".join(rows)


def _duration(seconds: float) -> str:
    return f"~{seconds:.0f} s" if seconds < 120 else f"~{seconds / 60:.0f} min"


def run_check(check: Check, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run one experiment in runs/checks/<name>/ and judge its figures; the result is also written as JSON."""
    from .experiments import Context

    load_package()  # every module registers its experiments with @experiment
    work = RESULTS / check.name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.perf_counter()
    outcome = EXPERIMENTS[check.name](Context(work=work, setup=check.setup, log=log))
    rows = []
    for fig in check.figures.values():
        measured = float(outcome.measured[fig.name])
        expected = outcome.expected.get(fig.name, fig.expected)
        passed, gap = fig.judge(measured, expected)
        rows.append({"figure": fig.name, "label": fig.label, "measured": measured, "expected": expected,
                     "wanted": fig.wanted(expected), "passed": passed, "gap": gap, "basis": fig.basis,
                     "reason": fig.reason, "judged": not fig.shown})
    result = {
        "check": check.name, "step": check.step, "title": check.title, "passed": all(r["passed"] for r in rows),
        "seconds": round(time.perf_counter() - started, 2), "figures": rows, "look_at": check.look_at,
        "notes": outcome.notes, "files": [str(p) for p in outcome.files],
    }
    write_json(RESULTS / f"{check.name}.json", result)
    return result


def format_result(result: dict[str, Any]) -> str:
    """Measured beside expected for every figure, the verdict, and on FAIL what to look at."""
    lines = [f"{result['check']} ({result['step']}): {result['title']}"]
    for r in result["figures"]:
        verdict = ("PASS" if r["passed"] else f"FAIL by {r['gap']:.3g}") if r["judged"] else "shown"
        lines.append(f"  {r['label']:<44} measured {r['measured']:<11.5g} expected {r['wanted']:<22} {verdict}")
    for key, value in result["notes"].items():
        lines.append(f"  {key}: {value}")
    for path in result["files"]:
        lines.append(f"  wrote {path}")
    if not result["passed"]:
        lines.append(f"  look at: {result['look_at']}")
    return "\n".join(lines)


def format_table(results: list[dict[str, Any]]) -> str:
    """One row per figure: check, expected, measured, verdict; then how many checks passed."""
    rows = [("check", "figure", "expected", "measured", "verdict")]
    for res in results:
        for r in res["figures"]:
            verdict = ("PASS" if r["passed"] else "FAIL") if r["judged"] else "shown"
            rows.append((res["check"], r["figure"], r["wanted"], f"{r['measured']:.5g}", verdict))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    text = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    text.insert(1, "  ".join("-" * w for w in widths))
    passed = sum(res["passed"] for res in results)
    return "\n".join(text + [f"{passed} of {len(results)} checks passed"])


def main(action: str, names: list[str], fast_only: bool = False, log: Callable[[str], None] = print) -> int:
    """The `check` command; returns the exit code (1 if any check failed)."""
    checks = load_checks()
    if action == "list":
        log(format_list(checks))
        return 0
    if action == "run" and not names:
        raise ValueError("check run needs at least one check name (see 'check list')")
    chosen = select(checks, names if action == "run" else [], fast_only)
    results = []
    for i, check in enumerate(chosen, 1):
        log(f"[{i}/{len(chosen)}] {check.name}: {check.observe} ({_duration(check.seconds)})")
        results.append(run_check(check, log))
        log(format_result(results[-1]))
    if action == "all" or len(results) > 1:
        log("\n" + format_table(results))
    return 0 if all(r["passed"] for r in results) else 1


def _check_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["list", "run", "all"], help="list the checks, run some, or run all")
    p.add_argument("names", nargs="*", metavar="NAME", help="checks to run (with run)")
    p.add_argument("--fast", action="store_true", help="with all: only the fast checks (the ones the tests run)")


@command("check", help="run the roadmap's micro-experiments against expected outputs", flags=_check_flags,
         description="Each check measures a few figures with this repository's code and compares them\n"
                     "with checks.yml (expected value, tolerance and why): PASS, or FAIL with the gap\n"
                     "and where to look. Results go to runs/checks/<name>.json; exit code 1 if any\n"
                     "fails.\n\n"
                     f"examples:\n  {COMMAND} check list\n  {COMMAND} check run model_causality\n"
                     f"  {COMMAND} check all --fast")
def check_command(args: argparse.Namespace) -> int:
    return main(args.action, args.names, args.fast)
