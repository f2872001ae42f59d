"""Labelling real chat traffic with MT-Bench's categories, or ``other`` (never forced).

ShareGPT has no task labels. A :class:`Labeller` (a protocol: anything with ``categories`` and
``label(text)``) assigns a prompt one of MT-Bench's 8 categories or :data:`OTHER`. The default,
:class:`CueCentroidLabeller`, does what the field's cheap topic labellers do (keyword rules, then
nearest centroid on TF-IDF), with no download and no dependency:

1. :func:`clean` drops text that ChatGPT browser extensions appended to ShareGPT prompts;
2. **cue rules** (:data:`CUES`, written for real chat traffic), the first match decides: a later
   turn with no task of its own ("continue", "hi", "acknowledged"), translation, summarization
   and answering from given sources read ``other`` (not MT-Bench categories); code or
   programming words read ``coding``; then roleplay, extraction, math (math words or an
   arithmetic expression; dates, phone numbers and percentages no longer count) and writing;
3. otherwise the **nearest TF-IDF centroid** (:class:`~specviz.workloads.centroid.CentroidModel`)
   fitted on the built-in suite's and MT-Bench's prompts of MT-Bench's categories plus a seed
   vocabulary per category (:data:`LEXICON`); its choice stands only when the prompt's head is
   mostly ASCII letters, at least ``min_known`` of its words and ``min_words`` distinct words
   are in the vocabulary and its cosine similarity is at least ``min_similarity``. Otherwise
   ``other``: a prompt in another language, a fragment of a conversation, or a topic the
   training prompts never touch is not forced into a category.

Accuracy is measured on prompts the labeller was not fitted on: MT-Bench's 80 and the built-in
suite leave-one-out (:func:`held_out_mt_bench`, :func:`held_out_builtin`: each prompt labelled by
a labeller fitted on everything else), and 100 hand-labelled ShareGPT prompts never used to fit
or tune it (:func:`hand_labelled_confusion`, ``data/sharegpt_hand_labels.json``);
:func:`labeller_accuracy` gives all three and ``docs/workloads.md`` the figures and how the
thresholds were chosen. It labels the 17,395 ShareGPT first turns in a few seconds on one core.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from specviz.resources import shipped_dir
from specviz.workloads.centroid import CentroidModel, head
from specviz.workloads.loaders import builtin_prompts, mt_bench_prompts
from specviz.workloads.packaged import MT_BENCH, SHAREGPT, data_path
from specviz.workloads.prompt import Prompt, WorkloadError
from specviz.workloads.sharegpt import first_turns, read_conversations

MT_BENCH_CATEGORIES = (
    "writing",
    "roleplay",
    "reasoning",
    "math",
    "coding",
    "extraction",
    "stem",
    "humanities",
)
OTHER = "other"

#: The built-in suite's categories (and the cue rules') in MT-Bench's label set.
TO_MT_BENCH: dict[str, str] = {c: c for c in MT_BENCH_CATEGORIES} | {
    "translation": OTHER,
    "summarization": OTHER,
    "rag": OTHER,
}


class Labeller(Protocol):
    """Assigns a prompt's text one of ``categories`` or ``other``."""

    @property
    def categories(self) -> tuple[str, ...]: ...

    def label(self, text: str) -> str: ...


#: Text that browser extensions for ChatGPT appended to prompts in ShareGPT ("translate now"
#: buttons, prompt libraries); it says nothing about the task.
ARTIFACTS = re.compile(
    r"지금 번역하기|translate now|please write in english language\.?|answer in english\.?"
    r"|share prompt",
    re.IGNORECASE,
)

