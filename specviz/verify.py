"""Verification: which drafted tokens the target keeps, and the one token it adds itself.

Symbols follow Leviathan et al. 2023 (arXiv 2211.17192): the draft proposed x_1..x_gamma with
draft distributions q_1..q_gamma; one target forward gave p_1..p_{gamma+1}.

- Greedy: accept while x_i == argmax p_i; the first mismatch is replaced by argmax p_i; if all
  gamma are accepted the target adds argmax p_{gamma+1} (the bonus). The output is token for
  token the target's own greedy output.
- Sampling: accept x_i with probability min(1, p_i(x_i) / q_i(x_i)); at the first rejection draw
  the replacement from norm(max(0, p_i - q_i)) and stop; if all are accepted draw the bonus from
  p_{gamma+1}. The emitted tokens are distributed exactly as sampling from p alone.
  A drafter without a distribution (n-gram lookup) has q_i = one-hot(x_i).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from specviz.sampling import align_vocab, sample


@dataclass(frozen=True)
class Verdict:
    """Outcome of verifying one draft.

    ``n_accepted`` drafted tokens were kept; ``next_token`` is the correction (when
    ``n_accepted < gamma``) or the bonus; ``target_tokens[i]`` is what the target put at
    position i for every verified position (``n_accepted + 1`` of them, the last one being
    ``next_token``).
    """

    n_accepted: int
    next_token: int
    target_tokens: tuple[int, ...]


def residual(p_row: torch.Tensor, q_row: torch.Tensor) -> torch.Tensor:
    """norm(max(0, p - q)): where a rejected position's replacement is drawn from.

    When p == q the residual is empty (and a rejection has probability 0); p is returned then.
    """
    diff = (p_row - q_row).clamp(min=0.0)
    total = diff.sum()
    return diff / total if total > 0 else p_row


def verify_greedy(draft: torch.Tensor, target_logits: torch.Tensor) -> Verdict:
    """Greedy verification of ``draft`` (gamma ids) against ``target_logits`` (gamma+1 rows)."""
    choice = target_logits.argmax(dim=-1)  # argmax p_i for i = 1..gamma+1
    gamma = draft.shape[0]
    # n = length of the longest prefix with x_i == argmax p_i
    n = int((draft == choice[:gamma]).int().cumprod(dim=0).sum().item()) if gamma else 0
    chosen = choice[: n + 1].tolist()
    return Verdict(n, chosen[-1], tuple(chosen))


def verify_sampling(
    draft: torch.Tensor,
    q_draft: torch.Tensor | None,
    q: torch.Tensor | None,
    p: torch.Tensor,
    generator: torch.Generator,
) -> Verdict:
    """Speculative sampling (lossless).

    ``draft``: gamma ids; ``q_draft``: q_i(x_i) per drafted token (None for one-hot drafters);
    ``q``: the draft distributions (gamma rows) or None for one-hot; ``p``: processed target
    distributions (gamma+1 rows).
    """
    gamma = draft.shape[0]
    vocab = p.shape[-1]
    in_range = draft < vocab
    p_x = torch.where(in_range, p[torch.arange(gamma), draft.clamp(max=vocab - 1)], 0.0)
    q_x = torch.ones_like(p_x) if q_draft is None else q_draft.to(p_x)
    # r_i ~ U(0, 1); x_i is accepted when r_i < p_i(x_i) / q_i(x_i)  (i.e. with prob min(1, p/q))
    r = torch.rand(gamma, generator=generator, device=p.device)
    accepted = r * q_x < p_x
    n = int(accepted.int().cumprod(dim=0).sum().item()) if gamma else 0
    if n < gamma:
        # resample the rejected position from the residual norm(max(0, p_n - q_n))
        if q is None:
            q_row = torch.zeros(vocab, device=p.device)
            if bool(in_range[n]):  # an id beyond p's vocabulary has no mass in p to take away
                q_row[int(draft[n])] = 1.0
        else:
            q_row = align_vocab(q[n], vocab).to(p)
        next_token = sample(residual(p[n], q_row), generator)
    else:
        next_token = sample(p[gamma], generator)  # bonus from p_{gamma+1}
    kept = draft[:n].tolist()
    return Verdict(n, next_token, (*kept, next_token))
