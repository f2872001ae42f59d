"""What each drafter and policy kind supports, said once; every caller asks here.

A drafter kind declares whether it has a batched version, whether a stop rule can end its draft
early (it drafts with a distribution), and whether its cost can be measured apart from the
target's (a separate draft, not the target's own layers). A policy kind declares whether it has
a batched version and whether it stops drafts early (so needs such a drafter). The config checks
(:class:`specviz.config.RunConfig`), the batched runner's refusal before any model loads
(:func:`specviz.batch.runner.check_batchable`), the batch drafter factory
(:func:`specviz.batch.drafters.build_batch_drafter`) and the study planner
(:mod:`specviz.study.units`) all read these tables, and refuse with the messages below.

Sampling is not a capability: every drafter samples (a drafter without a distribution is
verified with q = one-hot, :mod:`specviz.verify`), and so every kind supports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class DrafterSupports:
    """What one drafter kind supports.

    ``batched``: it has a batched version; else ``unbatched_because`` says why not.
    ``stop_rules``: it drafts with a distribution, so a stop rule (confidence, svip) can end
    its draft early. ``own_cost``: what it costs can be measured apart from the target (a
    self-drafter runs the target's own layers, so the calibration cannot isolate it).
    """

    batched: bool
    stop_rules: bool
    own_cost: bool
    unbatched_because: str = ""


@dataclass(frozen=True)
class PolicySupports:
    """What one policy kind supports: ``batched`` (else ``unbatched_because``), and
    ``stops_drafts``: it ends drafts early with a stop rule, so needs a drafter whose
    ``stop_rules`` holds."""

    batched: bool
    stops_drafts: bool
    unbatched_because: str = ""


DRAFTER_SUPPORTS: Mapping[str, DrafterSupports] = MappingProxyType(
    {
        "none": DrafterSupports(batched=True, stop_rules=False, own_cost=True),
        "model": DrafterSupports(batched=True, stop_rules=True, own_cost=True),
        "prompt-lookup": DrafterSupports(batched=True, stop_rules=False, own_cost=True),
        "layer-skip": DrafterSupports(batched=True, stop_rules=True, own_cost=False),
        "component-skip": DrafterSupports(
            batched=False,
            stop_rules=True,
            own_cost=False,
            unbatched_because="it drafts on a hybrid target's recurrent state",
        ),
        "suffix": DrafterSupports(
            batched=False,
            stop_rules=False,
            own_cost=True,
            unbatched_because="its memory crosses requests in stream order",
        ),
    }
)

POLICY_SUPPORTS: Mapping[str, PolicySupports] = MappingProxyType(
    {
        "constant": PolicySupports(batched=True, stops_drafts=False),
        "heuristic": PolicySupports(batched=True, stops_drafts=False),
        "heuristic-per-request": PolicySupports(batched=True, stops_drafts=False),
        "heuristic-per-task": PolicySupports(
            batched=False, stops_drafts=False, unbatched_because="it keeps state per task"
        ),
        "confidence": PolicySupports(batched=True, stops_drafts=True),
        "svip": PolicySupports(batched=True, stops_drafts=True),
        "cost-aware": PolicySupports(
            batched=False,
            stops_drafts=False,
            unbatched_because="it keeps state per task and per round",
        ),
    }
)


def batched_drafters() -> tuple[str, ...]:
    """The drafter kinds that have a batched version, in table order."""
    return tuple(kind for kind, s in DRAFTER_SUPPORTS.items() if s.batched)


def unbatched_drafter(kind: str) -> str | None:
    """Why drafter ``kind`` cannot run batched, as a one-line message (None when it can)."""
    supports = DRAFTER_SUPPORTS[kind]
    why = _unbatched("drafter", kind, supports.batched, supports.unbatched_because)
    return None if why is None else f"{why}; batched runs support {', '.join(batched_drafters())}"


def unbatched_policy(kind: str) -> str | None:
    """Why policy ``kind`` cannot run batched, as a one-line message (None when it can)."""
    supports = POLICY_SUPPORTS[kind]
    return _unbatched("policy", kind, supports.batched, supports.unbatched_because)


def _unbatched(what: str, kind: str, batched: bool, because: str) -> str | None:
    if batched:
        return None
    return f"{what} {kind!r} has no batched version ({because}): it runs at batch size 1 only"


def missing_stop_rules(drafter: str, policy: str) -> str | None:
    """Why ``policy`` cannot stop ``drafter``'s drafts (None when it can, or needs not)."""
    if drafter == "none" or not POLICY_SUPPORTS[policy].stops_drafts:
        return None
    if DRAFTER_SUPPORTS[drafter].stop_rules:
        return None
    return (
        f"policy {policy!r} needs draft probabilities; {drafter} has none (use constant or "
        "heuristic)"
    )
