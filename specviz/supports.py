"""What each drafter and policy kind supports, said once; every caller asks here.

A drafter kind declares whether it has a batched version, whether a stop rule can end its draft
early (it drafts with a distribution), whether its cost can be measured apart from the
target's (a separate draft, not the target's own layers), and whether it carries state from one
request to the next. A policy kind declares whether it has a batched version, whether it stops
drafts early (so needs such a drafter) and whether it carries state across requests. A study
reuses a request's recorded events instead of decoding it again only where neither carries state
(:func:`stateless`, :mod:`specviz.study.reuse`). The config checks
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
    ``carries_state``: what it drafts for one request can depend on earlier requests (the
    suffix cache's memory; a draft model keeps its cache's common prefix with the next request,
    which may change its logits in the last bits). ``laned``: a run of it can be decoded in a
    lane beside other runs (:mod:`specviz.batch.lanes`: one batch-size-1 drafter per run; not
    a self-drafter, which writes into the target's cache).
    """

    batched: bool
    stop_rules: bool
    own_cost: bool
    carries_state: bool
    laned: bool = True
    unbatched_because: str = ""


@dataclass(frozen=True)
class PolicySupports:
    """What one policy kind supports: ``batched`` (else ``unbatched_because``), and
    ``stops_drafts``: it ends drafts early with a stop rule, so needs a drafter whose
    ``stop_rules`` holds; ``carries_state``: its k for one request depends on earlier requests."""

    batched: bool
    stops_drafts: bool
    carries_state: bool
    unbatched_because: str = ""


DRAFTER_SUPPORTS: Mapping[str, DrafterSupports] = MappingProxyType(
    {
        "none": DrafterSupports(batched=True, stop_rules=False, own_cost=True, carries_state=False),
        "model": DrafterSupports(batched=True, stop_rules=True, own_cost=True, carries_state=True),
        "prompt-lookup": DrafterSupports(
            batched=True, stop_rules=False, own_cost=True, carries_state=False
        ),
        "layer-skip": DrafterSupports(
            batched=True, stop_rules=True, own_cost=False, carries_state=False, laned=False
        ),
        "component-skip": DrafterSupports(
            batched=False,
            stop_rules=True,
            own_cost=False,
            carries_state=True,
            laned=False,
            unbatched_because="it drafts on a hybrid target's recurrent state",
        ),
        "suffix": DrafterSupports(
            batched=False,
            stop_rules=False,
            own_cost=True,
            carries_state=True,
            unbatched_because="its memory crosses requests in stream order",
        ),
    }
)

POLICY_SUPPORTS: Mapping[str, PolicySupports] = MappingProxyType(
    {
        "constant": PolicySupports(batched=True, stops_drafts=False, carries_state=False),
        "heuristic": PolicySupports(batched=True, stops_drafts=False, carries_state=True),
        "heuristic-per-request": PolicySupports(
            batched=True, stops_drafts=False, carries_state=False
        ),
        "heuristic-per-task": PolicySupports(
            batched=False,
            stops_drafts=False,
            carries_state=True,
            unbatched_because="it keeps state per task",
        ),
        "confidence": PolicySupports(batched=True, stops_drafts=True, carries_state=False),
        "svip": PolicySupports(batched=True, stops_drafts=True, carries_state=False),
        "cost-aware": PolicySupports(
            batched=False,
            stops_drafts=False,
            carries_state=True,
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


def unlaned_drafter(kind: str) -> str | None:
    """Why a run of drafter ``kind`` cannot be decoded in a lane beside other runs (None when
    it can)."""
    if DRAFTER_SUPPORTS[kind].laned:
        return None
    laned = ", ".join(k for k, s in DRAFTER_SUPPORTS.items() if s.laned)
    return (
        f"drafter {kind!r} drafts with the target's own layers, which lanes share: its runs "
        f"decode alone (lanes support {laned})"
    )


def stateless(drafter: str, policy: str) -> bool:
    """Whether a request's rounds under ``drafter`` and ``policy`` depend on that request alone
    (nothing carried over from earlier requests of the stream); plain decoding always does."""
    if drafter == "none":
        return True
    return not (DRAFTER_SUPPORTS[drafter].carries_state or POLICY_SUPPORTS[policy].carries_state)
