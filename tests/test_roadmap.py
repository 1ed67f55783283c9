"""The roadmap: its data, snippets cut from real template code, commands that exist, the Markdown and the PDF."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest
from fontTools.ttLib import TTFont
from pypdf import PdfReader

from generator.source import copy_template
from generator.errors import UserError
from generator.estimate import estimate
from generator.formulas import default_layers
from generator.render import render
from generator.roadmap import attachment_ipynb, attachment_py, build, markdown
from generator.roadmap_layout import layout
from generator.roadmap_pdf import FONTS, attachment_names, render_pdf, step_dest
from generator.spec import cli_commands
from generator.source import TemplateSource
from generator.spec import TemplateSpec
from tests.conftest import ROOT

# Rendered once each: the smallest and the largest combination, and the practitioner in between.
CASES = [("beginner", "cpu"), ("practitioner", "gpu-24gb"), ("researcher", "cluster")]
CATALOG = TemplateSpec(ROOT).catalog


def answers(track: str, budget: str) -> dict:
    """The answers of a render with the track's and budget's default layers (copier.yml's `layers` default)."""
    a = {"project_name": f"rm-{track[:4]}", "track": track, "budget": budget, "hours": 2.0,
         "data_source": "shakespeare", "license": "MIT", "author": "",
         "layers": default_layers(CATALOG, track, budget, "shakespeare")}
    return {**a, "nodes": 4} if budget == "cluster" else a


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory, template_repo: Path) -> dict[str, Path]:
    """Copier-rendered projects, to compare the roadmap with what users actually get."""
    out = tmp_path_factory.mktemp("roadmap-projects")
    found = {}
    for track, budget in CASES:
        render(TemplateSource(str(template_repo), "HEAD"), out / track, answers(track, budget))
        found[track] = out / track
    return found


@pytest.fixture(scope="module")
def pdfs(spec: TemplateSpec) -> dict[str, tuple[object, bytes]]:
    return {track: (build(spec, answers(track, budget)), render_pdf(build(spec, answers(track, budget))))
            for track, budget in CASES}


def test_sixteen_steps_in_dependency_order(spec: TemplateSpec) -> None:
    steps = spec.catalog["steps"]
    assert len(steps) == 16
    assert list(steps)[0] == "data_collection" and list(steps)[-1] == "deployment"
    assert all("commands" in step and "experiment" in step for step in steps.values())  # each has code
    assert "prepare" in steps["cleaning_pii"]["commands"][0]  # prepare cleans, deduplicates and scans


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("    depends_on: [data_collection]\n", "    depends_on: [tokenizer]\n", "cleaning_pii.depends_on: 'tokenizer' is not a step listed above"),
        ("    commands: [prepare --config tiny --source shakespeare, pytest", "    commands: [deploy --port 80, pytest",
         "steps.data_collection.commands: expected commands starting with one of check, plan, prepare, "),
        ("      - {kind: official, title: torch.nn.init,", "      - {kind: blog, title: torch.nn.init,", "steps.initialisation.tools"),
        ("    optional_tracks: [beginner]\n", "    optional_tracks: [novice]\n", "fine_tuning.optional_tracks: unknown id 'novice'"),
        ("        check: tests/test_train.py::test_checkpoint_loads_with_weights_only\n    snippet: {file: PACKAGE/train.py, start: \"for",
         "        check: the tests\n    snippet: {file: PACKAGE/train.py, start: \"for", "steps.training_loop.security"),
        ("      expected_from: tiny.params\n", "", "steps.model.experiment: give exactly one of expected and expected_from"),
    ],
)
def test_roadmap_mistakes_are_reported(tmp_path: Path, old: str, new: str, expected: str) -> None:
    copy_template(ROOT, tmp_path)
    path = tmp_path / "tracks" / "roadmap.yml"
    text = path.read_text()
    assert old in text, f"test setup: {old!r} not in roadmap.yml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(UserError) as info:
        _ = TemplateSpec(tmp_path).catalog
    assert expected in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(("track", "budget"), CASES)
