"""Layers in renders: for each architecture the core alone, each layer alone on the core (with the layers it needs)
and all layers render, pass ruff, import cleanly, respect the import graph and name no absent layer's words."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from generator.render import render
from generator.source import TemplateSource
from generator.spec import TemplateSpec

ROOT = Path(__file__).resolve().parent.parent
ARCHITECTURES = {"gpt2": "beginner", "llama": "researcher"}  # the researcher's Llama has every model feature


def layer_sets(spec: TemplateSpec, each: bool) -> dict[str, list[str]]:
    """The layer answers the test renders: none and every layer, or (each) every layer alone, which brings the
    layers it needs."""
    names = list(spec.catalog["layers"])
    return {name: [name] for name in names} if each else {"core": [], "all": names}


# The core alone and all layers render in the fast suite; each layer alone (14 renders per architecture) in the slow.
@pytest.fixture(scope="module", params=[pytest.param(False, id="core-and-all"),
                                        pytest.param(True, id="each-layer", marks=pytest.mark.slow)])
def renders(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, template_repo: Path,
            spec: TemplateSpec) -> dict:
    out = tmp_path_factory.mktemp("layers")
    projects = {}
    for arch, track in ARCHITECTURES.items():
        for case, layers in layer_sets(spec, request.param).items():
            name = f"{arch}-{case}"
            answers = {"project_name": name, "track": track, "budget": "cpu", "hours": 1.0,
                       "data_source": "shakespeare", "license": "MIT", "author": "", "layers": layers}
            render(TemplateSource(str(template_repo), "HEAD"), out / name, answers)
            projects[arch, case] = (out / name, spec.derive(answers))
    return projects


def local_imports(source: str) -> set[str]:
    """The package's own modules that a module imports: `from .x import`, `from . import x`, at any depth."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
    return found


def graph_errors(package: Path, owner: dict[str, str], present: list[str], needs: dict[str, list[str]]) -> list[str]:
    """Imports that break the layering: the core imports no layer; a layer imports only the core and the layers it
    needs (directly or through them)."""
    def reach(layer: str) -> set[str]:
        seen, todo = set(), [layer]
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo += needs[name]
        return seen

    errors = []
    for path in sorted(package.glob("*.py")):
        mine = owner.get(path.stem)
        allowed = reach(mine) if mine else set()
        for imported in sorted(local_imports(path.read_text(encoding="utf-8"))):
            theirs = owner.get(imported)
            if theirs is not None and theirs not in allowed:
                errors.append(f"{path.name} ({mine or 'core'}) imports {imported} ({theirs} layer)")
            if theirs in (None, *present) and not (package / f"{imported}.py").is_file():
                errors.append(f"{path.name} imports {imported}, which this render does not have")
    return errors


def test_graph_errors_finds_a_core_module_importing_a_layer(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("from .serve import app\n", encoding="utf-8")
    (tmp_path / "serve.py").write_text("from .train import x\nfrom .missing import y\n", encoding="utf-8")
    errors = graph_errors(tmp_path, {"serve": "serve"}, ["serve"], {"serve": []})
    assert errors == ["serve.py imports missing, which this render does not have",
                      "train.py (core) imports serve (serve layer)"]


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_every_layer_case_renders_lints_and_keeps_the_import_graph(renders, spec: TemplateSpec, arch: str) -> None:
    layers = spec.catalog["layers"]
    owner = {module: name for name, layer in layers.items() for module in layer["modules"]}
    needs = {name: layer["needs"] for name, layer in layers.items()}
    cases = {case: project for (a, case), project in renders.items() if a == arch}
    ruff = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--line-length", "120",
                           "--select", "E,F", *(str(path) for path, _ in cases.values())],
                          capture_output=True, text=True)
    assert ruff.returncode == 0, ruff.stdout[-3000:]
    errors = []
    for case, (path, derived) in cases.items():
        present = derived["layer_list"]
        errors += [f"{case}: {e}" for e in graph_errors(path / derived["package_name"], owner, present, needs)]
        errors += [f"{case}: {leak}" for leak in absent_layer_words(path, layers, present)]
    assert not errors, "\n".join(errors)


def absent_layer_words(project: Path, layers: dict, present: list[str]) -> list[str]:
    """Words of the layers a render lacks (tracks/layers.yml `words`) in its Python files."""
    absent = {name: layer["words"] for name, layer in layers.items() if name not in present}
    leaks = []
    for path in sorted(project.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for name, words in absent.items():
            pattern = r"\b(" + "|".join(map(re.escape, words)) + r")\b"
            leaks += [f"{path.relative_to(project)}: {m.group(0)!r} ({name})" for m in re.finditer(pattern, text)]
    return leaks


def test_absent_layer_words_are_found(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("import uvicorn  # serve\nx = 'fastapi_like'\n", encoding="utf-8")
    layers = {"serve": {"words": ["uvicorn", "fastapi"]}}
    assert absent_layer_words(tmp_path, layers, []) == ["a.py: 'uvicorn' (serve)"]
    assert absent_layer_words(tmp_path, layers, ["serve"]) == []


def test_every_layer_case_imports_cleanly(renders) -> None:
    """Each render's package imports with every module (the command line's load_package), in one interpreter: the
    package names differ, so torch is imported once."""
    script = "\n".join([
        "import importlib, sys",
        *[f"sys.path.insert(0, {str(path)!r}); "
          f"importlib.import_module({derived['package_name'] + '.cli'!r}).load_package()"
          for path, derived in renders.values()],
    ])
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
