"""Prompt lookup: copy what followed an earlier occurrence of the context's last n-gram.

For n from ``max_ngram`` down to ``min_ngram``, find the most recent earlier occurrence of the
last n tokens in the context (prompt and output so far) and propose the (up to k) tokens that
followed it. The first n with a match wins. No model, no probabilities: under sampling it is
verified with q = one-hot (see :mod:`specviz.verify`). transformers' ``prompt_lookup_num_tokens``
takes the earliest match; the most recent one tracks the current passage better in long outputs.
"""

from __future__ import annotations

import torch

from specviz.drafters.base import Proposal
from specviz.stopping import StopRule


class PromptLookupDrafter:
    def __init__(self, max_ngram: int = 3, min_ngram: int = 1) -> None:
        self.max_ngram = max_ngram
        self.min_ngram = min_ngram

    def start(self, context: torch.Tensor) -> None:
        return None

    def propose(self, context: torch.Tensor, k: int, stop: StopRule | None) -> Proposal:
        n_ctx = int(context.shape[0])
        for n in range(min(self.max_ngram, n_ctx - 1), self.min_ngram - 1, -1):
            pattern = context[n_ctx - n :]
            # windows[j] = context[j : j + n] for every start j that has a continuation
            windows = context[: n_ctx - 1].unfold(0, n, 1)
            hits = (windows == pattern).all(dim=1).nonzero().flatten()
            if hits.numel():
                start = int(hits[-1]) + n
                return Proposal(context[start : start + k].clone())
        return Proposal(context.new_empty(0))
