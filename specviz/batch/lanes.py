"""Several independent runs decoded at once: one lane per run, their rows verified together.

A study's runs are independent streams: each has its own requests in order, its own drafter
(with its memory) and its own policy state. :class:`LaneDecoder` decodes several of them in one
process: lane ``i`` holds one run at a time and decodes that run's requests one after another,
exactly as :class:`specviz.engine.Decoder` would (its generator seeded per request, the
policy's ``start_request`` and a cross-request memory's ``start_request`` / ``end_turn`` at the
same points), while every round the rows of all lanes are verified in one batched target
forward (:class:`~specviz.batch.decoder.BatchDecoder`'s round, per-row k). Each lane's drafter
is a batch-size-1 drafter and hears only its own lane's calls, in its own order, so a run's
rounds, events, drafter memory and policy state are what running it alone gives. The batched
forward runs on the target's engine (:func:`specviz.batch.kv.batch_cache`): on
``lean-invariant`` (bf16's default) every row gets the bits of a one-row forward, so that holds
in any dtype (tested, bf16 greedy, probabilities equal too); on transformers (float32's lean
engine, other architectures) a shared forward reduces in another order than a one-row forward,
exact in float32 greedy (tested) but not bit for bit in bf16 (docs/batching.md).

Scheduling: when a lane is free the decoder yields :class:`LaneFree`; the caller may then
:meth:`LaneDecoder.assign` it the next request (and, between runs, a new :class:`Lane`), or
leave it empty, which closes the lane. The caller's work between records falls in no timed span
(:func:`specviz.clock.spans`). Lanes share the target, the sampling setting and the token
budget; drafters that write into the target's cache (layer skip, component skip) cannot run in
a lane (:func:`specviz.supports.unlaned_drafter`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from specviz.batch.config import BatchConfig
from specviz.batch.decoder import BatchDecoder, BatchRecord, Job, RowDone, RowTurnEnd, _Row
from specviz.batch.drafters import RowAsk
from specviz.batch.kv import BatchCache
from specviz.config import SamplingConfig
from specviz.drafters.base import Drafter, LearnsAcrossRequests, Proposal
from specviz.models import LoadedModel
from specviz.policies import Constant, DraftPolicy
from specviz.stopping import StopRule


@dataclass
class Lane:
    """One run's decoding state: its drafter (None: plain decoding), policy and generator (the
    drafter's too, as at batch size 1), kept from one request of the run to the next."""

    drafter: Drafter | None
    policy: DraftPolicy
    generator: torch.Generator


@dataclass(frozen=True)
class LaneFree:
    """Lane ``slot`` has no request: :meth:`LaneDecoder.assign` one before the next record, or
    the lane closes."""

    slot: int


class _LaneDrafters:
    """The batch drafter of a lane decoder: every slot drafts with its own lane's drafter."""

    def __init__(self, lanes: dict[int, Lane]) -> None:
        self.lanes = lanes

    def join(self, slot: int, context: torch.Tensor, generator: torch.Generator) -> None:
        drafter = self.lanes[slot].drafter
        if drafter is not None:
            drafter.start(context)

    def leave(self, slot: int) -> None:
        return None

    def propose(
        self, kv: BatchCache, asks: Sequence[RowAsk], stop: StopRule | None
    ) -> list[Proposal]:
        out = []
        for ask in asks:
            drafter = self.lanes[ask.slot].drafter
            if ask.k <= 0 or drafter is None:
                out.append(Proposal(ask.context.new_empty(0)))
            else:
                out.append(drafter.propose(ask.context, ask.k, stop))
        return out


class LaneDecoder(BatchDecoder):
    """Decodes ``lanes`` runs at once (see the module); :meth:`run_lanes` is the generator."""

    def __init__(
        self, target: LoadedModel, sampling: SamplingConfig, max_new_tokens: int, lanes: int
    ) -> None:
        self.lanes: dict[int, Lane] = {}
        self.waiting: dict[int, Job] = {}
        batch = BatchConfig(size=lanes, composition="stream", continuous=True, k_mode="row")
        super().__init__(
            target, _LaneDrafters(self.lanes), lambda: Constant(0), sampling, max_new_tokens, batch
        )

    def assign(self, slot: int, job: Job, lane: Lane | None = None) -> None:
        """Lane ``slot``'s next request; ``lane``: a new run's state (else the lane's run goes
        on)."""
        if lane is not None:
            self.lanes[slot] = lane
            self.slot_policies[slot] = lane.policy
        self.waiting[slot] = job

    @torch.inference_mode()
    def run_lanes(self) -> Iterator[BatchRecord | LaneFree]:
        """Decode until every lane is closed."""
        closed: set[int] = set()
        while True:
            busy = {r.slot for r in self.rows}
            for slot in range(self.batch.size):
                if slot in busy or slot in closed:
                    continue
                yield LaneFree(slot)
                job = self.waiting.pop(slot, None)
                if job is None:
                    closed.add(slot)
                else:
                    yield from self._admit_to(slot, job)
            if self.rows:
                yield from self._round()
            elif len(closed) == self.batch.size:
                return

    def _admit_to(self, slot: int, job: Job) -> Iterator[BatchRecord]:
        """The request starts in its lane: what :meth:`specviz.engine.Decoder.decode` does
        before its first turn."""
        lane = self.lanes[slot]
        lane.generator.manual_seed(job.seed)
        lane.policy.start_request(job.prompt.category)
        if isinstance(lane.drafter, LearnsAcrossRequests):
            lane.drafter.start_request(job.prompt.category)
        yield from self._start_turn(_Row(slot, job, lane.generator))

    def _end_turn(self, row: _Row) -> Iterator[BatchRecord]:
        end = row.live.end(self.target)
        drafter = self.lanes[row.slot].drafter
        if isinstance(drafter, LearnsAcrossRequests):
            drafter.end_turn(end.tokens)
        yield RowTurnEnd(row.slot, row.job.key, end)
        row.answers.append(end.text)
        if row.turn < len(row.job.prompt.turns):
            yield from self._start_turn(row)
        else:
            yield RowDone(row.slot, row.job.key)

    # -- per lane: a lane without a drafter decodes plainly (the decoder's rounds do the rest) --

    def _drafts(self, row: _Row) -> bool:
        return self.lanes[row.slot].drafter is not None
