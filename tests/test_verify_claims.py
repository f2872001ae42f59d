"""Claims about verification that mutation testing found unpinned (docs/testing.md): an empty
draft, draft tokens beyond the target's vocabulary, the residual's normalization, and that every
random draw comes from the caller's generator (so a seeded run repeats whatever else drew)."""

from __future__ import annotations

import torch

from specviz.verify import residual, verify_greedy, verify_sampling

V = 5
EMPTY = torch.tensor([], dtype=torch.long)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_an_empty_draft_accepts_nothing_and_the_target_adds_its_own_token():
    logits = torch.tensor([[0.1, 2.0, 0.3, 0.0, -1.0]])
    assert verify_greedy(EMPTY, logits) == verify_greedy(EMPTY, logits)
    verdict = verify_greedy(EMPTY, logits)
    assert (verdict.n_accepted, verdict.next_token, verdict.target_tokens) == (0, 1, (1,))
    p = torch.softmax(logits, dim=-1)
    sampled = verify_sampling(EMPTY, None, None, p, gen(0))
    assert sampled.n_accepted == 0 and sampled.target_tokens == (sampled.next_token,)


def test_a_draft_token_beyond_the_targets_vocabulary_is_always_rejected():
    # a draft model with more embedding rows than the target (Qwen2.5-0.5B vs 7B) can propose
    # an id the target has no probability for: p(x) = 0, so it is never accepted, and the
    # replacement comes from p itself (its one-hot q lies outside p's support)
    p = torch.tensor([[0.1, 0.2, 0.3, 0.2, 0.2], [0.2] * V])
    for seed in range(200):
        verdict = verify_sampling(torch.tensor([V]), None, None, p, gen(seed))
        assert verdict.n_accepted == 0
        assert 0 <= verdict.next_token < V


def test_the_residual_is_a_distribution_and_equal_distributions_give_the_target():
    p = torch.tensor([0.1, 0.2, 0.3, 0.2, 0.2])
    q = torch.tensor([0.3, 0.3, 0.1, 0.2, 0.1])
    r = residual(p, q)
    assert torch.allclose(r.sum(), torch.tensor(1.0))
    assert torch.allclose(r, torch.tensor([0.0, 0.0, 2 / 3, 0.0, 1 / 3]))
    assert torch.equal(residual(p, p), p)  # no mass to resample: p, never 0/0


def test_sampling_verification_draws_only_from_the_callers_generator():
    p = torch.tensor([[0.3, 0.3, 0.2, 0.1, 0.1]] * 4)
    q = torch.tensor([[0.1, 0.6, 0.1, 0.1, 0.1]] * 3)
    draft = torch.tensor([1, 1, 1])
    q_draft = q[torch.arange(3), draft]
    one_hot = torch.tensor([2, 2, 2])
    for seed in range(40):
        verdicts = []
        for global_seed in (0, 1):
            torch.manual_seed(global_seed)  # anything drawn from the global RNG would differ
            verdicts.append(
                (
                    verify_sampling(draft, q_draft, q, p, gen(seed)),
                    verify_sampling(one_hot, None, None, p, gen(seed)),
                )
            )
        assert verdicts[0] == verdicts[1]