def test_snippets_are_the_generated_code(spec: TemplateSpec, projects, track: str, budget: str) -> None:
    roadmap = build(spec, answers(track, budget))
    project = projects[track]
    for step in present_steps(roadmap):
        s = step.snippet
        lines = (project / s.path).read_text().splitlines()
        n = s.code.count("\n")
        original = "\n".join(lines[s.first_line - 1:s.first_line - 1 + n]) + "\n"
        assert original.strip() and textwrap.dedent(original) == s.code, step.id
        assert step.data.snippet.start.strip() in lines[s.first_line - 1] or lines[s.first_line - 1].lstrip().startswith("@")
        compile(attachment_py(roadmap, step), f"{step.id}.py", "exec")  # each attachment is valid Python


def present_steps(roadmap) -> list:
    """The steps whose layers the project has: the others name `llm-blueprint add` (and the all-layers case, the
    researcher's cluster, checks their code and commands)."""
    missing = [step for step in roadmap.steps if any(add for _, add in step.layers)]
    assert all(add.startswith("llm-blueprint add ") for step in missing for _, add in step.layers if add)
    return [step for step in roadmap.steps if step not in missing]


def _cli_help(project: Path, package: str, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", package, *args, "--help"], cwd=project, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize(("track", "budget"), CASES)
def test_every_command_and_check_exists_in_the_generated_repo(spec: TemplateSpec, projects, track: str, budget: str) -> None:
    roadmap = build(spec, answers(track, budget))
    project, package = projects[track], roadmap.derived["package_name"]
    subcommands = set(re.findall(r"^    ([\w-]+)\s{2,}", _cli_help(project, package), re.M))
    assert {"prepare", "train", "generate", "plot", "plan", "check"} <= subcommands  # the core's
    assert subcommands <= set(cli_commands(ROOT))  # the roadmap's command list holds every layer's
    tests = {p.relative_to(project).as_posix(): p.read_text() for p in (project / "tests").glob("test_*.py")}
    for step in present_steps(roadmap):
        for command in step.commands + ([step.experiment["command"]] if step.experiment else []):
            words = command.split()
            if words[0] == "pytest":
                assert words[1] in tests, f"{step.id}: {words[1]} does not exist"
                if "-k" in words:
                    assert re.search(rf"def test_\w*{words[words.index('-k') + 1]}", tests[words[1]]), command
                continue
            assert words[0] == roadmap.derived["command"] and words[1] in subcommands, command
            flags = [w for w in words[2:] if w.startswith("--")]
            help_text = _cli_help(project, package, words[1])
            assert all(flag in help_text for flag in flags), f"{command}: unknown flag"
        for note in step.data.security:
            if note.check:
                file, test = note.check.split("::")
                assert file in tests and f"def {test}(" in tests[file], note.check


@pytest.mark.parametrize(("track", "budget"), CASES)
def test_generated_roadmap_md(spec: TemplateSpec, projects, track: str, budget: str) -> None:
    text = (projects[track] / "ROADMAP.md").read_text()
    assert text == markdown(spec, answers(track, budget))  # Copier and the generator render the same file
    roadmap = build(spec, answers(track, budget))
    mermaid = text.split("```mermaid\n", 1)[1].split("```", 1)[0]
    for step in roadmap.steps:
        assert f'  {step.id}["{step.number}. {step.data.title}' in mermaid
        for dep in step.data.depends_on:
            if dep in roadmap.estimate["steps"]:
                assert f"  {dep} --> {step.id}\n" in mermaid
        assert f"\n## {step.number}. {step.data.title}\n" in text
        for command in step.commands:
            assert f"- [ ] `{command}`" in text
        assert dict(step.estimate["rows"])["time"] in text
    assert text.count("\n- [ ] [") == len(roadmap.steps)  # the checklist
    assert f"class {','.join(roadmap.estimate['critical_path'])} critical" in mermaid
    assert ("distributed" in text) == (budget in ("node-8gpu", "cluster"))


def _dest_page(reader: PdfReader, name: str) -> int:
    return reader.get_destination_page_number(reader.named_destinations[name])


@pytest.mark.parametrize("track", [t for t, _ in CASES])
def test_pdf_links_outline_and_attachments(pdfs, track: str) -> None:
    roadmap, data = pdfs[track]
    reader = PdfReader(io.BytesIO(data))
    outline = [(item.title, reader.get_destination_page_number(item)) for item in reader.outline]
    assert outline[0] == ("Dependency graph", 0)
    assert [t for t, _ in outline[1:]] == [f"{s.number}. {s.data.title}" for s in roadmap.steps]
    pages = dict(outline)

    links = [a.get_object() for a in reader.pages[0].get("/Annots", [])]
    targets = [str(a["/Dest"]) for a in links if a.get("/Subtype") == "/Link"]
    assert sorted(targets) == sorted(step_dest(s) for s in roadmap.steps)  # one box per step, each a link
    for step in roadmap.steps:
        assert _dest_page(reader, step_dest(step)) == pages[f"{step.number}. {step.data.title}"]
        page = reader.pages[pages[f"{step.number}. {step.data.title}"]]
        back = [a.get_object().get("/Dest") for a in page.get("/Annots", [])]
        assert "graph" in [str(d) for d in back if d is not None]  # the way back to page 1
    assert _dest_page(reader, "graph") == 0

    attachments = reader.attachments
    for step in roadmap.steps:
        py_name, nb_name = attachment_names(step)
        py = attachments[py_name][0].decode()
        assert step.snippet.code in py
        nb = nbformat.reads(attachments[nb_name][0].decode(), as_version=4)
        nbformat.validate(nb)
        assert [c.id for c in nb.cells][:3] == [f"{step.id}-intro", f"{step.id}-source", f"{step.id}-code"]
        assert nb.cells[2].source == step.snippet.code.rstrip("\n")
    assert len(attachments) == 2 * len(roadmap.steps)


def test_pdf_is_byte_identical_for_the_same_inputs(spec: TemplateSpec, pdfs) -> None:
    roadmap, first = pdfs["beginner"]
    assert render_pdf(build(spec, answers("beginner", "cpu"))) == first
    assert first[:5] == b"%PDF-" and attachment_ipynb(roadmap, roadmap.steps[0]) == attachment_ipynb(roadmap, roadmap.steps[0])


def test_fonts_cover_every_character_printed(pdfs) -> None:
    covered = {name: set(TTFont(FONTS / f"{name}.ttf").getBestCmap()) for name in ("DejaVuSans", "DejaVuSansMono")}
    for roadmap, _ in pdfs.values():
        text = [roadmap.title]
        for step in roadmap.steps:
            d = step.data
            text += [d.title, d.summary, *d.prerequisites, *d.explanation.values(), *step.commands]
            text += [t.title for t in d.tools] + [n.note for n in d.security]
            text += [v for row in step.estimate["rows"] for v in row]
        missing = {c for c in "".join(text) if ord(c) not in covered["DejaVuSans"]}
        assert not missing, f"no glyph for {sorted(missing)}"
        code = "".join(s.snippet.code for s in roadmap.steps)
        assert not {c for c in code if c != "\n" and ord(c) not in covered["DejaVuSansMono"]}


def test_graph_layout_keeps_boxes_apart_and_on_the_page(pdfs) -> None:
    for roadmap, _ in pdfs.values():
        ids = [s.id for s in roadmap.steps]
        deps = {s.id: [d for d in s.data.depends_on if d in ids] for s in roadmap.steps}
        boxes, edges = layout(ids, deps, left=15, width=180, top=40, height=232, box_w=54, box_h=11.5)
        eps = 1e-6  # millimetres; positions are sums of floats
        for a in boxes.values():
            assert 15 - eps <= a.x and a.x + a.w <= 195 + eps and 40 <= a.y and a.y + a.h <= 272
            for b in boxes.values():
                if a.id < b.id:
                    apart = a.x + a.w <= b.x + eps or b.x + b.w <= a.x + eps or a.y + a.h <= b.y or b.y + b.h <= a.y
                    assert apart, (a.id, b.id)
        assert {(e.src, e.dst) for e in edges} == {(d, s) for s in ids for d in deps[s]}
        for e in edges:
            assert e.points[0] == (boxes[e.src].cx, boxes[e.src].y + boxes[e.src].h)
            assert e.points[-1] == (boxes[e.dst].cx, boxes[e.dst].y)


def test_roadmap_command_writes_pdf_and_markdown(cli, tmp_path: Path) -> None:
    code, out, err = cli("roadmap", "--track", "researcher", "--budget", "cluster", "-o", str(tmp_path / "r.pdf"))
    assert code == 0, err
    assert PdfReader(tmp_path / "r.pdf").outline[0].title == "Dependency graph"
    code, _, _ = cli("roadmap", "--name", "demo", "-o", str(tmp_path / "ROADMAP.md"))
    assert code == 0 and (tmp_path / "ROADMAP.md").read_text().startswith("# Roadmap for demo\n")
    code, _, err = cli("roadmap", "-o", str(tmp_path / "r.txt"))
    assert code == 2 and "written as .pdf or .md" in err and not (tmp_path / "r.txt").exists()


def test_png_without_pdftoppm_fails_before_writing_the_pdf(cli, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("generator.roadmap_pdf.shutil.which", lambda name: None)
    code, _, err = cli("roadmap", "-o", str(tmp_path / "r.pdf"), "--png", str(tmp_path / "page1.png"))
    assert code == 2 and "--png needs pdftoppm" in err and err.count("\n") == 1
    assert not (tmp_path / "r.pdf").exists()


def test_readme_counts_the_roadmap_steps_per_budget(spec: TemplateSpec) -> None:
    counts = {len(estimate(spec, answers("beginner", budget))["steps"]) for budget in spec.catalog["budgets"]}
    readme = (ROOT / "README.md").read_text()
    assert f"{min(counts)} steps" in readme and f"({max(counts)} on" in readme, sorted(counts)


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="pdftoppm (poppler-utils) is not installed")
def test_page_one_png(cli, tmp_path: Path) -> None:
    code, _, err = cli("roadmap", "-o", str(tmp_path / "r.pdf"), "--png", str(tmp_path / "page1.png"))
    assert code == 0, err
    assert (tmp_path / "page1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# The micro-experiments that take seconds; `train --config tiny` (300 and 50 steps) takes minutes on a laptop.
QUICK = ("data_collection", "tokenizer", "shards", "model", "initialisation", "lr_schedule", "mixed_precision", "evaluation")


@pytest.mark.slow
@pytest.mark.parametrize("track", [t for t, _ in CASES])
def test_quick_micro_experiments_hold(spec: TemplateSpec, projects, track: str) -> None:
    pytest.importorskip("torch")
    roadmap = build(spec, answers(track, dict(CASES)[track]))
    package = roadmap.derived["package_name"]
    for step in roadmap.steps:
        if step.id not in QUICK:
            continue
        exp = step.experiment
        words = exp["command"].split()
        cmd = [sys.executable, "-m", "pytest", *words[1:]] if words[0] == "pytest" else [sys.executable, "-m", package, *words[1:]]
        result = subprocess.run(cmd, cwd=projects[track], capture_output=True, text=True, timeout=600)
        found = re.search(exp["pattern"], result.stdout + result.stderr)
        assert found, f"{step.id}: {exp['pattern']!r} not in the output of {exp['command']}"
        observed, expected = found.group(1), exp["expected"]
        if isinstance(expected, str):
            assert expected in observed, (step.id, observed)
        else:
            value = float(observed.replace(",", ""))
            allowed = exp["tolerance"] * (abs(expected) if exp.get("relative") else 1)
            assert abs(value - expected) <= allowed, (step.id, value, expected)
