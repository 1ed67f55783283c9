"""Wheel build hook: the template files the wheel carries get their own copies of the Jinja extension modules.

copier.yml loads generator/formulas.py and generator/roadmap_text.py as Jinja extensions by their paths in the
template repository, so the bundled template (generator/_bundled/) needs those files beside copier.yml, while the
generator package imports the same files as `generator.formulas` and `generator.roadmap_text`. Hatch's
force-include of a file inside the project moves it out of the package instead of copying it, so the bundled
copies are included from temporary files outside the project. Which modules: the paths copier.yml names.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class BundleFormulas(BuildHookInterface):
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="llm-blueprint-build-")
        root = Path(self.root)
        copier_yml = (root / "copier.yml").read_text(encoding="utf-8")
        for rel in re.findall(r"^\s*-\s*(generator/\w+\.py):\w+\s*$", copier_yml, re.MULTILINE):
            copy = Path(self._tmp.name) / Path(rel).name
            shutil.copy2(root / rel, copy)
            build_data["force_include"][str(copy)] = f"generator/_bundled/{rel}"

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        self._tmp.cleanup()
