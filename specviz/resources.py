"""Files specviz ships beside its code: the built-in prompt suite and the report notebooks.

In a source checkout (the README's editable install) they are ``data/`` and ``notebooks/`` at the
repository root, where users read and edit them. A built wheel (``pip install .``,
``pip install git+URL``) carries copies under ``specviz/_shipped/``: ``setup.py`` copies them
there at build time. :func:`shipped_dir` is the one lookup for both layouts.
"""

from __future__ import annotations

from pathlib import Path

#: Top-level directories of the checkout that a wheel carries, with the files each one ships.
SHIPPED = {"data": "*.json*", "notebooks": "*.py"}
PACKAGED = "_shipped"


def shipped_dir(name: str) -> Path:
    """``name`` (a key of :data:`SHIPPED`) inside the installed wheel, else in the checkout."""
    if name not in SHIPPED:
        raise KeyError(f"{name!r} is not shipped; shipped: {', '.join(SHIPPED)}")
    package = Path(__file__).resolve().parent
    packaged = package / PACKAGED / name
    return packaged if packaged.is_dir() else package.parent / name
