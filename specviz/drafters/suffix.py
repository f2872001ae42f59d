"""Suffix-cache drafting: speculate from counted continuations of the context's longest suffix.

After SuffixDecoding (Oliaro et al., arXiv 2411.04975; Snowflake ArcticInference), written
from the method's description:

- A :class:`SuffixTrie` counts every substring of length <= ``depth`` of the sequences added to
  it (a depth-bounded suffix tree): the node reached by a path ``t_1..t_m`` counts the occurrences
  of ``t_1..t_m``, each child the occurrences followed by that token.
- Two tries are consulted each round: the request's own (its prompt and output so far, grown
  as the context grows) and the run's cross-request memory (:class:`SuffixMemory`: the outputs
  of earlier turns and requests of the run, in stream order).
- In each trie the longest suffix of the context (at most ``depth - 1`` tokens) that has a
  continuation is matched; from it the most frequent child is followed, token by token, while
  the continuation's empirical probability (product of child count / parent count) stays at
  least ``min_token_prob``, for at most ``floor(spec_factor * match length)`` tokens (and k, and
  the trie's depth). The draft with the larger score (sum of those probabilities, the expected
  number of accepted tokens under the counts) wins; the request's own trie wins ties.
- The memory is bounded: it keeps at most ``max_tokens`` output tokens and forgets the oldest
  sequences first. Partitioned by task (``partition = "task"``), each request reads and writes
  only the trie of its own category; eviction still follows the one stream order, so shared and
  partitioned memories hold the same number of tokens.

No model, no probabilities: under sampling the draft is verified with q = one-hot (as prompt
lookup). Nothing here reads a clock; drafting costs a few dictionary look-ups per token.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import torch

from specviz.drafters.base import Proposal
from specviz.stopping import StopRule


class _Node:
    __slots__ = ("children", "count")

    def __init__(self) -> None:
        self.count = 0
        self.children: dict[int, _Node] = {}


class SuffixTrie:
    """Counts of every substring of at most ``depth`` tokens of the sequences added."""

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.root = _Node()
        self.nodes = 0
        self._open: list[_Node] = []  # nodes of the suffixes ending at the last pushed token

    def push(self, token: int) -> None:
        """Append one token to the sequence being grown (:meth:`close` ends it)."""
        grown = []
        for node in [self.root, *self._open]:
            child = node.children.get(token)
            if child is None:
                child = node.children[token] = _Node()
                self.nodes += 1
            child.count += 1
            grown.append(child)
        self._open = grown[: self.depth - 1]  # a suffix of depth tokens cannot grow further

    def close(self) -> None:
        """The sequence being grown ends; the next push starts a new one."""
        self._open = []

    def add(self, tokens: Sequence[int]) -> None:
        self.close()
        for token in tokens:
            self.push(token)
        self.close()

    def remove(self, tokens: Sequence[int]) -> None:
        """Undo :meth:`add` of ``tokens``; nodes whose count falls to zero are dropped."""
        for start in range(len(tokens)):
            node = self.root
            for token in tokens[start : start + self.depth]:
                child = node.children[token]
                child.count -= 1
                if child.count == 0:
                    del node.children[token]
                    self.nodes -= _size(child)
                    break
                node = child

    def match(self, context: Sequence[int]) -> tuple[_Node, int] | None:
        """The node of the longest suffix of ``context`` with a continuation, and its length."""
        for length in range(min(self.depth - 1, len(context)), 0, -1):
            node: _Node | None = self.root
            for token in context[len(context) - length :]:
                node = node.children.get(token)
                if node is None:
                    break
            if node is not None and node.children:
                return node, length
        return None

    def speculate(
        self, context: Sequence[int], k: int, spec_factor: float, min_token_prob: float
    ) -> tuple[list[int], float]:
        """(draft, score): the most frequent continuation of the matched suffix."""
        found = self.match(context)
        if found is None:
            return [], 0.0
        node, length = found
        limit = min(k, int(spec_factor * length), self.depth - length)
        tokens: list[int] = []
        prob = 1.0
        score = 0.0
        while len(tokens) < limit and node.children:
            token, child = max(node.children.items(), key=lambda tc: (tc[1].count, -tc[0]))
            prob *= child.count / node.count
            if prob < min_token_prob:
                break
            tokens.append(token)
            score += prob
            node = child
        return tokens, score


def _size(node: _Node) -> int:
    return 1 + sum(_size(c) for c in node.children.values())


class SuffixMemory:
    """Outputs of earlier turns and requests, in stream order, at most ``max_tokens`` tokens.

    ``add(key, tokens)`` files a sequence under ``key`` (the task label, or "" when shared);
    :meth:`trie` gives one key's trie only. The oldest sequences (of any key) are forgotten
    first; a sequence longer than the bound keeps its last ``max_tokens`` tokens.
    """

    def __init__(self, max_tokens: int, depth: int) -> None:
        self.max_tokens = max_tokens
        self.depth = depth
        self.tries: dict[str, SuffixTrie] = {}
        self.entries: deque[tuple[str, tuple[int, ...]]] = deque()
        self.tokens = 0

    def add(self, key: str, tokens: Sequence[int]) -> None:
        kept = tuple(tokens)[-self.max_tokens :] if self.max_tokens else ()
        if not kept:
            return
        self.tries.setdefault(key, SuffixTrie(self.depth)).add(kept)
        self.entries.append((key, kept))
        self.tokens += len(kept)
        while self.tokens > self.max_tokens:
            old_key, old = self.entries.popleft()
            self.tries[old_key].remove(old)
            self.tokens -= len(old)

    def trie(self, key: str) -> SuffixTrie | None:
        return self.tries.get(key)

    @property
    def nodes(self) -> int:
        return sum(t.nodes for t in self.tries.values())


class SuffixDrafter:
    """Drafts from the request's own suffix trie and the run's cross-request memory.

    ``partition``: ``"shared"`` (one memory for the whole stream) or ``"task"`` (one per task
    label, the request's category: for prompts without one, the categorizer's label when the
    workload was categorized, else one "uncategorized" partition). Implements
    :class:`~specviz.drafters.base.LearnsAcrossRequests`: the decoder announces each request's
    task and hands over each finished turn's output.
    """

    def __init__(
        self,
        max_tokens: int,
        depth: int,
        spec_factor: float,
        min_token_prob: float,
        partition: str,
    ) -> None:
        self.memory = SuffixMemory(max_tokens, depth)
        self.depth = depth
        self.spec_factor = spec_factor
        self.min_token_prob = min_token_prob
        self.partition = partition
        self.key = ""
        self.local = SuffixTrie(depth)
        self.seen: list[int] = []

    def start_request(self, task: str) -> None:
        self.key = task if self.partition == "task" else ""

    def end_turn(self, tokens: Sequence[int]) -> None:
        self.memory.add(self.key, tokens)

    def start(self, context: torch.Tensor) -> None:
        self.local = SuffixTrie(self.depth)
        self.seen = []

    def propose(self, context: torch.Tensor, k: int, stop: StopRule | None) -> Proposal:
        for token in context[len(self.seen) :].tolist():
            self.local.push(token)
            self.seen.append(token)
        args = (self.seen, k, self.spec_factor, self.min_token_prob)
        tokens, score = self.local.speculate(*args)
        shared = self.memory.trie(self.key)
        if shared is not None:
            other, other_score = shared.speculate(*args)
            if other_score > score:
                tokens = other
        return Proposal(torch.tensor(tokens, dtype=torch.long, device=context.device))