#: (label, pattern) tried in order on the lower-cased head of a prompt (the text before a pasted
#: passage; :func:`specviz.workloads.centroid.head`), except ``coding``'s code pattern, which
#: also looks at the pasted part. Written for real chat traffic; the first match decides.
CUES: tuple[tuple[str, str], ...] = (
    # a conversation's later turn with no task of its own, or a bare greeting
    (
        OTHER,
        r"^\W*(please |pls )?(continue|go on|keep going|more|next|thanks?( you)?|ok(ay)?|yes|no"
        r"|hi|hello|hey|test)\b\W*(writing|please)?\W*$|\backnowledged?\b",
    ),
    # not MT-Bench categories
    (OTHER, r"\btranslat|\bsummar|\btl;?dr\b"),
    # answering from given sources (RAG; e.g. a browser extension's "Web search results: [1]")
    (OTHER, r"\bweb search results\b|\bpassages?\b|\[\d+\]"),
    (
        "coding",
        r"```|\b(python|javascript|typescript|java|c\+\+|c#|golang|rust|kotlin|swift|php|ruby"
        r"|sql|mysql|postgres\w*|html|css|react|angular|vue|node(\.?js)?|npm|django|flask"
        r"|laravel|spring boot|bash|powershell|linux|docker|kubernetes|git|github|api|regex"
        r"|json|yaml|vba|excel formula|function|code|coding|bug|debug|compile\w*|class"
        r"|method|variable|database|backend|frontend|app|website|program(ming)?|algorithm"
        r"|plugin|command ?line|terminal|cli|sdk|compiler|eslint|webpack)\b",
    ),
    (
        "roleplay",
        r"\b(pretend|act as|act like|you are an? |imagine you are|imagine yourself|play the role"
        r"|role ?play|in character|as if you were)",
    ),
    (
        "extraction",
        r"\b(extract|pull out|list the names|list all the)\b|\bidentify\b.*\b(following|text|"
        r"passage|paragraph)\b|\bfrom the (following|text|passage|paragraph)\b",
    ),
    # a request that opens with a writing verb is writing, whatever its topic ("a derivative work")
    ("writing", r"^\W*(please )?(write|compose|draft|rewrite|rephrase|paraphrase|proofread)\b"),
    (
        "math",
        r"\b(solve|equations?|probability|integral|derivative|integers?|prime numbers?|sum of"
        r"|perimeter|polynomial|theorem|median|variance|standard deviation|arithmetic)\b"
        r"|\d\s*[+*^×÷]\s*\d|\b\d*[a-z]\s*\^\s*\d|\b\d+[a-z]\s*[+-]\s*\d+\s*=",
    ),
    (
        "writing",
        r"\b(poem|story|essay|blog|speech|letter|song|lyrics|tweet|slogan|caption|article"
        r"|screenplay|novel|chapter|(video|movie|film|tv|youtube|ad) script|(an?|this) e-?mail)\b",
    ),
)
_CUES = tuple((label, re.compile(p)) for label, p in CUES)

#: A seed vocabulary per category, written from general knowledge (not from any labelled set),
#: added to the training texts as one more text of its category, :data:`LEXICON_WEIGHT` times:
#: the topics a category covers that a few dozen training prompts cannot all mention.
LEXICON: dict[str, str] = {
    "writing": "write draft compose essay story poem blog post email letter speech article"
    " narrative persuasive creative description outline paragraph tone audience headline review",
    "roleplay": "pretend imagine character role persona act play you are famous person speak"
    " respond style voice stay in character as if you were game master interview",
    "reasoning": "puzzle riddle logic logical deduce deduction conclude conclusion assume suppose"
    " true false statement infer inference argument valid sequence order who how many",
    "math": "calculate compute number sum product equation solve value area volume triangle"
    " circle square probability percentage fraction ratio integer prime geometry algebra",
    "coding": "function code program implement algorithm python javascript class method"
    " variable loop array string bug error compile database query sql api library install",
    "extraction": "extract identify list names dates entities following text table structured"
    " format fields values information details mentioned given document",
    "stem": "physics chemistry biology science scientific energy atom molecule cell gene dna"
    " protein evolution climate gravity force electric circuit voltage magnetic wave light"
    " particle chemical reaction enzyme virus bacteria organism planet star engineering"
    " machine learning neural network experiment hypothesis nuclear medicine disease brain",
    "humanities": "history historical philosophy philosopher ethics moral religion culture"
    " cultural society social sociology economics economic economy market inflation politics"
    " political government democracy war empire revolution century ancient art artist painting"
    " music literature author law legal rights anthropology psychology education",
}
LEXICON_WEIGHT = 3
_CODE = re.compile(
    r"```|^\s*(def |class |import |from \S+ import|#include|public |function )"
    r"|[;{]\s*$|</\w+>",
    re.MULTILINE,
)


