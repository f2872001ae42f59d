"""Build hook: a wheel carries the checkout's ``data/`` and ``notebooks/`` (see specviz/resources.py).

Everything else about the package is in ``pyproject.toml``.
"""

from __future__ import annotations

import runpy
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
RESOURCES = runpy.run_path(str(ROOT / "specviz" / "resources.py"))  # no imports beyond pathlib


class BuildPyShipped(build_py):
    """Copy the shipped top-level files into ``specviz/_shipped/`` of the build."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads them from the checkout
            return
        for name, pattern in RESOURCES["SHIPPED"].items():
            files = sorted((ROOT / name).glob(pattern))
            if not files:
                raise SystemExit(f"{ROOT / name} has no {pattern} files to ship")
            target = Path(self.build_lib) / "specviz" / RESOURCES["PACKAGED"] / name
            target.mkdir(parents=True, exist_ok=True)
            for file in files:
                shutil.copy2(file, target / file.name)


setup(cmdclass={"build_py": BuildPyShipped})
