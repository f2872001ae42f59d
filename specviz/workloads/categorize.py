"""An optional task categorizer for prompts that come without a category (Arena-style logs).

How it works, in two stages, on a prompt's first turn:

1. **Cue rules** (:data:`CUES`), tried in order on the instruction (the text before the first
   blank line, so a pasted passage cannot trigger them): ``translat`` -> translation, ``summar``
   -> summarization, numbered passages ``[1]`` / "passage" / "context" -> rag, code fences or
   language names -> coding, "extract"/"JSON"/"list the names" -> extraction, "pretend"/"act
   as"/"you are a" -> roleplay, equations, percentages and math words -> math, "write"/"compose"/
   "draft" or a text genre -> writing. The first rule that matches decides.
2. Otherwise a **multinomial naive Bayes** classifier over the instruction's words (stop words
   dropped, numbers folded into ``<num>``, add-one smoothing), trained on labelled prompts (by
   default the built-in suite), picks the category with the highest log posterior. It mostly
   separates reasoning, stem and humanities, which have no reliable surface cue.

It is small and transparent on purpose: no model downloads, no hub access, deterministic. Its
accuracy is measured by :func:`leave_one_out_accuracy` on the built-in suite: each prompt is
classified by a naive Bayes model trained on all the other prompts. The cue rules, however, were
written while looking at the same suite, so the figure is measured on training-ish data and is
optimistic; ``docs/workloads.md`` gives the number and a test keeps it from regressing. Expect
less on real chat logs, whose tasks are more varied.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

from specviz.workloads.centroid import STOP_WORDS, WORD
from specviz.workloads.loaders import UNCATEGORIZED, builtin_prompts
from specviz.workloads.prompt import Prompt

#: (category, pattern) tried in order; patterns see the lower-cased instruction.
CUES: tuple[tuple[str, str], ...] = (
    ("translation", r"\btranslat"),
    ("summarization", r"\bsummar|\btl;?dr\b"),
    ("rag", r"\bpassages?\b|\bcontext\b|\[\d+\]"),
    ("coding", r"```|\b(python|javascript|sql|java|c\+\+|rust|function|code|bug|regex|script)\b"),
    ("extraction", r"\b(extract|pull out|json|table with|list the names|list all)\b"),
    ("roleplay", r"\b(pretend|act as|you are an? |imagine you are|play the role|in character)"),
    (
        "math",
        r"\b(solve|probability|equation|integers?|sum of|area|perimeter|percent)\b"
        r"|\d+\s*%|\d\s*[-+*/=]\s*\d",
    ),
    ("writing", r"^\s*(write|compose|draft)\b|\b(poem|story|essay|blog|email|speech|letter)\b"),
)
_CUES = tuple((c, re.compile(p)) for c, p in CUES)


def instruction(text: str) -> str:
    """The text before the first blank line: the request, without a pasted passage."""
    return text.strip().split("\n\n")[0].lower()


def cue(text: str) -> str | None:
    """The category of the first cue rule that matches, or None."""
    head = instruction(text)
    for category, pattern in _CUES:
        # code fences and numbered passages may follow the blank line
        target = text.lower() if category in ("rag", "coding") else head
        if pattern.search(target):
            return category
    return None


def features(text: str) -> list[str]:
    """The tokens the naive Bayes stage counts: the instruction's words, stop words dropped."""
    words = WORD.findall(instruction(text))
    return ["<num>" if w[0].isdigit() else w for w in words if w not in STOP_WORDS]


@dataclass(frozen=True)
class Categorizer:
    """A trained naive Bayes model: log priors and per-category smoothed log likelihoods."""

    categories: tuple[str, ...]
    log_prior: dict[str, float]
    log_likelihood: dict[str, dict[str, float]]
    log_unseen: dict[str, float]

    @staticmethod
    def train(prompts: Sequence[Prompt]) -> Categorizer:
        labelled = [p for p in prompts if p.category != UNCATEGORIZED]
        if not labelled:
            raise ValueError("the categorizer needs labelled prompts to train on")
        categories = tuple(dict.fromkeys(p.category for p in labelled))
        counts = {c: Counter() for c in categories}
        docs = Counter(p.category for p in labelled)
        for p in labelled:
            counts[p.category].update(features(p.turns[0]))
        vocab = set().union(*counts.values())
        log_prior = {c: math.log(docs[c] / len(labelled)) for c in categories}
        log_likelihood: dict[str, dict[str, float]] = {}
        log_unseen: dict[str, float] = {}
        for c in categories:
            total = sum(counts[c].values()) + len(vocab) + 1
            log_likelihood[c] = {w: math.log((n + 1) / total) for w, n in counts[c].items()}
            log_unseen[c] = math.log(1 / total)
        return Categorizer(categories, log_prior, log_likelihood, log_unseen)

    def scores(self, text: str) -> dict[str, float]:
        tokens = features(text)
        return {
            c: self.log_prior[c]
            + sum(self.log_likelihood[c].get(t, self.log_unseen[c]) for t in tokens)
            for c in self.categories
        }

    def predict(self, text: str) -> str:
        """A cue rule's category if one matches, else the naive Bayes choice."""
        ruled = cue(text)
        if ruled is not None and ruled in self.categories:
            return ruled
        scores = self.scores(text)
        return max(self.categories, key=lambda c: scores[c])


_DEFAULT: Categorizer | None = None


def default_categorizer() -> Categorizer:
    """The categorizer trained on the built-in suite (trained once per process)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Categorizer.train(builtin_prompts())
    return _DEFAULT


def categorize_prompts(
    prompts: Sequence[Prompt], categorizer: Categorizer | None = None
) -> list[Prompt]:
    """Label the ``uncategorized`` prompts from their first turn; others keep their category."""
    model = categorizer or default_categorizer()
    return [
        replace(p, category=model.predict(p.turns[0])) if p.category == UNCATEGORIZED else p
        for p in prompts
    ]


def leave_one_out_accuracy(prompts: Sequence[Prompt]) -> float:
    """Share of prompts classified right by cue rules + a model trained on all the others."""
    hits = 0
    for i, p in enumerate(prompts):
        model = Categorizer.train([q for j, q in enumerate(prompts) if j != i])
        hits += model.predict(p.turns[0]) == p.category
    return hits / len(prompts)


def training_accuracy(prompts: Sequence[Prompt]) -> float:
    """Share classified right by a model trained on the same prompts (an optimistic bound)."""
    model = Categorizer.train(prompts)
    return sum(model.predict(p.turns[0]) == p.category for p in prompts) / len(prompts)
