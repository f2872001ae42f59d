"""Numbers a notebook publishes, read back from the executed notebook (scrapbook-style).

``publish(name, value)`` displays an output whose data carries :data:`PUBLISH_MIMETYPE`
(``{"name": ..., "value": ...}``); :func:`read_published` collects them from a notebook that
papermill executed. The report builder takes its summary from them and the tests check them
against :mod:`specviz.metrics`. The exporter drops these outputs from the HTML report.
"""

from __future__ import annotations

import json
import math
from typing import Any

import nbformat

from specviz.errors import SpecvizError

PUBLISH_MIMETYPE = "application/vnd.specviz.published+json"


class PublishError(SpecvizError):
    """A value cannot be published (not JSON-like) or a published name is missing."""


def _jsonable(value: Any, name: str) -> Any:
    """``value`` as plain JSON data; NaN and infinities become null (JSON has neither)."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _jsonable(value.item(), name)
    if isinstance(value, dict):
        return {str(k): _jsonable(v, name) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, name) for v in value]
    raise PublishError(f"cannot publish {name!r}: {type(value).__name__} is not JSON data")


class Published:
    """One published value; displaying it records it in the notebook's outputs."""

    def __init__(self, name: str, value: Any) -> None:
        self.name = name
        self.value = _jsonable(value, name)
        json.dumps(self.value, allow_nan=False)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return {
            PUBLISH_MIMETYPE: {"name": self.name, "value": self.value},
            "text/plain": f"published {self.name}",
        }


def publish(name: str, value: Any) -> None:
    """Record ``value`` under ``name`` in the running notebook's outputs."""
    from IPython.display import display

    display(Published(name, value))


def read_published(nb: nbformat.NotebookNode) -> dict[str, Any]:
    """Every value published in an executed notebook, by name (a later value wins)."""
    found: dict[str, Any] = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if PUBLISH_MIMETYPE in data:
                item = data[PUBLISH_MIMETYPE]
                found[item["name"]] = item["value"]
    return found
