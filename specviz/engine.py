"""The decoding loop: a generator that yields one record per phase of every round.

``Decoder.decode(prompt)`` runs all turns of one prompt and yields, in order:

- :class:`Drafted` after the drafter proposed (only in rounds that draft);
- :class:`Round` after the target's forward pass and verification (prefill rounds included);
- :class:`TurnEnd` when a turn finished.

Nothing here reads a clock or writes a file: :mod:`specviz.runner` times the gaps between
records (the time to produce a ``Drafted`` is draft time, the time to produce a ``Round`` is
verify or prefill time) and records them. Plain autoregressive decoding is the same loop with no
drafter, so baseline and speculation count tokens and time identically.

One round (Leviathan et al. 2023, Algorithm 1): ask the policy for k; draft up to k tokens
(capped by the turn's budget); run the target once over ``[last, x_1..x_gamma]``; verify
(:func:`verify_step`); keep what was accepted in the cache; emit the accepted tokens and the
target's own next token (:meth:`RowState.advance`). The batched decoder
(:mod:`specviz.batch.decoder`) runs the same :class:`RowState` and :func:`verify_step` for every
row of a batch; this module is its one-row case.

A shadowing policy (:attr:`~specviz.policies.DraftPolicy.shadows`, the cost-aware policy with a
free drafter) gets one unverified token from the drafter in every round it asked k = 0; the
record carries it (:attr:`Round.shadow`), its time is draft time, and nothing the target emits
depends on it.

State that crosses requests: the policy hears ``start_request(category)`` at every request and
``update`` after every verify round of a drafter; a drafter with cross-request memory
(:class:`~specviz.drafters.base.LearnsAcrossRequests`, the suffix cache) hears the request's
category and every finished turn's output, in stream order.

Invariant: the target's KV cache holds every context token except the last one emitted; each
round feeds ``[last, x_1..x_gamma]`` and keeps ``last, x_1..x_n`` (n accepted). Attention caches
drop the rest by cropping; a hybrid model's recurrent state is restored and the kept tokens
replayed (:mod:`specviz.hybrid.rollback`).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass, replace

import torch
from transformers import DynamicCache

from specviz.config import SamplingConfig
from specviz.drafters.base import Drafter, LearnsAcrossRequests, Proposal
from specviz.forward import forward
from specviz.hybrid.rollback import cache_rollback
from specviz.limits import TurnLimits
from specviz.models import LoadedModel
from specviz.policies import DraftPolicy, heard
from specviz.records import Drafted, Record, Round, TurnEnd
from specviz.sampling import choose, probabilities
from specviz.verify import Verdict, verify_greedy, verify_sampling
from specviz.workloads.prompt import Prompt

__all__ = ["Decoder", "Drafted", "Record", "Round", "RowState", "TurnEnd", "verify_step"]


# -- one row's turn -------------------------------------------------------------------------


@dataclass
class RowState:
    """One row's turn in progress: its context (prompt + emitted tokens) and what it emitted.

    ``index`` is the request's next round index (rounds count over all turns).
    """

    limits: TurnLimits
    turn: int
    index: int
    prompt_len: int
    context: torch.Tensor
    generated: list[int]
    finish: str | None = None

    @classmethod
    def prefill(
        cls,
        limits: TurnLimits,
        turn: int,
        index: int,
        prompt: torch.Tensor,
        last_logits: torch.Tensor,
        sampling: SamplingConfig,
        generator: torch.Generator,
    ) -> tuple[RowState, Round]:
        """The turn after its prefill: ``last_logits`` (the prompt's last position) give the
        first new token."""
        first = choose(last_logits, sampling, generator)
        p_first = float(probabilities(last_logits[None], sampling)[0, first])
        state = cls(limits, turn, index + 1, len(prompt), prompt.new_tensor([]), [first])
        state.context = torch.cat([prompt, prompt.new_tensor([first])])
        state.finish = limits.finish(state.generated, len(state.context))
        round_ = Round(
            turn=turn,
            index=index,
            prefill=True,
            k=0,
            draft=(),
            q_tokens=None,
            target=(first,),
            p=(),
            p_next=p_first,
            n_accepted=0,
            n_emitted=1,
            finish=state.finish,
        )
        return state, round_

    def budget(self, asked: int) -> int:
        """The draft length this round may use: ``asked`` capped by the turn's token budget."""
        return self.limits.draft_budget(asked, len(self.generated), len(self.context))

    def feed(self, proposal: Proposal) -> torch.Tensor:
        """What the target reads this round: ``[last, x_1..x_gamma]``."""
        return torch.cat([self.context[-1:], proposal.tokens.to(self.context.device)])

    def advance(self, verified: Round) -> Round:
        """Emit the round's tokens (trimmed where the turn ends inside it); the final record."""
        new = list(verified.target)
        kept = self.limits.emitted(self.generated, new, len(self.context))
        self.generated += new[:kept]
        self.finish = self.limits.finish(self.generated, len(self.context) + kept)
        self.context = torch.cat([self.context, self.context.new_tensor(new[:kept])])
        self.index += 1
        return replace(verified, n_emitted=kept, finish=self.finish)

    def end(self, target: LoadedModel) -> TurnEnd:
        assert self.finish is not None
        text = target.tokenizer.decode(self.generated, skip_special_tokens=True)
        return TurnEnd(self.turn, self.prompt_len, tuple(self.generated), text, self.finish)


def verify_step(
    row: RowState,
    asked: int,
    proposal: Proposal,
    logits: torch.Tensor,
    sampling: SamplingConfig,
    generator: torch.Generator,
) -> Round:
    """Verify ``proposal`` against the target's ``logits`` over ``[last, x_1..x_gamma]``
    (p_1..p_{gamma+1}): greedy or speculative sampling (:mod:`specviz.verify`).

    The record emits n_accepted + 1 tokens until :meth:`RowState.advance` trims it.
    """
    p = probabilities(logits, sampling)
    draft = proposal.tokens.to(logits.device)
    verdict: Verdict
    if sampling.greedy:
        verdict = verify_greedy(draft, logits)
    else:
        verdict = verify_sampling(draft, proposal.q_tokens, proposal.q, p, generator)
    n = verdict.n_accepted
    drafted = proposal.tokens.tolist()
    vocab = p.shape[-1]  # a draft id past the target's rows has p = 0
    verified = drafted[: min(n + 1, len(drafted))]
    return Round(
        turn=row.turn,
        index=row.index,
        prefill=False,
        k=asked,
        draft=tuple(drafted),
        q_tokens=None if proposal.q_tokens is None else tuple(proposal.q_tokens.float().tolist()),
        target=verdict.target_tokens,
        p=tuple(float(p[i, x]) if x < vocab else 0.0 for i, x in enumerate(verified)),
        p_next=float(p[n, verdict.next_token]),
        n_accepted=n,
        n_emitted=n + 1,
        finish=None,
    )


# -- the batch-size-1 decoder ---------------------------------------------------------------


class Decoder:
    """Speculative (or plain, with ``drafter=None``) decoding of prompts, batch size 1."""

    def __init__(
        self,
        target: LoadedModel,
        drafter: Drafter | None,
        policy: DraftPolicy,
        sampling: SamplingConfig,
        max_new_tokens: int,
        cache: DynamicCache,
        generator: torch.Generator,
    ) -> None:
        self.target = target
        self.drafter = drafter
        self.policy = policy
        self.memory = drafter if isinstance(drafter, LearnsAcrossRequests) else None
        self.sampling = sampling
        self.cache = cache  # shared with a layer-skip drafter, emptied at every turn
        self.rollback = cache_rollback(target.model, cache)  # crop, or restore + replay
        self.limits = TurnLimits.of(target, max_new_tokens)
        self.generator = generator  # shared with a sampling drafter, seeded per request

    def encode_turn(self, prompt: Prompt, answers: list[str]) -> list[int]:
        return self.limits.encode_turn(self.target, prompt, answers)

    @torch.inference_mode()
    def decode(self, prompt: Prompt, seed: int) -> Iterator[Record]:
        """Decode every turn of ``prompt``; sampling draws from a generator seeded by ``seed``."""
        self._start_request(seed, prompt.category)
        answers: list[str] = []
        index = 0
        for turn in range(len(prompt.turns)):
            end, index = yield from self._turn(turn, index, self.encode_turn(prompt, answers))
            answers.append(end.text)

    @torch.inference_mode()
    def decode_turn(self, prompt_ids: list[int], seed: int, category: str) -> Iterator[Record]:
        """One turn whose conversation is already encoded in ``prompt_ids`` (what a
        chat-completions server decodes per request, :mod:`specviz.serve`): the policy and a
        cross-request memory hear it as a request of ``category``."""
        self._start_request(seed, category)
        yield from self._turn(0, 0, prompt_ids)

    def _start_request(self, seed: int, category: str) -> None:
        """A request of ``category`` begins: the generator is seeded with ``seed``, and the
        policy and a cross-request memory hear the category."""
        self.generator.manual_seed(seed)
        self.policy.start_request(category)
        if self.memory is not None:
            self.memory.start_request(category)

    def _turn(
        self, turn: int, index: int, prompt_ids: list[int]
    ) -> Generator[Record, None, tuple[TurnEnd, int]]:
        """Prefill, rounds until the turn ends, then its end (a cross-request memory hears its
        output first); returns the end and the next record index."""
        self.rollback.clear(self.cache)
        prompt = torch.tensor(prompt_ids, dtype=torch.long, device=self.target.device)
        if self.drafter is not None:
            self.drafter.start(prompt)
        # Prefill: the whole prompt in one pass; its last logits give the first new token.
        logits = forward(self.target.model, prompt, self.cache, 0, last_only=True)
        row, first = RowState.prefill(
            self.limits, turn, index, prompt, logits[-1], self.sampling, self.generator
        )
        yield first
        while row.finish is None:
            yield from self._round(row)
        end = row.end(self.target)
        if self.memory is not None:
            self.memory.end_turn(end.tokens)
        yield end
        return end, row.index

    def _round(self, row: RowState) -> Iterator[Record]:
        asked = self.policy.next_k() if self.drafter is not None else 0
        k = row.budget(asked)
        proposal = Proposal(row.context.new_empty(0))
        shadow = None
        if k > 0:
            assert self.drafter is not None
            proposal = self.drafter.propose(row.context, k, self.policy.stop_rule)
            yield Drafted(proposal, k)
        elif asked == 0 and self.drafter is not None and self.policy.shadows:
            # a shadow draft: one token asked of a free drafter, never verified (see policies)
            would_be = self.drafter.propose(row.context, 1, None)
            shadow = int(would_be.tokens[0]) if len(would_be) else None
            yield Drafted(Proposal(row.context.new_empty(0)), 0)
        verified = replace(self._verify(row, asked, proposal), shadow=shadow)
        if self.drafter is not None:  # every verify round of a drafter, as in the event log
            self.policy.update(
                asked, *heard(len(proposal), verified.n_accepted, shadow, verified.target[0])
            )
        yield row.advance(verified)

    def _verify(self, row: RowState, asked: int, proposal: Proposal) -> Round:
        feed = row.feed(proposal)
        start = len(row.context) - 1  # the cache holds every context token but the last
        if len(proposal) > 0:
            self.rollback.checkpoint(self.cache)
        logits = forward(self.target.model, feed, self.cache, start)  # p_1..p_{gamma+1}
        verified = verify_step(row, asked, proposal, logits, self.sampling, self.generator)
        # drop rejected drafts; keep last, x_1..x_n
        self.rollback.keep(self.cache, self.target.model, feed, start, verified.n_accepted + 1)
        return verified
