"""The generated README follows the layers: a section per present layer (template/_readme/<layer>.md.jinja), its
files in the Layout, the absent ones in "Layers you can add", and only the commands the repository has."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from generator.render import render
from generator.source import TemplateSource
from generator.spec import TemplateSpec
from tests.conftest import ROOT, commit_and_tag, make_template_repo

PARTIALS = ROOT / "template" / "_readme"
# The core alone; every layer (None); and a server without fine-tuning or export on 8 GPUs without distributed.
CASES = {"core": ("beginner", "cpu", []), "all": ("researcher", "cluster", None),
         "some": ("practitioner", "node-8gpu", ["serve", "quantize"])}


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory, template_repo: Path, spec: TemplateSpec) -> dict:
    out = tmp_path_factory.mktemp("readme")
    found = {}
    for case, (track, budget, layers) in CASES.items():
        answers = {"project_name": f"rd-{case}", "track": track, "budget": budget, "hours": 2.0,
                   "data_source": "shakespeare", "license": "MIT", "author": "",
                   "layers": list(spec.catalog["layers"]) if layers is None else layers,
                   **({"nodes": 2} if budget == "cluster" else {})}
        render(TemplateSource(str(template_repo), "HEAD"), out / case, answers)
        found[case] = (out / case, spec.derive(answers))
    return found


def test_every_layer_has_one_readme_section_file(spec: TemplateSpec) -> None:
    assert sorted(p.name for p in PARTIALS.iterdir()) == sorted(f"{name}.md.jinja" for name in spec.catalog["layers"])


def layout(readme: str) -> list[str]:
    """The paths the Layout section's block names, in order."""
    block = readme.split("## Layout\n\n```\n", 1)[1].split("```", 1)[0]
    return [line.split()[0] for line in block.splitlines() if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize("case", list(CASES))
def test_readme_names_what_the_repository_has(projects, spec: TemplateSpec, case: str) -> None:
    project, derived = projects[case]
    readme = (project / "README.md").read_text(encoding="utf-8")
    layers, present = spec.catalog["layers"], derived["layer_list"]
    assert not (project / "_readme").exists()

    for name, layer in layers.items():
        assert (f"\n## {layer['title']}\n" in readme) == (name in present), name
        assert (f"`llm-blueprint add {name}` |" in readme) == (name not in present), name
    assert ("## Layers you can add" in readme) == (len(present) < len(layers))

    package = derived["package_name"]
    modules = {f"{package}/{p.name}" for p in (project / package).glob("*.py") if p.name not in ("__init__.py", "__main__.py")}
    scripts = {f"scripts/{p.name}" for p in (project / "scripts").glob("*")}
    named = [p for p in layout(readme) if p.startswith((f"{package}/", "scripts/"))]
    assert len(named) == len(set(named)) and set(named) == modules | scripts

    registered = {m.group(1) for p in (project / package).glob("*.py")
                  for m in re.finditer(r'@command\(\s*"([a-z-]+)"', p.read_text(encoding="utf-8"))}
    said = set(re.findall(rf"(?<![\w-]){re.escape(derived['command'])} ([a-z][a-z-]*)", readme))
    assert said and said <= registered, said - registered


def test_a_section_changed_in_a_release_reaches_the_project_on_update(cli, tmp_path: Path) -> None:
    """README.md includes its sections by path from the template's root: `new` and `update` render them alike."""
    repo = make_template_repo(tmp_path / "template")
    dest = tmp_path / "proj"
    code, _, err = cli("new", str(dest), "--yes", "--template", str(repo), "--layers", "chat")
    assert code == 0, err
    assert "\n## Chat\n" in (dest / "README.md").read_text() and not (dest / "_readme").exists()
    partial = repo / "template" / "_readme" / "chat.md.jinja"
    partial.write_text(partial.read_text() + "\nA line released in v2.\n")
    commit_and_tag(repo, "v2", "v2.0.0")
    code, _, err = cli("update", str(dest))
    assert code == 0, err
    assert "A line released in v2." in (dest / "README.md").read_text()
    assert yaml.safe_load((dest / ".copier-answers.yml").read_text())["layers"] == ["chat"]
