"""Check a notebook's parameters against its ``parameters`` cell before any kernel starts.

The cell's literal assignments (``n_boot = 1000``) declare each parameter and, by the type of
its default, the type a value must have: ``int`` (a bool is not an int here), ``float`` (an int
is fine), ``str``, ``bool``, or a ``list`` of strings. :data:`MINIMUM` adds lower bounds. A
wrong name, type or value raises :class:`ParameterError` naming the notebook, the parameter,
what it takes and what it got, instead of a ``TypeError`` deep inside a cell.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping

import nbformat

from specviz.report.errors import ReportError

PARAMETERS_TAG = "parameters"

#: lower bounds of numeric parameters, with the reason
MINIMUM: dict[str, tuple[int, str]] = {
    "n_boot": (100, "bootstrap resamples, for stable intervals"),
    "requests_per_category": (1, "requests shown per category"),
}


class ParameterError(ReportError):
    """A notebook parameter has an unknown name, the wrong type, or a value out of range."""


def parameters_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The one cell tagged ``parameters``."""
    tagged = [c for c in nb.cells if PARAMETERS_TAG in c.metadata.get("tags", [])]
    if len(tagged) != 1:
        raise ReportError(f"the notebook has {len(tagged)} cells tagged {PARAMETERS_TAG!r}")
    return tagged[0]


def declared_parameters(nb: nbformat.NotebookNode) -> dict[str, object]:
    """Each parameter's default value, from the literal assignments of the parameters cell."""
    declared: dict[str, object] = {}
    for node in ast.parse(parameters_cell(nb).source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name):
                try:
                    declared[target.id] = ast.literal_eval(node.value)
                except ValueError:  # not a literal: declared, any type accepted
                    declared[target.id] = None
    return declared


def _type_name(default: object) -> str:
    if isinstance(default, list):
        return "a list of strings"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        type(default), type(default).__name__
    )


def _fits(value: object, default: object) -> bool:
    if default is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, int | float)
    if isinstance(default, list):
        return isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
    return isinstance(value, type(default))


def check_parameters(
    nb: nbformat.NotebookNode, parameters: Mapping[str, object], *, name: str
) -> None:
    """Raise :class:`ParameterError` unless every parameter is declared, typed and in range.

    No parameters: nothing to check (the notebook needs no ``parameters`` cell then).
    """
    if not parameters:
        return
    declared = declared_parameters(nb)
    for key, value in parameters.items():
        if key not in declared:
            raise ParameterError(
                f"notebook {name!r} has no parameter {key!r} (it takes: {', '.join(declared)})"
            )
        default = declared[key]
        if not _fits(value, default):
            raise ParameterError(
                f"notebook {name!r}: parameter {key} must be {_type_name(default)} "
                f"(like {default!r}), got {value!r}"
            )
        if key in MINIMUM and value < MINIMUM[key][0]:  # type: ignore[operator]
            least, what = MINIMUM[key]
            raise ParameterError(
                f"notebook {name!r}: {key} must be at least {least} ({what}), got {value!r}"
            )
