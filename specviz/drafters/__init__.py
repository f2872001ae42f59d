"""Drafters behind one contract (:class:`~specviz.drafters.base.Drafter`).

Their factory, :func:`specviz.drafter_factory.build_drafter`, lives outside this folder: it also
builds the hybrid drafters (:mod:`specviz.hybrid`), which build on this package, so it sits
above both (the layering in ``tests/test_import_graph.py``).
"""

from __future__ import annotations

from specviz.drafters.base import Drafter, Proposal
from specviz.drafters.draft_model import DraftModelDrafter
from specviz.drafters.layer_skip import LayerSkipError, SelfDrafter
from specviz.drafters.prompt_lookup import PromptLookupDrafter
from specviz.drafters.suffix import SuffixDrafter

__all__ = [
    "DraftModelDrafter",
    "Drafter",
    "LayerSkipError",
    "PromptLookupDrafter",
    "Proposal",
    "SelfDrafter",
    "SuffixDrafter",
]
