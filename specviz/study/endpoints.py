"""A study's units sent to OpenAI-compatible servers (``specviz study FILE --endpoint ...``).

A serving engine runs one speculative configuration (drafter, policy, k) per server, while a
study compares several; so each condition goes to the endpoint named for its drafter
(``--endpoint NAME=URL``, ``baseline=URL`` for the autoregressive baseline), or to the one
unnamed ``--endpoint URL``. Sampling and ``max_new_tokens`` travel with every request, so one
server answers every sampling setting of its configuration. Two configurations sent to one URL
are refused: the server would answer both with the same speculation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from specviz.endpoint.client import EndpointConfig, check_models
from specviz.endpoint.run import run_endpoint
from specviz.study.spec import StudyError
from specviz.study.units import BASELINE_CONDITION, Unit

ANY = ""  # the key of an unnamed --endpoint URL


def endpoint_key(unit: Unit) -> str:
    """What a unit's endpoint is named by: its drafter's label, or ``baseline``."""
    return BASELINE_CONDITION if unit.config.drafter.kind == "none" else unit.config.drafter.label


def assign_endpoints(
    units: Sequence[Unit], endpoints: Mapping[str, EndpointConfig]
) -> dict[str, EndpointConfig]:
    """Each unit's endpoint (by unit id); StudyError for a unit without one, a batched unit, or
    two configurations sharing one URL."""
    assigned: dict[str, EndpointConfig] = {}
    served: dict[str, tuple[str, object]] = {}
    for unit in units:
        key = endpoint_key(unit)
        endpoint = endpoints.get(key, endpoints.get(ANY))
        if endpoint is None:
            names = ", ".join(sorted(k for k in endpoints if k)) or "none"
            raise StudyError(
                f"condition {unit.condition_id!r} has no endpoint: pass --endpoint {key}=URL "
                f"(named endpoints: {names})"
            )
        if unit.batch is not None:
            raise StudyError(
                f"condition {unit.condition_id!r} is batched: a server batches by itself, so "
                "drop batch options from a study sent with --endpoint"
            )
        setup = (unit.config.drafter, unit.config.policy)
        first = served.setdefault(endpoint.url, (key, setup))
        if first[1] != setup:
            raise StudyError(
                f"{first[0]!r} and {key!r} (or two of its policies or k) would both go to "
                f"{endpoint.url}, which runs one speculative configuration: give each its own "
                "server with --endpoint NAME=URL"
            )
        assigned[unit.id] = endpoint
    return assigned


def check_endpoints(units: Sequence[Unit], assigned: Mapping[str, EndpointConfig]) -> None:
    """Every endpoint is reachable and serves its units' target (before anything is written)."""
    seen: set[tuple[str, str]] = set()
    for unit in units:
        endpoint = assigned[unit.id]
        key = (endpoint.url, unit.config.target.name)
        if key not in seen:
            check_models(endpoint, unit.config.target.name)
            seen.add(key)


def run_endpoint_units(
    units: Sequence[Unit],
    out: Path,
    assigned: Mapping[str, EndpointConfig],
    progress: bool,
    on_done: Callable[[Unit], None],
) -> None:
    """Each unit through its endpoint, one after another (the client keeps a unit's requests
    in flight at the endpoint's concurrency); each opened with resume, as in-process units are."""
    for unit in units:
        run_endpoint(
            unit.config,
            unit.requests,
            out / unit.run_dir,
            assigned[unit.id],
            resume=True,
            progress=progress,
        )
        on_done(unit)
