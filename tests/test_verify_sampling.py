"""Speculative sampling preserves the target's distribution (chi-square tests, fixed seeds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from specviz import verify
from specviz.sampling import top_p_filter

V = 6
P = torch.tensor([[0.30, 0.25, 0.20, 0.15, 0.07, 0.03], [0.05, 0.05, 0.10, 0.20, 0.25, 0.35]])
Q = torch.tensor([[0.05, 0.10, 0.40, 0.05, 0.30, 0.10]])
N = 20_000


def first_emitted(q_rows: torch.Tensor | None, draft_sampler, seed: int = 0) -> np.ndarray:
    """Counts of the first emitted token over N one-token drafts."""
    gen = torch.Generator().manual_seed(seed)
    counts = np.zeros(V)
    for _ in range(N):
        x = draft_sampler(gen)
        draft = torch.tensor([x])
        q_tok = None if q_rows is None else q_rows[0, x].view(1)
        verdict = verify.verify_sampling(draft, q_tok, q_rows, P, gen)
        counts[verdict.target_tokens[0]] += 1
    return counts


def draft_from_q(gen: torch.Generator) -> int:
    return int(torch.multinomial(Q[0], 1, generator=gen))


def test_speculative_sampling_emits_tokens_distributed_as_p():
    counts = first_emitted(Q, draft_from_q)
    assert chisquare(counts, N * P[0].numpy()).pvalue > 0.01


def test_one_hot_drafts_are_verified_losslessly():
    # a drafter without probabilities (n-gram lookup) always proposes token 2
    counts = first_emitted(None, lambda gen: 2)
    assert chisquare(counts, N * P[0].numpy()).pvalue > 0.01


def test_bonus_token_is_drawn_from_the_next_position():
    gen = torch.Generator().manual_seed(1)
    counts = np.zeros(V)
    for _ in range(N):
        # q == p: every draft is accepted, the bonus comes from p_2
        x = int(torch.multinomial(P[0], 1, generator=gen))
        verdict = verify.verify_sampling(torch.tensor([x]), P[0, x].view(1), P[:1], P, gen)
        assert verdict.n_accepted == 1
        counts[verdict.target_tokens[1]] += 1
    assert chisquare(counts, N * P[1].numpy()).pvalue > 0.01


def test_chi_square_catches_resampling_from_p_instead_of_the_residual(monkeypatch):
    monkeypatch.setattr(verify, "residual", lambda p_row, q_row: p_row)
    counts = first_emitted(Q, draft_from_q)
    assert chisquare(counts, N * P[0].numpy()).pvalue < 1e-6


def test_greedy_verification_accepts_the_matching_prefix():
    logits = torch.log(P[[0, 0, 1]])  # argmax: 0, 0, 5
    verdict = verify.verify_greedy(torch.tensor([0, 3]), logits)
    assert (verdict.n_accepted, verdict.next_token, verdict.target_tokens) == (1, 0, (0, 0))
    all_in = verify.verify_greedy(torch.tensor([0, 0]), logits)
    assert (all_in.n_accepted, all_in.next_token) == (2, 5)
    # a mismatch first and a match after it: the prefix is empty (one token matches, but it
    # follows a rejection), so the target's own token replaces the first draft
    late = verify.verify_greedy(torch.tensor([3, 0]), logits)
    assert (late.n_accepted, late.next_token, late.target_tokens) == (0, 0, (0,))


@pytest.mark.parametrize("top_p", [0.5, 0.9])
def test_top_p_keeps_the_smallest_nucleus(top_p):
    kept = top_p_filter(P[:1], top_p)[0]
    order = P[0].argsort(descending=True)
    mass = P[0][order].cumsum(0)
    n_keep = int((mass < top_p).sum()) + 1
    assert (kept[order[:n_keep]] > 0).all() and (kept[order[n_keep:]] == 0).all()
    assert torch.isclose(kept.sum(), torch.tensor(1.0))
