"""The decoding loop: a generator that yields one record per phase of every round.

``Decoder.request(prompt)`` runs all turns of one prompt and yields, in order:

- :class:`Drafted` after the drafter proposed (only in rounds that draft);
- :class:`Round` after the target's forward pass and verification (prefill rounds included);
- :class:`TurnEnd` when a turn finished.

Nothing here reads a clock or writes a file: :mod:`specviz.runner` times the gaps between
records (the time to produce a ``Drafted`` is draft time, the time to produce a ``Round`` is
verify or prefill time) and records them. Plain autoregressive decoding is the same loop with no
drafter, so baseline and speculation count tokens and time identically.

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

from collections.abc import Iterator
from dataclasses import dataclass, replace

import torch
from transformers import DynamicCache

from specviz.config import SamplingConfig
from specviz.drafters.base import Drafter, LearnsAcrossRequests, Proposal
from specviz.forward import forward
from specviz.hybrid.rollback import cache_rollback
from specviz.limits import TurnLimits
from specviz.models import LoadedModel
from specviz.policies import DraftPolicy
from specviz.sampling import choose, probabilities
from specviz.verify import Verdict, verify_greedy, verify_sampling
from specviz.workloads.prompt import Prompt


@dataclass(frozen=True)
class Drafted:
    proposal: Proposal
    k: int


@dataclass(frozen=True)
class Round:
    """One target forward pass and its verdict.

    ``draft``/``q``: the proposal (q per drafted token, None without a distribution);
    ``target``: the token the target put at each verified position (n_accepted + 1 of them);
    ``p``: target probability of the drafted token at each verified draft position
    (min(n_accepted + 1, len(draft)) values); ``p_next``: target probability of the
    correction/bonus token; ``n_emitted``: how many of ``target`` reached the output (fewer when
    the turn ended inside the round); ``finish``: "eos" or "length" when the turn ended here.
    """

    turn: int
    index: int
    prefill: bool
    k: int
    draft: tuple[int, ...]
    q: tuple[float, ...] | None
    target: tuple[int, ...]
    p: tuple[float, ...]
    p_next: float
    n_accepted: int
    n_emitted: int
    finish: str | None


def verified_round(
    turn: int, index: int, k: int, proposal: Proposal, verdict: Verdict, p: torch.Tensor
) -> Round:
    """The record of a verify round: ``p`` holds the target's p_1..p_{gamma+1} (one row per fed
    position); the round emits n_accepted + 1 tokens until the turn-end check trims it."""
    n = verdict.n_accepted
    draft = proposal.tokens.tolist()
    n_verified = min(n + 1, len(draft))
    vocab = p.shape[-1]  # a draft id past the target's rows has p = 0
    p_draft = tuple(float(p[i, x]) if x < vocab else 0.0 for i, x in enumerate(draft[:n_verified]))
    q = None if proposal.q_tokens is None else tuple(proposal.q_tokens.float().tolist())
    return Round(
        turn,
        index,
        False,
        k,
        tuple(draft),
        q,
        verdict.target_tokens,
        p_draft,
        float(p[n, verdict.next_token]),
        n,
        n + 1,
        None,
    )


@dataclass(frozen=True)
class TurnEnd:
    turn: int
    prompt_tokens: int
    tokens: tuple[int, ...]
    text: str
    finish: str


Record = Drafted | Round | TurnEnd


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
        self.sampling = sampling
        self.cache = cache  # shared with a layer-skip drafter, emptied at every turn
        self.rollback = cache_rollback(target.model, cache)  # crop, or restore + replay
        self.limits = TurnLimits.of(target, max_new_tokens)
        self.generator = generator  # shared with a sampling drafter, seeded per request

    def encode_turn(self, prompt: Prompt, answers: list[str]) -> list[int]:
        return self.limits.encode_turn(self.target, prompt, answers)

    @torch.inference_mode()
    def request(self, prompt: Prompt, seed: int) -> Iterator[Record]:
        """Decode every turn of ``prompt``; sampling draws from a generator seeded by ``seed``."""
        self.generator.manual_seed(seed)
        self.policy.start_request(prompt.category)
        memory = self.drafter if isinstance(self.drafter, LearnsAcrossRequests) else None
        if memory is not None:
            memory.start_request(prompt.category)
        answers: list[str] = []
        index = 0
        for turn in range(len(prompt.turns)):
            ids = self.encode_turn(prompt, answers)
            end: TurnEnd | None = None
            for record in self._turn(turn, index, ids):
                if isinstance(record, Round):
                    index += 1
                if isinstance(record, TurnEnd):
                    end = record
                    if memory is not None:
                        memory.end_turn(record.tokens)
                yield record
            assert end is not None
            answers.append(end.text)

    # -- one turn -------------------------------------------------------------------------

    def _turn(self, turn: int, first_round: int, prompt_ids: list[int]) -> Iterator[Record]:
        device = self.target.device
        model = self.target.model
        self.rollback.clear(self.cache)
        context = torch.tensor(prompt_ids, dtype=torch.long, device=device)
        if self.drafter is not None:
            self.drafter.start(context)

        # Prefill: the whole prompt in one pass; its last logits give the first new token.
        logits = forward(model, context, self.cache, 0, last_only=True)
        first = choose(logits[-1], self.sampling, self.generator)
        p_first = float(probabilities(logits[-1:], self.sampling)[0, first])
        generated = [first]
        finish = self.limits.finish(generated, len(context) + 1)
        context = torch.cat([context, context.new_tensor([first])])
        yield Round(turn, first_round, True, 0, (), None, (first,), (), p_first, 0, 1, finish)

        index = first_round + 1
        while finish is None:
            asked = self.policy.next_k() if self.drafter is not None else 0
            k = self.limits.draft_budget(asked, len(generated), len(context))
            proposal = Proposal(context.new_empty(0))
            if k > 0:
                assert self.drafter is not None
                proposal = self.drafter.propose(context, k, self.policy.min_confidence)
                yield Drafted(proposal, k)
            round_ = self._verify(turn, index, asked, context, proposal)
            if k > 0:
                assert self.drafter is not None
                self.drafter.feedback(round_.n_accepted)
            if self.drafter is not None:  # every verify round of a drafter, as in the event log
                self.policy.update(asked, len(proposal), round_.n_accepted)
            new = list(round_.target)
            kept = self.limits.emitted(generated, new, len(context))
            generated += new[:kept]
            finish = self.limits.finish(generated, len(context) + kept)
            context = torch.cat([context, context.new_tensor(new[:kept])])
            yield replace(round_, n_emitted=kept, finish=finish)
            index += 1
        text = self.target.tokenizer.decode(generated, skip_special_tokens=True)
        yield TurnEnd(turn, len(prompt_ids), tuple(generated), text, finish)

    def _verify(
        self, turn: int, index: int, k: int, context: torch.Tensor, proposal: Proposal
    ) -> Round:
        gamma = len(proposal)
        feed = torch.cat([context[-1:], proposal.tokens.to(context.device)])
        if gamma > 0:
            self.rollback.checkpoint(self.cache)
        logits = forward(self.target.model, feed, self.cache, len(context) - 1)  # p_1..p_{gamma+1}
        p = probabilities(logits, self.sampling)
        verdict: Verdict
        if self.sampling.greedy:
            verdict = verify_greedy(proposal.tokens.to(logits.device), logits)
        else:
            verdict = verify_sampling(
                proposal.tokens.to(p.device), proposal.q_tokens, proposal.q, p, self.generator
            )
        n = verdict.n_accepted
        # drop rejected drafts; keep last, x_1..x_n
        self.rollback.keep(self.cache, self.target.model, feed, len(context) - 1, n + 1)
        return verified_round(turn, index, k, proposal, verdict, p)
