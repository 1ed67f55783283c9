"""The roadmap as a PDF (fpdf2, pure Python): page 1 the dependency graph, then one section per step.

Every box on page 1 links to its step's page through a named destination ("step-<id>"), every step page links
back ("graph"), the outline lists the graph and every step, and each step's snippet is attached as .py and
.ipynb. The output is byte-identical for the same inputs: fixed creation and attachment dates, fixed notebook
cell ids, no clock or random state anywhere.
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fpdf import FPDF
from pygments.lexers import PythonLexer
from pygments.token import Comment, Keyword, Name, Number, Operator, String

from generator.errors import UserError
from generator.roadmap import Roadmap, Step, attachment_ipynb, attachment_py
from generator.roadmap_layout import layout
from generator.roadmap_text import expected_text, figures_text

FONTS = Path(__file__).parent / "fonts"
FIXED_DATE = datetime(2025, 1, 1, tzinfo=timezone.utc)  # any constant: the bytes must not depend on the clock
INK, GREY, ACCENT, SOFT = (33, 37, 41), (110, 117, 125), (214, 92, 20), (253, 236, 222)
LINK = (13, 90, 170)
# Colours of a light code theme, by Pygments token type (most specific first).
CODE_COLOURS = [(Comment, (106, 115, 125)), (String, (3, 106, 7)), (Number, (152, 104, 1)),
                (Keyword, (170, 13, 145)), (Name.Function, (28, 0, 207)), (Name.Class, (28, 0, 207)),
                (Name.Builtin, (92, 38, 153)), (Name.Decorator, (100, 56, 32)), (Operator, (80, 80, 80))]


GRAPH_DEST = "graph"  # named destination of page 1


def step_dest(step: Step) -> str:
    return f"step-{step.id}"


def attachment_names(step: Step) -> tuple[str, str]:
    stem = f"{step.number:02d}-{step.id}"
    return f"{stem}.py", f"{stem}.ipynb"


class RoadmapPDF(FPDF):
    def __init__(self, title: str) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self.doc_title = title
        for style, name in (("", "DejaVuSans"), ("B", "DejaVuSans-Bold"), ("I", "DejaVuSans-Oblique")):
            self.add_font("Sans", style, FONTS / f"{name}.ttf")
        self.add_font("Mono", "", FONTS / "DejaVuSansMono.ttf")
        self.set_creation_date(FIXED_DATE)
        self.set_title(title)
        self.set_author("llm-blueprint")
        self.set_creator("llm-blueprint roadmap")
        self.set_margins(15, 15, 15)
        self.set_auto_page_break(True, margin=18)

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("Sans", "", 7.5)
        self.set_text_color(*GREY)
        self.cell(0, 5, f"{self.doc_title}  ·  page {self.page_no()}", align="L")
        if self.page_no() > 1:
            self.set_x(-60)
            self.set_text_color(*LINK)
            self.cell(45, 5, "↑ back to the graph", align="R", link="#" + GRAPH_DEST)


def render_pdf(roadmap: Roadmap) -> bytes:
    pdf = RoadmapPDF(roadmap.title)
    _graph_page(pdf, roadmap)
    for step in roadmap.steps:
        _step_page(pdf, roadmap, step)
        py_name, nb_name = attachment_names(step)
        pdf.embed_file(bytes=attachment_py(roadmap, step).encode("utf-8"), basename=py_name,
                       modification_date=FIXED_DATE, creation_date=FIXED_DATE, mime_type="text/x-python",
                       desc=f"Step {step.number}: {step.data.title} (code)")
        pdf.embed_file(bytes=attachment_ipynb(roadmap, step).encode("utf-8"), basename=nb_name,
                       modification_date=FIXED_DATE, creation_date=FIXED_DATE, mime_type="application/x-ipynb+json",
                       desc=f"Step {step.number}: {step.data.title} (notebook)")
    return bytes(pdf.output())


def check_pdftoppm() -> None:
    """Fail before any work when page 1 cannot be rendered to a PNG."""
    if shutil.which("pdftoppm") is None:
        raise UserError("--png needs pdftoppm (Debian/Ubuntu: apt-get install poppler-utils); nothing was written")


def render_png(pdf: Path, png: Path, dpi: int = 110) -> None:
    """Page 1 of `pdf` as a PNG, with poppler's pdftoppm."""
    stem = png.with_suffix("")
    subprocess.run(["pdftoppm", "-png", "-r", str(dpi), "-f", "1", "-l", "1", "-singlefile", str(pdf), str(stem)],
                   check=True, capture_output=True)
    if stem.with_suffix(".png") != png:
        stem.with_suffix(".png").replace(png)


