"""Executed notebook -> one self-contained HTML page (nbconvert with the ``specviz`` template).

The template (``templates/specviz``) extends nbconvert's ``lab`` template: it inlines the Vega
bundle once in the head, loads no require.js, MathJax, mermaid or widget manager, and sets a
Content-Security-Policy that forbids requests to any other host. Before rendering, the notebook
is cleaned for a static page:

- cells tagged :data:`LIVE_ONLY_TAG` (ipywidgets controls for JupyterLab) are removed;
- outputs only meant for a live kernel or for the report builder are dropped: the Vega loader
  (the head has the bundle), widget views (no kernel runs their callbacks), and published
  numbers (:mod:`specviz.report.publish`);
- code input and prompts are hidden: the report is for reading results.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter
from nbconvert.preprocessors import Preprocessor, TagRemovePreprocessor

from specviz.report.html import element, text_element
from specviz.report.publish import PUBLISH_MIMETYPE
from specviz.report.vega import LOADER_MIMETYPE, bundle_script

TEMPLATES_DIR = Path(__file__).parent / "templates"
TEMPLATE_NAME = "specviz"
LIVE_ONLY_TAG = "live-only"
WIDGET_VIEW_MIMETYPE = "application/vnd.jupyter.widget-view+json"
DROPPED_MIMETYPES = (LOADER_MIMETYPE, WIDGET_VIEW_MIMETYPE, PUBLISH_MIMETYPE)

# Scripts and styles are inline; vega needs eval for its expression language; images are data
# URLs (chart export); nothing may be fetched from anywhere.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; "
    "style-src 'unsafe-inline'; img-src data: blob:; font-src data:; connect-src 'none'; "
    "base-uri 'none'; form-action 'none'"
)


class DropLiveOutputs(Preprocessor):
    """Remove outputs that mean nothing in a static page, and the saved widget state."""

    def preprocess(self, nb, resources):
        nb.metadata.pop("widgets", None)
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code":
            cell.outputs = [
                out
                for out in cell.outputs
                if not any(m in out.get("data", {}) for m in DROPPED_MIMETYPES)
            ]
        return cell, resources


def html_exporter() -> HTMLExporter:
    exporter = HTMLExporter(
        extra_template_basedirs=[str(TEMPLATES_DIR)],
        template_name=TEMPLATE_NAME,
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
    )
    exporter.register_preprocessor(
        TagRemovePreprocessor(remove_cell_tags={LIVE_ONLY_TAG}, enabled=True), enabled=True
    )
    exporter.register_preprocessor(DropLiveOutputs(enabled=True), enabled=True)
    return exporter


def contents_bar(contents: Sequence[tuple[str, str]]) -> str:
    """A contents bar (``<nav>``, sticky at the top of the page): one link per (anchor id,
    label); empty when there is nothing to link."""
    if not contents:
        return ""
    links = "".join(text_element("a", label, href=f"#{anchor}") for anchor, label in contents)
    return element("nav", links, class_="specviz-contents", aria_label="Contents")


def notebook_to_html(
    nb: nbformat.NotebookNode, title: str, contents: Sequence[tuple[str, str]] = ()
) -> str:
    """Render an executed notebook as one self-contained HTML page titled ``title``, with a
    contents bar linking ``contents`` (anchor id, label) when given."""
    from specviz import __version__

    nb = nbformat.from_dict(nb)  # the exporter's preprocessors edit the notebook: work on a copy
    nb.metadata["title"] = title
    resources = {
        "specviz": {
            "csp": CONTENT_SECURITY_POLICY,
            "version": __version__,
            "vega_script": bundle_script(),
            "contents": contents_bar(contents),
        }
    }
    body, _ = html_exporter().from_notebook_node(nb, resources=resources)
    return body
