"""The batched decoding loop: a generator, like :mod:`specviz.engine`, over many rows at once.

``BatchDecoder.run(batches)`` decodes every request of ``batches`` (lists of :class:`Job`) and
yields, in order:

- :class:`StepPrefill` after a joining row's prefill (a batch-size-1 forward of its prompt);
- :class:`StepDrafted` after every row drafted (rounds that draft);
- :class:`Step` after the target verified all rows in one forward pass;
- :class:`RowTurnEnd` when a row finished a turn, :class:`RowDone` when its request left.

Every row is a :class:`~specviz.engine.RowState` verified by :func:`~specviz.engine.verify_step`,
the steps of the batch-size-1 decoder, and every row of a step carries a batch-size-1
:class:`~specviz.records.Round`, so events are recorded exactly as for batch size 1. Nothing here reads a clock (the runner times records).

A round: each row r feeds ``[last_r, x_1..x_{g_r}]`` (its own drafts), right-padded to the
longest feed ``T``; the target runs once over the ``rows x T`` block (per-row positions and a
validity mask, see :mod:`specviz.batch.kv`); each row verifies its own drafts and keeps its own
``n_r + 1`` columns. Rows therefore advance by different amounts in the same round. A row whose
turn ended leaves the cache; its next turn (multi-turn prompts) is prefilled and joins again in
the same slot; a finished request frees the slot, which a waiting request fills at once under
continuous batching, or when the whole batch is done under static batching.

Draft length: ``k_mode == "batch"``: one policy for the batch, asked once per round, updated
with the batch's round (``n_drafted`` and ``n_accepted`` = the fewest any row drafted and
accepted, so an adaptive policy lengthens k only when every row accepted every draft);
``"row"``: every slot its own policy (per-row k). Each row's k is then capped by its own token
budget, as at batch size 1.

Policy feedback follows the contract of :mod:`specviz.policies`, exactly as the batch-size-1
decoder does: with a drafter, every verify round updates the policy, k = 0 included, with what
:func:`~specviz.policies.heard` makes of the round; a row at k = 0 under a shadowing policy asks
the drafter for one unverified token (:attr:`~specviz.records.Round.shadow`), drafted in the
same step as the other rows' drafts. A policy therefore hears the same sequence at batch size 1
from either decoder, and a row's policy in ``"row"`` mode hears what its requests would have
told it alone.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import torch

from specviz.batch.config import BatchConfig
from specviz.batch.drafters import BatchDrafter, RowAsk
from specviz.batch.kv import batch_cache
from specviz.config import SamplingConfig
from specviz.drafters.base import Proposal
from specviz.engine import RowState, verify_step
from specviz.forward import forward
from specviz.limits import TurnLimits
from specviz.models import LoadedModel
from specviz.policies import DraftPolicy, heard
from specviz.records import Round, TurnEnd
from specviz.stopping import StopRule
from specviz.workloads.prompt import Prompt


@dataclass(frozen=True)
class Job:
    """One request to decode: ``key`` identifies it to the caller; ``batch_id`` is the batch
    the composition put it in."""

    key: int
    prompt: Prompt
    seed: int
    batch_id: int


@dataclass(frozen=True)
class RowRound:
    slot: int
    key: int
    round: Round


@dataclass(frozen=True)
class StepPrefill:
    """A joining row's prefill (its own batch-size-1 forward)."""

    index: int  # target forward passes so far in the run (prefills included)
    row: RowRound


@dataclass(frozen=True)
class StepDrafted:
    index: int
    proposals: tuple[tuple[int, Proposal, int], ...]  # (slot, proposal, budget) per drafting row


@dataclass(frozen=True)
class Step:
    """One batched verify forward and every row's verdict."""

    index: int
    rows: tuple[RowRound, ...]
    tasks: int  # distinct categories among the rows
    width: int  # T: tokens fed per row (the longest feed; shorter feeds are padding)