# -- page 1 -----------------------------------------------------------------------------------------------------

def _fit_font(pdf: FPDF, text: str, width: float, style: str, size: float) -> None:
    """Set the largest font size <= size at which `text` fits `width`."""
    while size > 5:
        pdf.set_font("Sans", style, size)
        if pdf.get_string_width(text) <= width:
            return
        size -= 0.25


def _graph_page(pdf: RoadmapPDF, roadmap: Roadmap) -> None:
    pdf.add_page()
    pdf.set_auto_page_break(False)  # the graph is drawn at fixed positions on one page
    pdf.set_link(name=GRAPH_DEST)
    pdf.start_section("Dependency graph")
    pdf.set_text_color(*INK)
    pdf.set_font("Sans", "B", 15)
    pdf.cell(0, 8, roadmap.title, new_x="LMARGIN", new_y="NEXT")
    plan = roadmap.derived["plan"]
    est = roadmap.estimate
    tl = dict(est["steps"]["training_loop"]["rows"])
    pdf.set_font("Sans", "", 8.5)
    pdf.set_text_color(*GREY)
    pdf.multi_cell(0, 4.2, f"{roadmap.derived['model']['params']:,} parameters · {plan['train_tokens']:,} tokens · "
                   f"{est['training']['flops']:.3g} FLOPs · training {tl['time']} · {tl['cost']} · memory per device "
                   f"{tl['memory per device']}. Click a box to open its step; the outline lists them too.",
                   new_x="LMARGIN", new_y="NEXT")

    by_id = {s.id: s for s in roadmap.steps}
    ids = [s.id for s in roadmap.steps]
    deps = {s.id: [d for d in s.data.depends_on if d in by_id] for s in roadmap.steps}
    top = pdf.get_y() + 3
    boxes, edges = layout(ids, deps, left=15, width=180, top=top, height=272 - top, box_w=54, box_h=11.5)
    path = roadmap.estimate["critical_path"]
    critical_edges = set(zip(path, path[1:]))
    for edge in sorted(edges, key=lambda e: (e.src, e.dst) in critical_edges):  # critical edges drawn on top
        hot = (edge.src, edge.dst) in critical_edges
        pdf.set_draw_color(*(ACCENT if hot else GREY))
        pdf.set_line_width(0.7 if hot else 0.25)
        pdf.polyline(edge.points)
        (x, y), (px, py) = edge.points[-1], edge.points[-2]
        _arrow_head(pdf, px, py, x, y, ACCENT if hot else GREY)
    for sid, box in boxes.items():
        step = by_id[sid]
        optional = step.estimate["optional"]
        pdf.set_line_width(0.8 if step.critical else 0.3)
        pdf.set_draw_color(*(ACCENT if step.critical else INK))
        pdf.set_fill_color(*(SOFT if step.critical else (255, 255, 255)))
        if optional:
            pdf.set_dash_pattern(dash=1.2, gap=0.9)
        pdf.rect(box.x, box.y, box.w, box.h, style="DF", round_corners=True, corner_radius=1.5)
        pdf.set_dash_pattern()
        pdf.set_text_color(*(GREY if optional else INK))
        label = f"{step.number}. {step.data.title}"
        hours = step.estimate["hours"]
        note = (dict(step.estimate["rows"])["time"] if hours is not None else "") + (" · optional" if optional else "")
        _fit_font(pdf, label, box.w - 3, "B", 8)
        pdf.set_xy(box.x, box.y + (1.3 if note else 3.5))
        pdf.cell(box.w, 4.5, label, align="C")
        pdf.set_font("Sans", "", 6.8)
        pdf.set_text_color(*GREY)
        pdf.set_xy(box.x, box.y + 6)
        pdf.cell(box.w, 4, note.strip(" ·"), align="C")
        pdf.link(box.x, box.y, box.w, box.h, "#" + step_dest(step))
    _legend(pdf)
    pdf.set_auto_page_break(True, margin=18)


