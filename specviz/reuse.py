"""Reusing a request's recorded decode instead of decoding it again (no decode twice).

Where a request's events are fully determined by an earlier decode (same target, prompt, turns,
token budget, drafter and policy settings; greedy; nothing carried over from earlier requests of
the stream, :func:`specviz.supports.stateless`), decoding it again would only repeat the same
rounds. A study (:mod:`specviz.study.reuse`) names such a request's source, a finished run
directory and the request there; :class:`ReusingSession` copies the source's event and request
rows instead of decoding, with this run's labels (run id, request id and index, mixture) and the
source's measured seconds.

Timings: a reused request keeps the seconds its original decode measured (``draft_s``,
``verify_s``, ``wall_s``, ``ttft_s``, ``latency_s``): the wall clock of the very computation
its rounds record, measured once, at the time the source ran (not while this run's neighbours
ran). Its rounds are exactly the rounds a fresh decode gives (float32 greedy, tested), so
modelled seconds do not change; ``run.json`` lists every reused request and its source under
``reused``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from specviz.recorder import UNBATCHED_LABELS, request_labels
from specviz.rundir import (
    CO_DECODED_KEY,
    EVENT_SCHEMA,
    REQUEST_SCHEMA,
    RUN_FILE,
    Finished,
    Session,
    read_run_meta,
    scan_events,
    scan_requests,
    write_json,
)

if TYPE_CHECKING:
    from specviz.workloads.request import Request

REUSED_KEY = "reused"  # run.json: {request_id: {"run": source dir (relative), "request_id": ...}}


@dataclass(frozen=True)
class Reused:
    """Request ``request_id`` of a run is a copy of ``source_request_id`` in run dir ``source``."""

    request_id: str
    source: str  # the source run directory (relative to the study directory, or absolute)
    source_request_id: str


def relabel(frame: pl.DataFrame, labels: dict[str, Any], schema: pl.Schema) -> pl.DataFrame:
    """``frame`` with every column named in ``labels`` set to its value (in the schema's type)."""
    return frame.with_columns(
        pl.lit(value, dtype=schema[name]).alias(name)
        for name, value in labels.items()
        if name in frame.columns
    )


class ReusingSession:
    """A batch-size-1 session that copies the requests of ``reuse`` from their sources and
    decodes the others with ``inner``, in stream order.

    Only for runs whose drafter and policy carry no state across requests: a copied request
    does not pass through ``inner``'s drafter or policy, which is exact only when nothing they
    hold depends on earlier requests.
    """

    def __init__(self, inner: Session, reuse: Sequence[Reused]) -> None:
        self.inner = inner
        self.reuse = {r.request_id: r for r in reuse}

    def encode_turn(self, prompt: Any, answers: list[str]) -> list[int]:
        return self.inner.encode_turn(prompt, answers)

    def start(self, out_dir: Path, meta: dict[str, Any], done: set[str]) -> None:
        self.inner.start(out_dir, meta, done)
        meta[REUSED_KEY] = {
            r.request_id: {
                "run": os.path.relpath(r.source, out_dir),
                "request_id": r.source_request_id,
            }
            for r in self.reuse.values()
        }
        # a copy of a co-decoded request carries its shared wall seconds: no batch-1 wall clock
        sources = {r.source for r in self.reuse.values()}
        lanes = [read_run_meta(Path(d)).get(CO_DECODED_KEY) for d in sorted(sources)]
        if any(lanes):
            meta[CO_DECODED_KEY] = {"lanes": max(x["lanes"] for x in lanes if x), "reused": True}
        write_json(out_dir / RUN_FILE, meta)

    def decode(
        self, requests: Sequence[Request], done: set[str], labels: dict[str, Any]
    ) -> Iterator[Finished]:
        wall_s = 0.0
        for request in requests:
            if request.id in done:
                continue
            source = self.reuse.get(request.id)
            if source is None:
                finished = next(iter(self.inner.decode([request], done, labels)))
            else:
                finished = copied(source, request, labels)
            wall_s += finished.run_wall_s
            yield replace(finished, run_wall_s=wall_s)


def copied(source: Reused, request: Request, labels: dict[str, Any]) -> Finished:
    """The source request's rows as this run's ``request`` (``run_wall_s``: its own wall)."""
    which = pl.col("request_id") == source.source_request_id
    events = scan_events(source.source).filter(which).collect()
    rows = scan_requests(source.source).filter(which).collect()
    if rows.height != 1:
        raise FileNotFoundError(
            f"{source.source} holds no finished request {source.source_request_id!r} to reuse"
        )
    shared = request_labels(request, labels | UNBATCHED_LABELS)
    events = relabel(events, shared, EVENT_SCHEMA)
    rows = relabel(rows, shared, REQUEST_SCHEMA)
    return Finished(events, rows, float(rows["wall_s"][0]))
