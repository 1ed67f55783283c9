"""Wheel build hook: the template files the wheel carries get their own copy of generator/formulas.py.

copier.yml loads generator/formulas.py as a Jinja extension by its path in the template repository, so the
bundled template (generator/_bundled/) needs the file beside copier.yml, while the generator package imports the
same file as `generator.formulas`. Hatch's force-include of a file inside the project moves it out of the package
instead of copying it, so the bundled copy is included from a temporary file outside the project.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class BundleFormulas(BuildHookInterface):
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="llm-blueprint-build-")
        copy = Path(self._tmp.name) / "formulas.py"
        shutil.copy2(Path(self.root) / "generator" / "formulas.py", copy)
        build_data["force_include"][str(copy)] = "generator/_bundled/generator/formulas.py"

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        self._tmp.cleanup()
