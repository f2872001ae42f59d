"""The batched decoding loop: a generator, like :mod:`specviz.engine`, over many rows at once.

``BatchDecoder.run(batches)`` decodes every request of ``batches`` (lists of :class:`Job`) and
yields, in order:

- :class:`StepPrefill` after a joining row's prefill (a batch-size-1 forward of its prompt);
- :class:`StepDrafted` after every row drafted (rounds that draft);
- :class:`Step` after the target verified all rows in one forward pass;
- :class:`RowTurnEnd` when a row finished a turn, :class:`RowDone` when its request left.

Every row of a step carries a batch-size-1 :class:`~specviz.engine.Round`, so events are
recorded exactly as for batch size 1. Nothing here reads a clock (the runner times records).

A round: each row r feeds ``[last_r, x_1..x_{g_r}]`` (its own drafts), right-padded to the
longest feed ``T``; the target runs once over the ``rows x T`` block (per-row positions and a
validity mask, see :mod:`specviz.batch.kv`); each row verifies its own drafts and keeps its own
``n_r + 1`` columns. Rows therefore advance by different amounts in the same round. A row whose
turn ended leaves the cache; its next turn (multi-turn prompts) is prefilled and joins again in
the same slot; a finished request frees the slot, which a waiting request fills at once under
continuous batching, or when the whole batch is done under static batching.

Draft length: ``k_mode == "batch"``: one policy for the batch, asked once per round, updated
with the batch's round (``n_accepted`` = the fewest any row accepted, so an adaptive policy
lengthens k only when every row accepted every draft); ``"row"``: every slot its own policy
(per-row k). Each row's k is then capped by its own token budget, as at batch size 1.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import torch

from specviz.batch.config import BatchConfig
from specviz.batch.drafters import BatchDrafter, RowAsk
from specviz.batch.kv import BatchKV
from specviz.config import PolicyConfig, SamplingConfig
from specviz.drafters.base import Proposal
from specviz.engine import Round, TurnEnd, verified_round
from specviz.forward import forward, new_cache
from specviz.limits import TurnLimits
from specviz.models import LoadedModel
from specviz.policies import DraftPolicy, build_policy
from specviz.sampling import choose, probabilities
from specviz.verify import Verdict, verify_greedy, verify_sampling
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
    proposals: tuple[tuple[int, Proposal, int], ...]  # (slot, proposal, k) per drafting row


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
    slot: int
    job: Job
    generator: torch.Generator
    turn: int = 0
    answers: list[str] = field(default_factory=list)
    context: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))
    prompt_len: int = 0
    generated: list[int] = field(default_factory=list)
    rounds: int = 0  # rounds of the request so far (over all turns)


class BatchDecoder:
    """Speculative (or plain, ``drafter=None``) decoding of batches of prompts."""

    def __init__(
        self,
        target: LoadedModel,
        drafter: BatchDrafter | None,
        policy: PolicyConfig,
        sampling: SamplingConfig,
        max_new_tokens: int,
        batch: BatchConfig,
    ) -> None:
        self.target = target
        self.drafter = drafter
        self.policy_config = policy
        self.sampling = sampling
        self.batch = batch
        self.limits = TurnLimits.of(target, max_new_tokens)
        self.kv = BatchKV(target.model)
        self.batch_policy = build_policy(policy)
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
            policy = self.slot_policies.setdefault(row.slot, build_policy(self.policy_config))
            policy.start_request(job.prompt.category)
        yield from self._start_turn(row)

    def _start_turn(self, row: _Row) -> Iterator[BatchRecord]:
        """Prefill the row's current turn alone, then splice it into the batch cache."""
        ids = self.encode_turn(row.job.prompt, row.answers)
        context = torch.tensor(ids, dtype=torch.long, device=self.target.device)
        if self.drafter is not None:
            self.drafter.join(row.slot, context, row.generator)
        cache = new_cache(self.target.model)
        logits = forward(self.target.model, context, cache, 0, last_only=True)
        first = choose(logits[-1], self.sampling, row.generator)
        p_first = float(probabilities(logits[-1:], self.sampling)[0, first])
        row.context = torch.cat([context, context.new_tensor([first])])
        row.prompt_len = len(ids)
        row.generated = [first]
        finish = self.limits.finish(row.generated, len(row.context))
        round_ = Round(row.turn, row.rounds, True, 0, (), None, (first,), (), p_first, 0, 1, finish)
        row.rounds += 1
        self.steps += 1
        yield StepPrefill(self.steps - 1, RowRound(row.slot, row.job.key, round_))
        if finish is None:
            self.kv.add(cache)
            self.rows.append(row)
        else:
            yield from self._end_turn(row, finish)

    def _end_turn(self, row: _Row, finish: str) -> Iterator[BatchRecord]:
        text = self.target.tokenizer.decode(row.generated, skip_special_tokens=True)
        end = TurnEnd(row.turn, row.prompt_len, tuple(row.generated), text, finish)
        yield RowTurnEnd(row.slot, row.job.key, end)
        row.answers.append(text)
        row.turn += 1
        if row.turn < len(row.job.prompt.turns):
            yield from self._start_turn(row)
        else:
            if self.drafter is not None:
                self.drafter.leave(row.slot)
            yield RowDone(row.slot, row.job.key)

    # -- one batched round ------------------------------------------------------------------

    def _asked(self, row: _Row) -> int:
        if self.drafter is None:
            return 0
        if self.batch.k_mode == "row":
            return self.slot_policies[row.slot].next_k()
        return self.batch_policy.next_k()

    def _min_confidence(self, row: _Row) -> float | None:
        if self.batch.k_mode == "row":
            return self.slot_policies[row.slot].min_confidence
        return self.batch_policy.min_confidence

    def _round(self) -> Iterator[BatchRecord]:
        rows = self.rows
        asked = [self._asked(r) for r in rows]
        ks = [
            self.limits.draft_budget(a, len(r.generated), len(r.context))
            for a, r in zip(asked, rows, strict=True)
        ]
        proposals = [Proposal(r.context.new_empty(0)) for r in rows]
        if self.drafter is not None and any(k > 0 for k in ks):
            asks = [
                RowAsk(r.slot, i, r.context, k, r.generator)
                for i, (r, k) in enumerate(zip(rows, ks, strict=True))
            ]
            proposals = self._propose(asks, rows)
            yield StepDrafted(
                self.steps,
                tuple((r.slot, p, k) for r, p, k in zip(rows, proposals, ks, strict=True) if k > 0),
            )
        verdicts, probs, width = self._verify(rows, proposals)
        self.steps += 1
        if self.drafter is not None:
            self._update_policies(rows, asked, proposals, verdicts)
        row_rounds = []
        finished: list[tuple[_Row, str]] = []
        for r, a, proposal, verdict, p in zip(rows, asked, proposals, verdicts, probs, strict=True):
            round_ = verified_round(r.turn, r.rounds, a, proposal, verdict, p)
            new = list(round_.target)
            kept = self.limits.emitted(r.generated, new, len(r.context))
            r.generated += new[:kept]
            finish = self.limits.finish(r.generated, len(r.context) + kept)
            r.context = torch.cat([r.context, r.context.new_tensor(new[:kept])])
            r.rounds += 1
            row_rounds.append(
                RowRound(r.slot, r.job.key, replace(round_, n_emitted=kept, finish=finish))
            )
            if finish is not None:
                finished.append((r, finish))
        tasks = len({r.job.prompt.category for r in rows})
        yield Step(self.steps - 1, tuple(row_rounds), tasks, width)
        if finished:
            gone = {id(r) for r, _ in finished}
            self.kv.keep_rows([i for i, r in enumerate(rows) if id(r) not in gone])
            self.rows = [r for r in rows if id(r) not in gone]
            for r, finish in finished:
                yield from self._end_turn(r, finish)

    def _propose(self, asks: list[RowAsk], rows: list[_Row]) -> list[Proposal]:
        assert self.drafter is not None
        if self.batch.k_mode == "batch":
            return self.drafter.propose(self.kv, asks, self.batch_policy.min_confidence)
        # per-row policies may differ in confidence threshold: one drafting pass per threshold
        out = [Proposal(a.context.new_empty(0)) for a in asks]
        for threshold in {self._min_confidence(r) for r in rows}:
            mine = [self._min_confidence(r) == threshold for r in rows]
            masked = [
                a if m else RowAsk(a.slot, a.row, a.context, 0, a.generator)
                for a, m in zip(asks, mine, strict=True)
            ]
            drafted = self.drafter.propose(self.kv, masked, threshold)
            out = [d if m else o for o, d, m in zip(out, drafted, mine, strict=True)]
        return out

    def _verify(
        self, rows: list[_Row], proposals: list[Proposal]
    ) -> tuple[list[Verdict], list[torch.Tensor], int]:
        """One target forward over every row's ``[last, drafts]``; each row's own verdict."""
        device = self.target.device
        feeds = [
            torch.cat([r.context[-1:], p.tokens.to(device)])
            for r, p in zip(rows, proposals, strict=True)
        ]
        width = max(len(f) for f in feeds)
        tokens = torch.zeros(len(rows), width, dtype=torch.long, device=device)
        fed = torch.zeros(len(rows), width, dtype=torch.bool, device=device)
        for i, f in enumerate(feeds):
            tokens[i, : len(f)] = f
            fed[i, : len(f)] = True
        logits = self.kv.forward(self.target.model, tokens, fed)
        verdicts, probs = [], []
        for i, (r, proposal) in enumerate(zip(rows, proposals, strict=True)):
            gamma = len(proposal)
            row_logits = logits[i, : gamma + 1]
            p = probabilities(row_logits, self.sampling)
            draft = proposal.tokens.to(device)
            if self.sampling.greedy:
                verdicts.append(verify_greedy(draft, row_logits))
            else:
                verdicts.append(
                    verify_sampling(draft, proposal.q_tokens, proposal.q, p, r.generator)
                )
            probs.append(p)
        keep = torch.tensor([v.n_accepted + 1 for v in verdicts], device=device)
        self.kv.commit(width, keep)
        return verdicts, probs, width

    def _update_policies(
        self,
        rows: list[_Row],
        asked: list[int],
        proposals: list[Proposal],
        verdicts: list[Verdict],
    ) -> None:
        if self.batch.k_mode == "row":
            for r, a, p, v in zip(rows, asked, proposals, verdicts, strict=True):
                if a > 0:
                    self.slot_policies[r.slot].update(a, len(p), v.n_accepted)
            return
        k = asked[0]
        if k > 0:
            drafted = min(len(p) for p in proposals)
            accepted = min(v.n_accepted for v in verdicts)
            self.batch_policy.update(k, drafted, accepted)

    # -- budgets (as at batch size 1) ---------------------------------------------------------
