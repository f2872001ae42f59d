"""The records the decoding loops yield (:mod:`specviz.engine`, :mod:`specviz.batch.decoder`).

Plain data, no torch: the recorder, the metrics and the synthetic-event helpers build and read
them without loading a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from specviz.drafters.base import Proposal


@dataclass(frozen=True)
class Drafted:
    """The drafter proposed ``proposal``, asked for ``budget`` tokens (the policy's k capped by
    the turn's token budget; :attr:`Round.k` is the uncapped k the policy asked). Budget 0 with
    an empty proposal: the drafter was asked for a shadow token (:attr:`Round.shadow`)."""

    proposal: Proposal
    budget: int


@dataclass(frozen=True)
class Round:
    """One target forward pass and its verdict.

    ``k``: the draft length the policy asked (0 for plain decoding and prefill), before the
    turn's token budget capped it; ``draft``/``q_tokens``: the proposal (the drafter's
    probability of each drafted token, None without a distribution; the name is the proposal's
    :attr:`~specviz.drafters.base.Proposal.q_tokens`, while ``Proposal.q`` holds whole
    distributions; the event column is ``q``); ``target``: the token the target put at each
    verified position (n_accepted + 1 of them); ``p``: target probability of the drafted token at each verified
    draft position (min(n_accepted + 1, len(draft)) values); ``p_next``: target probability of
    the correction/bonus token; ``n_emitted``: how many of ``target`` reached the output (fewer
    when the turn ended inside the round); ``finish``: "eos" or "length" when the turn ended here;
    ``shadow``: in a round at k = 0 of a shadowing policy, the token the drafter would have
    drafted first (never verified; :mod:`specviz.policies`), else None.
    """

    turn: int
    index: int
    prefill: bool
    k: int
    draft: tuple[int, ...]
    q_tokens: tuple[float, ...] | None
    target: tuple[int, ...]
    p: tuple[float, ...]
    p_next: float
    n_accepted: int
    n_emitted: int
    finish: str | None
    shadow: int | None = None


@dataclass(frozen=True)
class TurnEnd:
    turn: int
    prompt_tokens: int
    tokens: tuple[int, ...]
    text: str
    finish: str


Record = Drafted | Round | TurnEnd
