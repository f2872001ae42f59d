"""From logits to the distributions p (target) and q (draft) that verification compares.

Temperature and top-p are applied identically to p and q (Leviathan et al. require the draft's
distribution to be processed like the target's). Under greedy decoding the distributions are the
plain softmax (temperature 1): they are logged as p and q but decisions use the argmax.
"""

from __future__ import annotations

import torch

from specviz.config import SamplingConfig


def probabilities(logits: torch.Tensor, sampling: SamplingConfig) -> torch.Tensor:
    """softmax(logits / T), restricted to the top-p nucleus and renormalized; rows are positions.

    Computed in float32 whatever the model's dtype.
    """
    logits = logits.float()
    if sampling.greedy:
        return torch.softmax(logits, dim=-1)
    probs = torch.softmax(logits / sampling.temperature, dim=-1)
    if sampling.top_p < 1.0:
        probs = top_p_filter(probs, sampling.top_p)
    return probs


def top_p_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose mass reaches ``top_p``; renormalize."""
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    sorted_probs = sorted_probs.masked_fill(mass_before >= top_p, 0.0)
    kept = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return kept / kept.sum(dim=-1, keepdim=True)


def sample(probs: torch.Tensor, generator: torch.Generator) -> int:
    """One token from a 1-D distribution."""
    return int(torch.multinomial(probs, 1, generator=generator).item())


def choose(logits: torch.Tensor, sampling: SamplingConfig, generator: torch.Generator) -> int:
    """The next token from one row of logits: argmax when greedy, else a sample from p."""
    if sampling.greedy:
        return int(logits.argmax().item())
    return sample(probabilities(logits, sampling), generator)


def align_vocab(probs: torch.Tensor, size: int) -> torch.Tensor:
    """Pad (with zeros) or cut the last dimension to ``size`` tokens.

    Draft and target may have different embedding sizes with one tokenizer (Qwen2.5-0.5B:
    151,936 rows, 7B: 152,064): ids past a model's rows have probability 0 under it, so
    verification compares the two distributions over the shared range. Cutting only removes
    draft ids the target cannot produce (p = 0 there, so they are always rejected).
    """
    have = probs.shape[-1]
    if have == size:
        return probs
    if have > size:
        return probs[..., :size]
    return torch.nn.functional.pad(probs, (0, size - have))