def clean(text: str) -> str:
    """The prompt without the extension artifacts in :data:`ARTIFACTS`."""
    return ARTIFACTS.sub(" ", text).strip()


def cue(text: str) -> str | None:
    """The label of the first cue rule that matches ``text`` (already :func:`clean`), or None."""
    instruction = head(text)
    for label, pattern in _CUES:
        if pattern.search(instruction):
            return label
        if label == "coding" and len(_CODE.findall(text)) >= 2:
            return label  # code pasted below the instruction
    return None


def foreign(text: str) -> bool:
    """True when most of the head's letters are not ASCII (a language the training set lacks)."""
    letters = [ch for ch in head(text) if ch.isalpha()]
    return bool(letters) and sum(not ch.isascii() for ch in letters) > len(letters) / 2


@dataclass(frozen=True)
class CueCentroidLabeller:
    """Cue rules, then the nearest TF-IDF centroid when it is close and knows the words; else
    ``other`` (see the module docstring)."""

    model: CentroidModel
    min_similarity: float = 0.1
    min_known: float = 0.25
    min_words: int = 3

    @property
    def categories(self) -> tuple[str, ...]:
        return MT_BENCH_CATEGORIES

    @staticmethod
    def train(
        prompts: Sequence[Prompt], min_similarity: float = 0.1, min_known: float = 0.25
    ) -> CueCentroidLabeller:
        """Fitted on the first turns of ``prompts`` whose category maps to an MT-Bench one."""
        labelled = [p for p in prompts if TO_MT_BENCH.get(p.category, OTHER) != OTHER]
        texts = [p.turns[0] for p in labelled] + [*LEXICON.values()] * LEXICON_WEIGHT
        labels = [TO_MT_BENCH[p.category] for p in labelled] + [*LEXICON] * LEXICON_WEIGHT
        model = CentroidModel.train(texts, labels)
        return CueCentroidLabeller(model, min_similarity, min_known)

    def label(self, text: str) -> str:
        text = clean(text)
        ruled = cue(text)
        if ruled is not None:
            return ruled
        if foreign(text) or self.model.known_share(text) < self.min_known:
            return OTHER
        if self.model.known_words(text) < self.min_words:
            return OTHER  # "add a column", "is this all?": a later turn, no task of its own
        sims = self.model.similarities(text)
        best = max(self.model.categories, key=lambda c: sims[c])
        return best if sims[best] >= self.min_similarity else OTHER


_DEFAULT: CueCentroidLabeller | None = None


def training_prompts() -> list[Prompt]:
    """What the default labeller is fitted on: the built-in suite and MT-Bench's 80."""
    return builtin_prompts() + mt_bench_prompts()


