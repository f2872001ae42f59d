"""Offline Vega: one inlined JavaScript bundle per page and a chart renderer that uses it.

Why not altair's own renderers (see ``docs/reports.md``):

- the default ``html`` renderer loads Vega, Vega-Lite and vega-embed from a CDN, so an exported
  notebook shows no chart without internet;
- ``template="inline"`` inlines the whole 0.9 MB bundle in *every* chart, and the second chart on
  a page then fails ("Identifier has already been declared");
- both write the chart specification into a ``<script>`` block with plain ``json.dumps``: a data
  value such as ``</script><script>alert(1)</script>`` (prompt or model output text in a
  tooltip) ends the script block and runs. :func:`script_json` escapes ``<``, ``>`` and ``&``.

So specviz registers its own altair renderer, ``specviz``: each chart is a ``<div>`` plus a small
script that calls the page's global ``vegaEmbed``. The global comes from :func:`bundle_script`,
vl-convert's Vega + Vega-Lite + vega-embed bundle wrapped in a function scope (its top-level
``const`` declarations would otherwise clash) and guarded so that loading it twice is harmless.
The report template puts it once in the page head; in a live JupyterLab session
:func:`enable_charts` displays it once as the output of the notebook's setup cell (marked with
:data:`LOADER_MIMETYPE` so the report exporter drops that copy).
"""

from __future__ import annotations

import functools
import json
import uuid
from typing import Any

import altair as alt

RENDERER = "specviz"
LOADER_MIMETYPE = "application/vnd.specviz.vega-loader+json"
CHART_CLASS = "specviz-chart"

# Charts are drawn as SVG (sharp when zoomed and printed, inspectable in tests). The "editor"
# action would post the chart to vega.github.io: off, as is everything but the image export.
EMBED_OPTIONS: dict[str, Any] = {
    "renderer": "svg",
    "actions": {"export": True, "source": False, "compiled": False, "editor": False},
}

_JSON_SCRIPT_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def script_json(value: Any) -> str:
    """JSON text that is safe inside an HTML ``<script>`` element and still valid JavaScript.

    ``<``, ``>`` and ``&`` can only occur inside JSON strings, where their ``\\uXXXX`` escapes
    mean the same characters; without them a string holding ``</script>`` closes the element.
    """
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    for char, escape in _JSON_SCRIPT_ESCAPES.items():
        text = text.replace(char, escape)
    return text


def inline_script(source: str) -> str:
    """JavaScript source made safe to place between ``<script>`` and ``</script>``.

    ``</script`` and ``<!--`` can only occur inside strings, regular expressions or comments of
    the bundle; ``<\\/`` and ``<\\!`` mean the same there.
    """
    out = source.replace("</script", "<\\/script").replace("</SCRIPT", "<\\/SCRIPT")
    return out.replace("<!--", "<\\!--")


@functools.cache
def vega_bundle() -> str:
    """vl-convert's JavaScript bundle of vega-embed, Vega-Lite and Vega (~0.9 MB, ~2 s).

    It defines ``window.vegaEmbed``, ``window.vega`` and ``window.vegaLite``. The Vega-Lite
    version matches the one altair writes specifications for.
    """
    import vl_convert

    major_minor = ".".join(alt.VEGALITE_VERSION.split(".")[:2])
    return vl_convert.javascript_bundle(vl_version=major_minor)


@functools.cache
def bundle_script() -> str:
    """A complete ``<script>`` element that defines the Vega globals once per page."""
    return (
        '<script type="text/javascript">\n'
        f"/* vega-embed {alt.VEGAEMBED_VERSION}, Vega-Lite {alt.VEGALITE_VERSION}, "
        f"Vega {alt.VEGA_VERSION}: bundled by vl-convert */\n"
        "(function () {\n"
        'if (typeof window.vegaEmbed === "function") { return; }\n'
        f"{inline_script(vega_bundle())}\n"
        "})();\n"
        "</script>"
    )


def chart_html(spec: dict[str, Any], embed_options: dict[str, Any] | None = None) -> str:
    """HTML for one chart: a container and a script that draws ``spec`` into it."""
    div_id = f"specviz-chart-{uuid.uuid4().hex}"
    options = {**EMBED_OPTIONS, **(embed_options or {})}
    return (
        f'<div id="{div_id}" class="{CHART_CLASS}"></div>\n'
        '<script type="text/javascript">\n'
        "(function (spec, options) {\n"
        f'  var el = document.getElementById("{div_id}");\n'
        '  if (typeof window.vegaEmbed !== "function") {\n'
        '    el.textContent = "This chart needs the Vega bundle: open the exported specviz report, "'
        ' + "or run specviz.report.enable_charts() in the notebook first.";\n'
        '    el.classList.add("specviz-chart-error");\n'
        "    return;\n"
        "  }\n"
        "  window.vegaEmbed(el, spec, options).catch(function (err) {\n"
        '    el.textContent = "Chart error: " + err.message;\n'
        '    el.classList.add("specviz-chart-error");\n'
        '    console.error("specviz chart error", err);\n'
        "  });\n"
        f"}})({script_json(spec)}, {script_json(options)});\n"
        "</script>"
    )


def render(spec: dict[str, Any], **metadata: Any) -> dict[str, str]:
    """The ``specviz`` altair renderer: a mimebundle holding :func:`chart_html`."""
    embed_options = metadata.get("embed_options") or None
    title = spec.get("title")
    label = f"<specviz chart: {title}>" if isinstance(title, str) else "<specviz chart>"
    return {"text/html": chart_html(spec, embed_options), "text/plain": label}


class VegaLoader:
    """Displays :func:`bundle_script` once in a notebook (JupyterLab runs trusted output scripts)."""

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return {
            "text/html": bundle_script(),
            "text/plain": "Vega charts enabled (offline bundle loaded).",
            LOADER_MIMETYPE: {"vega_lite": alt.VEGALITE_VERSION},
        }


def register_renderer() -> None:
    """Register and enable the ``specviz`` renderer (idempotent)."""
    if RENDERER not in alt.renderers.names():
        alt.renderers.register(RENDERER, render)
    alt.renderers.enable(RENDERER)


def enable_charts() -> VegaLoader:
    """Make altair charts render offline in this kernel; display the result once per notebook.

    The returned object's output carries the Vega bundle for live JupyterLab sessions; the report
    exporter removes that output (it puts the bundle in the page head once instead).
    """
    register_renderer()
    return VegaLoader()
