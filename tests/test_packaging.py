"""A wheel built from the checkout carries the built-in suite and the report notebooks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from specviz.resources import SHIPPED

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "specviz", *SHIPPED)

CHECK = """
import sys
from pathlib import Path
import specviz
from specviz.report.builder import (
    REPORT_NOTEBOOKS, SERVED_NOTEBOOKS, default_notebooks_dir, read_notebook
)
from specviz.workloads import builtin_prompts
target = Path(sys.argv[1]).resolve()
assert Path(specviz.__file__).resolve().is_relative_to(target), specviz.__file__
assert default_notebooks_dir().is_relative_to(target), default_notebooks_dir()
for name in REPORT_NOTEBOOKS + SERVED_NOTEBOOKS:
    read_notebook(default_notebooks_dir() / f"{name}.py")
print(len(builtin_prompts()))
"""


def test_an_installed_wheel_finds_the_builtin_suite_and_report_notebooks(tmp_path):
    tree = tmp_path / "src"
    for name in SOURCE:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            tree.mkdir(exist_ok=True)
            shutil.copy2(src, tree / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), "."],
        cwd=tree,
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("specviz-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for name, pattern in SHIPPED.items():
        shipped = sorted(p.name for p in (ROOT / name).glob(pattern))
        assert shipped and all(f"specviz/_shipped/{name}/{f}" in names for f in shipped)
    assert "specviz/lean/bf16_kernels.c" in names  # the bf16 kernel's source, built on first use

    target = tmp_path / "site"
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run(
        [sys.executable, "-c", CHECK, str(target)],
        cwd=tmp_path,  # not the checkout: nothing may come from it
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == len((ROOT / "data" / "question.jsonl").read_text().splitlines())