def default_labeller() -> CueCentroidLabeller:
    """The labeller fitted on :func:`training_prompts` (once per process)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = CueCentroidLabeller.train(training_prompts())
    return _DEFAULT


def label_texts(texts: Sequence[str], labeller: Labeller | None = None) -> list[str]:
    """The label of every text (first turns of real traffic)."""
    model = labeller or default_labeller()
    return [model.label(t) for t in texts]


@dataclass(frozen=True)
class Confusion:
    """Counts of (true label, predicted label) over labelled prompts."""

    counts: Mapping[tuple[str, str], int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def accuracy(self) -> float:
        hits = sum(n for (t, p), n in self.counts.items() if t == p)
        return hits / self.total if self.total else 0.0

    def labels(self) -> list[str]:
        seen = {x for pair in self.counts for x in pair}
        return [c for c in (*MT_BENCH_CATEGORIES, OTHER) if c in seen]

    def markdown(self) -> str:
        """The matrix as a Markdown table: rows true labels, columns predicted labels."""
        labels = self.labels()
        rows = ["| true \\ predicted | " + " | ".join(labels) + " |"]
        rows.append("|---" * (len(labels) + 1) + "|")
        for t in labels:
            if any(self.counts.get((t, p), 0) for p in labels):
                cells = [str(self.counts.get((t, p), 0) or ".") for p in labels]
                rows.append(f"| {t} | " + " | ".join(cells) + " |")
        return "\n".join(rows)


def confusion(labeller: Labeller, prompts: Sequence[Prompt]) -> Confusion:
    """Confusion of ``labeller`` on prompts whose category (mapped to MT-Bench's) is the truth."""
    counts: Counter[tuple[str, str]] = Counter()
    for p in prompts:
        counts[TO_MT_BENCH.get(p.category, OTHER), labeller.label(p.turns[0])] += 1
    return Confusion(dict(counts))


def leave_one_out(held: Sequence[Prompt], extra: Sequence[Prompt] = ()) -> Confusion:
    """Each prompt of ``held`` labelled by a labeller fitted on ``extra`` and the rest of
    ``held``: never on itself."""
    counts: Counter[tuple[str, str]] = Counter()
    for i, p in enumerate(held):
        model = CueCentroidLabeller.train([*extra, *(q for j, q in enumerate(held) if j != i)])
        counts[TO_MT_BENCH.get(p.category, OTHER), model.label(p.turns[0])] += 1
    return Confusion(dict(counts))


def held_out_builtin() -> Confusion:
    """The built-in suite, leave-one-out, the labeller also fitted on MT-Bench's 80 (the cue
    rules were written knowing this suite, so the figure is optimistic)."""
    return leave_one_out(builtin_prompts(), mt_bench_prompts())


def held_out_mt_bench() -> Confusion:
    """MT-Bench's 80, leave-one-out, the labeller also fitted on the built-in suite."""
    return leave_one_out(mt_bench_prompts(), builtin_prompts())


HAND_LABELS_FILE = "sharegpt_hand_labels.json"


@dataclass(frozen=True)
class HandLabels:
    """Hand labels of ShareGPT first turns (``data/sharegpt_hand_labels.json``): ``audit``, a
    random sample never used to fit or tune the labeller, drawn by :func:`audit_sample` with
    ``seed``; ``tuning``, the prompts its thresholds were chosen on."""

    seed: int
    audit: Mapping[str, str]
    tuning: Mapping[str, str]


def load_hand_labels() -> HandLabels:
    data = json.loads((shipped_dir("data") / HAND_LABELS_FILE).read_text())
    return HandLabels(int(data["audit_seed"]), dict(data["audit"]), dict(data["tuning"]))


def audit_sample(turns: Sequence[tuple[str, str]], seed: int, n: int) -> list[tuple[str, str]]:
    """``n`` of the (id, first human turn) pairs, drawn with ``random.Random(seed).sample``."""
    return random.Random(seed).sample(list(turns), n)


def hand_labelled_confusion(
    labeller: Labeller, turns: Sequence[tuple[str, str]], labels: Mapping[str, str]
) -> Confusion:
    """Confusion of ``labeller`` on the turns whose id has a hand label (the truth)."""
    text = dict(turns)
    counts = Counter((labels[i], labeller.label(text[i])) for i in labels)
    return Confusion(dict(counts))


def labeller_accuracy() -> list[tuple[str, Confusion]]:
    """(name, confusion) of the default labeller on labelled prompts it was not fitted on:
    MT-Bench's 80 and the built-in suite leave-one-out, and the hand-labelled ShareGPT audit
    sample where the ShareGPT wheel is installed (needs the MT-Bench wheel, as the labeller)."""
    try:
        data_path(MT_BENCH)
    except WorkloadError:  # no default labeller without MT-Bench: the suite alone, held out
        return [
            ("built-in suite (67), leave-one-out, no MT-Bench", leave_one_out(builtin_prompts()))
        ]
    results = [
        ("MT-Bench (80), leave-one-out", held_out_mt_bench()),
        ("built-in suite (67), leave-one-out", held_out_builtin()),
    ]
    try:
        path = data_path(SHAREGPT)
    except WorkloadError:
        return results
    audit = load_hand_labels().audit
    turns = first_turns(read_conversations(path))
    wanted = [(i, t) for i, t in turns if i in audit]
    results.append(
        (
            f"ShareGPT, {len(audit)} hand-labelled",
            hand_labelled_confusion(default_labeller(), wanted, audit),
        )
    )
    return results