def _arrow_head(pdf: FPDF, px: float, py: float, x: float, y: float, colour: tuple[int, int, int]) -> None:
    length = max(((x - px) ** 2 + (y - py) ** 2) ** 0.5, 1e-6)
    ux, uy = (x - px) / length, (y - py) / length
    size = 1.8
    left = (x - size * ux - size * 0.55 * uy, y - size * uy + size * 0.55 * ux)
    right = (x - size * ux + size * 0.55 * uy, y - size * uy - size * 0.55 * ux)
    pdf.set_fill_color(*colour)
    pdf.polygon([(x, y), left, right], style="F")


def _legend(pdf: FPDF) -> None:
    y = 275
    pdf.set_line_width(0.8)
    pdf.set_draw_color(*ACCENT)
    pdf.set_fill_color(*SOFT)
    pdf.rect(15, y, 8, 4, style="DF")
    pdf.set_font("Sans", "", 7.5)
    pdf.set_text_color(*INK)
    pdf.set_xy(25, y - 0.5)
    pdf.cell(60, 5, "critical path (required steps that take longest)")
    pdf.set_line_width(0.3)
    pdf.set_draw_color(*INK)
    pdf.set_dash_pattern(dash=1.2, gap=0.9)
    pdf.rect(95, y, 8, 4)
    pdf.set_dash_pattern()
    pdf.set_xy(105, y - 0.5)
    pdf.cell(70, 5, "optional for this track and budget")


# -- step pages -------------------------------------------------------------------------------------------------

def _heading(pdf: FPDF, text: str) -> None:
    if pdf.get_y() > 255:
        pdf.add_page()
    pdf.ln(2.5)
    pdf.set_font("Sans", "B", 10.5)
    pdf.set_text_color(*INK)
    pdf.cell(0, 6, text, new_x="LMARGIN", new_y="NEXT")


def _para(pdf: FPDF, text: str, size: float = 9.5, style: str = "", colour=INK) -> None:
    pdf.set_font("Sans", style, size)
    pdf.set_text_color(*colour)
    pdf.multi_cell(0, size * 0.48, text, new_x="LMARGIN", new_y="NEXT")


def _mono_line(pdf: FPDF, text: str) -> None:
    pdf.set_font("Mono", "", 8.5)
    pdf.set_fill_color(244, 246, 248)
    pdf.set_text_color(*INK)
    pdf.multi_cell(0, 4.6, text, fill=True, new_x="LMARGIN", new_y="NEXT")


