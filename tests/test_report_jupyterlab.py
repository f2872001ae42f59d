"""In JupyterLab, with no internet: a jupytext ``.py`` notebook opens as a notebook, runs on the
``specviz`` kernel, and its altair charts draw (``specviz.report.enable_charts``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from loopback import free_port
from report_chromium import PageReport, browser, record, require_chromium

NOTEBOOK = """\
# %% tags=["parameters"]
n = 3

# %%
import altair as alt
import polars as pl

from specviz.report import enable_charts

enable_charts()

# %%
alt.Chart(pl.DataFrame({"x": list(range(n)), "y": [1, 3, 2]})).mark_bar().encode(x="x:O", y="y:Q")

# %%
texts = ["<script>alert(1)</script>", "<img src=x onerror=alert(2)>", "c"]
alt.Chart(pl.DataFrame({"x": list(range(n)), "t": texts})).mark_text().encode(x="x:O", text="t:N")
"""

JUPYTER = Path(sys.executable).with_name("jupyter")


@pytest.mark.slow
def test_charts_draw_offline_in_jupyterlab(tmp_path: Path) -> None:
    chromium = require_chromium()
    root = tmp_path / "root"
    root.mkdir()
    (root / "charts.py").write_text(NOTEBOOK)
    home = tmp_path / "home"
    env = {
        **os.environ,
        "HOME": str(home),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "IPYTHONDIR": str(home / "ipython"),
    }
    # the kernel the notebooks name, registered for this test only (the Makefile uses --sys-prefix)
    subprocess.run(
        [sys.executable, "-m", "ipykernel", "install", "--user", "--name", "specviz"],
        env=env,
        check=True,
        capture_output=True,
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    lab = subprocess.Popen(
        [
            str(JUPYTER),
            "lab",
            "--no-browser",
            "--allow-root",
            f"--port={port}",
            "--ip=127.0.0.1",
            "--IdentityProvider.token=t",
            f"--ServerApp.root_dir={root}",
            "--LabApp.expose_app_in_browser=True",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{base}/api?token=t", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        report = PageReport()
        with browser(chromium, loopback=True) as cdp:
            for domain in ("Page", "Runtime", "Log", "Network"):
                cdp.send(f"{domain}.enable")
            cdp.send("Page.navigate", {"url": f"{base}/lab?token=t"})

            def wait_for(expression: str, seconds: float) -> object:
                end = time.monotonic() + seconds
                value = None
                while time.monotonic() < end:
                    cdp.pump(0.5)
                    try:
                        value = cdp.evaluate(expression)
                    except RuntimeError:
                        continue
                    if value:
                        return value
                return value

            assert wait_for("!!(window.jupyterapp && window.jupyterapp.shell)", 90)
            opened = wait_for(
                "jupyterapp.commands.execute('docmanager:open', "
                "{path: 'charts.py', factory: 'Jupytext Notebook'}).then(() => true)",
                30,
            )
            assert opened is not None
            wait_for("!!document.querySelector('.jp-Notebook .jp-Cell')", 60)
            cdp.evaluate("jupyterapp.commands.execute('notebook:run-all-cells')")
            drawn = wait_for(
                "document.querySelectorAll('.specviz-chart svg.marks').length >= 2 && "
                "document.querySelectorAll('.specviz-chart svg.marks').length",
                150,
            )
            cells = cdp.evaluate("document.querySelectorAll('.jp-Notebook .jp-Cell').length")
            for event in cdp.events:
                record(report, event)
        assert cells == 4  # the .py file opened as a notebook of 4 cells
        assert drawn == 2
        assert report.dialogs == []
        outside = [u for u in report.external_requests if not u.startswith(base)]
        assert outside == []
    finally:
        lab.terminate()
        try:
            lab.wait(15)
        except subprocess.TimeoutExpired:
            lab.kill()
            lab.wait()