@dataclass(frozen=True)
class RowTurnEnd:
    slot: int
    key: int
    end: TurnEnd


@dataclass(frozen=True)
class RowDone:
    slot: int
    key: int


BatchRecord = StepPrefill | StepDrafted | Step | RowTurnEnd | RowDone


@dataclass
class _Row:
    """A request in the batch: its slot, its generator and its current turn's state.

    Two numbers place a row: its ``slot`` (a label in ``0..size-1``, stable while its request is
    in the batch; the event column ``row`` records it) and its *cache index*, its position in
    :attr:`BatchDecoder.rows` and in the batch cache, which shifts as rows leave (what
    :attr:`~specviz.batch.drafters.RowAsk.cache_index` holds).
    """

    slot: int
    job: Job
    generator: torch.Generator
    state: RowState | None = None  # the turn in progress (None before the first prefill)
    answers: list[str] = field(default_factory=list)

    @property
    def turn(self) -> int:
        return len(self.answers)

    @property
    def live(self) -> RowState:
        """The turn in progress (the row was prefilled)."""
        assert self.state is not None
        return self.state

    @property
    def context(self) -> torch.Tensor:
        return self.live.context

    @property
    def next_round(self) -> int:
        return 0 if self.state is None else self.state.index


class BatchDecoder:
    """Speculative (or plain, ``drafter=None``) decoding of batches of prompts.

    ``new_policy`` builds a fresh :class:`~specviz.policies.DraftPolicy`: once for the batch
    (``k_mode == "batch"``) or once per slot (``"row"``); ``policy`` always names a
    ``DraftPolicy`` here, as in :class:`specviz.engine.Decoder`.
    """

    def __init__(
        self,
        target: LoadedModel,
        drafter: BatchDrafter | None,
        new_policy: Callable[[], DraftPolicy],
        sampling: SamplingConfig,
        max_new_tokens: int,
        batch: BatchConfig,
    ) -> None:
        self.target = target
        self.drafter = drafter
        self.new_policy = new_policy
        self.sampling = sampling
        self.batch = batch
        self.limits = TurnLimits.of(target, max_new_tokens)
        self.kv = batch_cache(target.model)
        self.batch_policy = new_policy()
        self.slot_policies: dict[int, DraftPolicy] = {}
        self.rows: list[_Row] = []  # in batch-cache order
        self.steps = 0

    def encode_turn(self, prompt: Prompt, answers: list[str]) -> list[int]:
        return self.limits.encode_turn(self.target, prompt, answers)

    # -- scheduling -------------------------------------------------------------------------

    @torch.inference_mode()
    def run(self, batches: Sequence[Sequence[Job]]) -> Iterator[BatchRecord]:
        """Decode every job; batches run one after another (static) or feed one queue
        (continuous)."""
        size = self.batch.size
        groups = [list(b) for b in batches if b]
        if self.batch.continuous:
            groups = [[job for b in groups for job in b]]
        for group in groups:
            queue = deque(group)
            self.batch_policy.start_request("")  # batch k: per batch for per-request policies
            while queue or self.rows:
                while queue and len(self.rows) < size:
                    yield from self._admit(queue.popleft())
                if self.rows:
                    yield from self._round()

    def _free_slot(self) -> int:
        used = {r.slot for r in self.rows}
        return next(i for i in range(self.batch.size) if i not in used)

    def _admit(self, job: Job) -> Iterator[BatchRecord]:
        generator = torch.Generator(device=self.target.device)
        generator.manual_seed(job.seed)
        row = _Row(self._free_slot(), job, generator)
        if self.batch.k_mode == "row":
            if row.slot not in self.slot_policies:
                self.slot_policies[row.slot] = self.new_policy()
            policy = self.slot_policies[row.slot]
            policy.start_request(job.prompt.category)
        yield from self._start_turn(row)

    def _start_turn(self, row: _Row) -> Iterator[BatchRecord]:
        """Prefill the row's current turn alone, then splice it into the batch cache."""
        ids = self.encode_turn(row.job.prompt, row.answers)
        prompt = torch.tensor(ids, dtype=torch.long, device=self.target.device)
        if self.drafter is not None:
            self.drafter.join(row.slot, prompt, row.generator)
        cache = self.kv.row_cache()  # prefilled alone, then spliced into the batch cache
        logits = forward(self.target.model, prompt, cache, 0, last_only=True)
        row.state, first = RowState.prefill(
            self.limits, row.turn, row.next_round, prompt, logits[-1], self.sampling, row.generator
        )
        self.steps += 1
        yield StepPrefill(self.steps - 1, RowRound(row.slot, row.job.key, first))
        if row.state.finish is None:
            self.kv.add(cache)
            self.rows.append(row)
        else:
            yield from self._end_turn(row)

    def _end_turn(self, row: _Row) -> Iterator[BatchRecord]:
        end = row.live.end(self.target)
        yield RowTurnEnd(row.slot, row.job.key, end)
        row.answers.append(end.text)
        if row.turn < len(row.job.prompt.turns):
            yield from self._start_turn(row)
        else:
            if self.drafter is not None:
                self.drafter.leave(row.slot)
            yield RowDone(row.slot, row.job.key)

    # -- one batched round ------------------------------------------------------------------

    def _policy(self, row: _Row) -> DraftPolicy:
        """The policy that decides ``row``'s k: its slot's, or the batch's."""
        if self.batch.k_mode == "row":
            return self.slot_policies[row.slot]
        return self.batch_policy

    def _drafts(self, row: _Row) -> bool:
        """Whether ``row`` drafts at all (plain decoding asks k = 0 and updates no policy)."""
        return self.drafter is not None

    def _asked(self, row: _Row) -> int:
        return self._policy(row).next_k() if self._drafts(row) else 0

    def _stop_rule(self, row: _Row) -> StopRule | None:
        return self._policy(row).stop_rule

    def _shadows(self, row: _Row, asked: int) -> bool:
        """Whether the row asks for a shadow token this round (as at batch size 1)."""
        return self._drafts(row) and asked == 0 and self._policy(row).shadows

    def _round(self) -> Iterator[BatchRecord]:
        rows = self.rows
        states = [r.live for r in rows]
        asked = [self._asked(r) for r in rows]
        ks = [st.budget(a) for st, a in zip(states, asked, strict=True)]
        proposals = [Proposal(st.context.new_empty(0)) for st in states]
        shadowing = [self._shadows(r, a) for r, a in zip(rows, asked, strict=True)]
        shadows: list[int | None] = [None] * len(rows)
        if self.drafter is not None and any(k > 0 for k in ks):
            asks = [
                RowAsk(r.slot, cache_index, st.context, k, r.generator)
                for cache_index, (r, st, k) in enumerate(zip(rows, states, ks, strict=True))
            ]
            proposals = self._propose(asks, rows)
        if any(shadowing):
            shadows = self._shadow_drafts(rows, states, shadowing)
        if any(k > 0 for k in ks) or any(shadowing):
            yield StepDrafted(
                self.steps,
                tuple(
                    (r.slot, p, k)
                    for r, p, k, s in zip(rows, proposals, ks, shadowing, strict=True)
                    if k > 0 or s
                ),
            )
        verified, width = self._verify(rows, asked, proposals)
        verified = [replace(v, shadow=s) for v, s in zip(verified, shadows, strict=True)]
        self.steps += 1
        if self.drafter is not None:
            self._update_policies(rows, asked, proposals, verified)
        row_rounds = []
        for r, v in zip(rows, verified, strict=True):
            row_rounds.append(RowRound(r.slot, r.job.key, r.live.advance(v)))
        tasks = len({r.job.prompt.category for r in rows})
        yield Step(self.steps - 1, tuple(row_rounds), tasks, width)
        finished = [r for r in rows if r.live.finish is not None]
        if finished:
            self.kv.keep_rows([i for i, r in enumerate(rows) if r not in finished])
            self.rows = [r for r in rows if r not in finished]
            for r in finished:
                yield from self._end_turn(r)

    def _shadow_drafts(
        self, rows: list[_Row], states: list[RowState], shadowing: list[bool]
    ) -> list[int | None]:
        """One unverified token from the drafter for each shadowing row (None elsewhere, or
        where the drafter had nothing to propose): the batch-size-1 decoder's shadow draft."""
        assert self.drafter is not None
        asks = [
            RowAsk(r.slot, cache_index, st.context, 1 if s else 0, r.generator)
            for cache_index, (r, st, s) in enumerate(zip(rows, states, shadowing, strict=True))
        ]
        would_be = self.drafter.propose(self.kv, asks, None)
        return [
            int(p.tokens[0]) if s and len(p) else None
            for p, s in zip(would_be, shadowing, strict=True)
        ]

    def _propose(self, asks: list[RowAsk], rows: list[_Row]) -> list[Proposal]:
        assert self.drafter is not None
        if self.batch.k_mode == "batch":
            return self.drafter.propose(self.kv, asks, self.batch_policy.stop_rule)
        # per-row policies may differ in stop rule: one drafting pass per rule
        out = [Proposal(a.context.new_empty(0)) for a in asks]
        for rule in {self._stop_rule(r) for r in rows}:
            mine = [self._stop_rule(r) == rule for r in rows]
            masked = [
                a if m else RowAsk(a.slot, a.cache_index, a.context, 0, a.generator)
                for a, m in zip(asks, mine, strict=True)
            ]
            drafted = self.drafter.propose(self.kv, masked, rule)
            out = [d if m else o for o, d, m in zip(out, drafted, mine, strict=True)]
        return out

    def _verify(
        self, rows: list[_Row], asked: list[int], proposals: list[Proposal]
    ) -> tuple[list[Round], int]:
        """One target forward over every row's ``[last, drafts]``; each row's own verdict."""
        device = self.target.device
        states = [r.live for r in rows]
        feeds = [st.feed(p) for st, p in zip(states, proposals, strict=True)]
        width = max(len(f) for f in feeds)
        tokens = torch.zeros(len(rows), width, dtype=torch.long, device=device)
        fed = torch.zeros(len(rows), width, dtype=torch.bool, device=device)
        for i, f in enumerate(feeds):
            tokens[i, : len(f)] = f
            fed[i, : len(f)] = True
        logits = self.kv.forward(self.target.model, tokens, fed)
        verified = [
            verify_step(st, a, p, logits[i, : len(p) + 1], self.sampling, r.generator)
            for i, (r, st, a, p) in enumerate(zip(rows, states, asked, proposals, strict=True))
        ]
        keep = torch.tensor([v.n_accepted + 1 for v in verified], device=device)
        self.kv.commit(width, keep)
        return verified, width

    def _update_policies(
        self,
        rows: list[_Row],
        asked: list[int],
        proposals: list[Proposal],
        verified: list[Round],
    ) -> None:
        """Every verify round of a drafter, k = 0 included, through :func:`heard` (the contract
        of :mod:`specviz.policies`); the batch's one policy hears the fewest any row drafted and
        accepted."""
        said = [
            heard(len(p), v.n_accepted, v.shadow, v.target[0])
            for p, v in zip(proposals, verified, strict=True)
        ]
        if self.batch.k_mode == "row":
            for r, a, (n_drafted, n_accepted) in zip(rows, asked, said, strict=True):
                if self._drafts(r):
                    self.slot_policies[r.slot].update(a, n_drafted, n_accepted)
            return
        self.batch_policy.update(asked[0], min(d for d, _ in said), min(n for _, n in said))