def _step_page(pdf: RoadmapPDF, roadmap: Roadmap, step: Step) -> None:
    data, track = step.data, roadmap.answers["track"]
    pdf.add_page()
    pdf.set_link(name=step_dest(step))
    pdf.start_section(f"{step.number}. {data.title}")
    pdf.set_font("Sans", "B", 16)
    pdf.set_text_color(*(ACCENT if step.critical else INK))
    pdf.cell(0, 9, f"{step.number}. {data.title}", new_x="LMARGIN", new_y="NEXT")
    tags = ["on the critical path"] if step.critical else []
    tags += ["optional for this track and budget"] if step.estimate["optional"] else []
    after = [s.data.title for s in roadmap.steps if s.id in data.depends_on]
    tags += [f"after: {', '.join(after)}"] if after else []
    _para(pdf, data.summary, 10, "I")
    if tags:
        _para(pdf, " · ".join(tags), 8, colour=GREY)
    _para(pdf, "Before you start: " + "; ".join(data.prerequisites) + ".", 8.5, colour=GREY)
    pdf.ln(1.5)
    _para(pdf, data.explanation[track])

    _layers(pdf, step)
    _heading(pdf, "Commands")
    if step.commands:
        for command in step.commands:
            _mono_line(pdf, command)
        exp = step.experiment
        _heading(pdf, "Micro-experiment")
        _mono_line(pdf, exp["command"])
        _para(pdf, f"Look at: {exp['observe']}. Expected: {expected_text(exp['expected'], exp)}.", 9)
    else:
        _para(pdf, "None yet: the template has no code for this step. Its explanation, tools, estimates and notes "
                   "stand on their own.", 9, "I", GREY)
    for name, check in step.checks.items():
        _heading(pdf, f"Check it: {check['title']}")
        _mono_line(pdf, f"{roadmap.derived['command']} check run {name}")
        expected = figures_text(check["figures"])
        _para(pdf, f"{check['observe']} ({'fast' if check['fast'] else 'slow'}, about {check['seconds']} s). "
                   f"Expected: {expected}.", 9)

    _heading(pdf, f"Estimates on {roadmap.catalog.budgets[roadmap.answers['budget']].title}")
    pdf.set_font("Sans", "", 8.5)
    pdf.set_text_color(*INK)
    with pdf.table(col_widths=(55, 125), text_align=("LEFT", "LEFT"), line_height=4.6, first_row_as_headings=False,
                   borders_layout="HORIZONTAL_LINES") as table:
        for label, value in step.estimate["rows"]:
            table.row([label, value])

    py_name, nb_name = attachment_names(step)
    s = step.snippet
    _heading(pdf, f"Code: {s.path}, line {s.first_line}")
    _para(pdf, f"Attached to this PDF as {py_name} and {nb_name} (your viewer's attachments panel).", 8, colour=GREY)
    _code(pdf, s.code)

    _heading(pdf, "Tools")
    for tool in data.tools:
        pdf.set_font("Sans", "B", 8.5)
        pdf.set_text_color(*GREY)
        pdf.cell(24, 4.8, tool.kind)
        pdf.set_font("Sans", "", 9)
        pdf.set_text_color(*LINK)
        pdf.multi_cell(0, 4.8, tool.title, link=tool.url, new_x="LMARGIN", new_y="NEXT")

    _heading(pdf, "Security and compliance")
    if not data.security:
        _para(pdf, "Nothing specific to this step.", 9, "I", GREY)
    for note in data.security:
        check = f"Checked by {note.check}." if note.check else "No automated check yet."
        _para(pdf, f"{note.topic}: {note.note} {check}", 9)
        pdf.ln(0.8)


def _layers(pdf: FPDF, step: Step) -> None:
    """The layers the step needs, and the command that adds each one the repository lacks."""
    if not step.layers:
        return
    _heading(pdf, "Layers")
    for name, add in step.layers:
        _para(pdf, f"{name}: " + ("not in this repository yet; add it with" if add else "in this repository."), 9)
        if add:
            _mono_line(pdf, add)


def _code(pdf: FPDF, code: str) -> None:
    """Syntax-highlighted code (Pygments tokens, light theme), one cell per token, breaking pages as needed."""
    lines = code.rstrip("\n").expandtabs(4).split("\n")
    size = min(7.5, 177 / (max(len(line) for line in lines) * 0.602 * 25.4 / 72))  # DejaVu Mono: 0.602 em/char
    height = size * 0.45
    pdf.set_font("Mono", "", size)
    tokens = list(PythonLexer(stripnl=False, ensurenl=False).get_tokens(code.rstrip("\n").expandtabs(4)))
    line_tokens: list[list[tuple[Any, str]]] = [[]]
    for kind, text in tokens:
        for i, part in enumerate(text.split("\n")):
            if i:
                line_tokens.append([])
            if part:
                line_tokens[-1].append((kind, part))
    pdf.set_fill_color(246, 248, 250)
    for parts in line_tokens:
        if pdf.get_y() + height > pdf.h - 20:
            pdf.add_page()
            pdf.set_font("Mono", "", size)
        y = pdf.get_y()
        pdf.rect(15, y, 180, height, style="F")
        pdf.set_x(16)
        for kind, text in parts:
            colour = next((c for t, c in CODE_COLOURS if kind in t), INK)
            pdf.set_text_color(*colour)
            pdf.cell(pdf.get_string_width(text), height, text)
        pdf.set_xy(15, y + height)
    pdf.ln(1)
