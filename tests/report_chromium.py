"""Open an HTML file in headless Chromium with networking off and report what happened.

Driven over the Chrome DevTools Protocol (``websocket-client``, a jupyter_server dependency):

- networking is off three ways: a dead proxy, a host resolver that resolves nothing, and
  DevTools' offline network emulation; every request the page makes is recorded anyway, so a
  test can assert that none went to another host;
- JavaScript exceptions, console errors and browser log errors (CSP violations, failed loads)
  are collected;
- a JavaScript dialog (``alert(1)`` from an injected script) is recorded and dismissed;
- the page is polled until every chart container holds Vega's drawing (``svg.marks`` or
  ``canvas.marks``) or a timeout passes.

Tests that need Chromium call :func:`require_chromium`: it skips when Chromium is absent, except
in CI (``CI=true``), where a missing browser is a failure.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--proxy-server=http://127.0.0.1:9",
    "--remote-debugging-port=0",
    "--remote-allow-origins=*",
]

CHART_STATE_JS = """
(() => {
  const charts = Array.from(document.querySelectorAll(%s));
  const drawn = charts.filter(c => c.querySelector('svg.marks, canvas.marks'));
  const failed = charts.filter(c => c.classList.contains('specviz-chart-error'));
  return JSON.stringify({total: charts.length, drawn: drawn.length,
                         failed: failed.map(c => c.textContent)});
})()
"""


def chromium_path() -> str | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def require_chromium() -> str:
    path = chromium_path()
    if path is None:
        message = "Chromium is not installed (Debian: apt-get install -y chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + "; CI must install it")
        pytest.skip(message)
    return path


@dataclass
class PageReport:
    charts_total: int = 0
    charts_drawn: int = 0
    chart_failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    evaluated: dict[str, Any] = field(default_factory=dict)

    @property
    def external_requests(self) -> list[str]:
        return [u for u in self.requests if not u.startswith(LOCAL_SCHEMES)]


class _Cdp:
    def __init__(self, ws_url: str) -> None:
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=60, suppress_origin=True)
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params or {}}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self._event(msg)

    def pump(self, seconds: float) -> None:
        """Read events for ``seconds``."""
        import websocket

        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.ws.settimeout(left)
            try:
                self._event(json.loads(self.ws.recv()))
            except websocket.WebSocketTimeoutException:
                break
        self.ws.settimeout(60)

    def _event(self, msg: dict[str, Any]) -> None:
        if "method" not in msg:
            return
        self.events.append(msg)
        if msg["method"] == "Page.javascriptDialogOpening":
            self.ws.send(
                json.dumps(
                    {
                        "id": next(self.ids),
                        "method": "Page.handleJavaScriptDialog",
                        "params": {"accept": True},
                    }
                )
            )

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return result.get("result", {}).get("value")

    def close(self) -> None:
        self.ws.close()


@contextlib.contextmanager
def browser(chromium: str, *, loopback: bool = False):
    """A headless Chromium with networking off (dead proxy, no name resolution); yields CDP.

    ``loopback`` lets it reach servers on 127.0.0.1 (a local JupyterLab), nothing else.
    """
    profile = tempfile.mkdtemp(prefix="specviz-chromium-")
    try:
        env = {**os.environ, "HOME": profile, "TMPDIR": profile}
        rules = "MAP * ~NOTFOUND" + (", EXCLUDE 127.0.0.1" if loopback else "")
        proc = subprocess.Popen(
            [
                chromium,
                *FLAGS,
                f"--host-resolver-rules={rules}",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
        try:
            port = None
            deadline = time.monotonic() + 30
            while port is None and time.monotonic() < deadline:
                line = proc.stderr.readline()
                if not line and proc.poll() is not None:
                    raise RuntimeError(f"Chromium exited with {proc.returncode}")
                m = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
                if m:
                    port = int(m.group(1))
            if port is None:
                raise RuntimeError("Chromium did not start its DevTools server in 30 s")
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
                pages = [t for t in json.load(r) if t["type"] == "page"]
            cdp = _Cdp(pages[0]["webSocketDebuggerUrl"])
            try:
                yield cdp
            finally:
                cdp.close()
        finally:
            _stop_group(proc)
    finally:
        _remove_profile(Path(profile))


def _stop_group(proc: subprocess.Popen[str]) -> None:
    """Stop Chromium and every helper it spawned (renderer, GPU, crashpad: one process group).

    The helpers outlive the browser process briefly and keep writing into the profile, so the
    whole group is signalled and waited for before the profile is removed.
    """
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(wait_s)
        deadline = time.monotonic() + wait_s
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not _group_alive(proc.pid):
            break
    if proc.stderr:
        proc.stderr.close()


def _group_alive(pgid: int) -> bool:
    """Whether a live (non-zombie) process is left in group ``pgid``.

    Zombies are skipped: in a container whose init does not reap, orphaned helpers stay zombies
    and ``killpg(pgid, 0)`` would report them alive forever.
    """
    proc_dir = Path("/proc")
    if not proc_dir.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for stat in proc_dir.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def _remove_profile(profile: Path) -> None:
    """Remove the throwaway profile; a file still being flushed gets a few retries."""
    for _ in range(20):
        try:
            shutil.rmtree(profile)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.25)
    shutil.rmtree(profile, ignore_errors=True)


def open_offline(
    path: Path,
    *,
    chart_selector: str = ".specviz-chart",
    timeout_s: float = 60.0,
    settle_s: float = 1.0,
    evaluate: dict[str, str] | None = None,
    screenshot: Path | None = None,
    viewport: tuple[int, int] | None = None,
) -> PageReport:
    """Load ``path`` with networking off, wait for its charts, and report what happened.

    ``evaluate`` maps names to JavaScript expressions evaluated once the charts are drawn; their
    values land in :attr:`PageReport.evaluated`. ``screenshot`` saves a full-page PNG there.
    ``viewport``: the window's (width, height) in CSS pixels (default: Chromium's).
    """
    chromium = require_chromium()
    report = PageReport()
    with browser(chromium) as cdp:
        for domain in ("Page", "Runtime", "Log", "Network"):
            cdp.send(f"{domain}.enable")
        if viewport is not None:
            width, height = viewport
            cdp.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            )
        cdp.send(
            "Network.emulateNetworkConditions",
            {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
        )
        cdp.send("Page.navigate", {"url": path.resolve().as_uri()})
        deadline = time.monotonic() + timeout_s
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            cdp.pump(0.25)
            try:
                state = json.loads(cdp.evaluate(CHART_STATE_JS % json.dumps(chart_selector)))
            except (RuntimeError, TypeError):
                continue  # the page is still navigating
            loaded = any(e["method"] == "Page.loadEventFired" for e in cdp.events)
            done = state["drawn"] + len(state["failed"]) >= state["total"]
            if loaded and done:
                break
        cdp.pump(settle_s)
        report.charts_total = state.get("total", 0)
        report.charts_drawn = state.get("drawn", 0)
        report.chart_failures = state.get("failed", [])
        for name, expression in (evaluate or {}).items():
            report.evaluated[name] = cdp.evaluate(expression)
        if screenshot is not None:
            shot = cdp.send(
                "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}
            )
            screenshot.write_bytes(base64.b64decode(shot["data"]))
        cdp.pump(0.2)
        for event in cdp.events:
            record(report, event)
    return report


#: The page offset (CSS pixels from the top of the document) of the first chart Vega drew, and
#: the window's height: the chart is in screen n when top < n * height.
FIRST_CHART_JS = """
(() => {
  const c = Array.from(document.querySelectorAll('.specviz-chart'))
    .find(c => c.querySelector('svg.marks, canvas.marks'));
  return c ? JSON.stringify({top: c.getBoundingClientRect().top + window.scrollY,
                             height: window.innerHeight, width: window.innerWidth,
                             id: c.id}) : null;
})()
"""


def record(report: PageReport, event: dict[str, Any]) -> None:
    method, params = event["method"], event.get("params", {})
    if method == "Runtime.exceptionThrown":
        details = params["exceptionDetails"]
        text = details.get("exception", {}).get("description") or details.get("text")
        report.errors.append(f"exception: {text}")
    elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
        args = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
        report.errors.append(f"console.{params['type']}: {args}")
    elif method == "Runtime.consoleAPICalled" and params["type"] == "warning":
        args = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
        report.warnings.append(args)
    elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
        entry = params["entry"]
        report.errors.append(f"log: {entry.get('text')} {entry.get('url', '')}".strip())
    elif method == "Network.requestWillBeSent":
        report.requests.append(params["request"]["url"])
    elif method == "Page.javascriptDialogOpening":
        report.dialogs.append(f"{params.get('type')}: {params.get('message')}")
