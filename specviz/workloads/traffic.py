"""Real ShareGPT chat traffic labelled with MT-Bench categories: a labelled sample to run
(:func:`sharegpt_workload`) and the measured shares of each category, with intervals.

:func:`measure_shares` labels the first human turn of every whole ShareGPT conversation with a
:class:`~specviz.workloads.labeller.Labeller` and gives each label's share of the conversations
with a 95% **Wilson score interval** (:func:`wilson`): for k of n and z = 1.96,
``(p + z^2/2n +- z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)`` with p = k/n. The interval covers
sampling noise only; the labeller's errors (its confusion matrix, docs/workloads.md) are not in
it, and they are the larger uncertainty.

``specviz traffic-shares --out data/sharegpt_shares.json`` writes the measured result, which
the default study's composed stream uses (:func:`composed_weights`); the file also holds the
label counts of the first :data:`CHECK_RECORDS` conversations, which a test recomputes, so the
checked-in file is known to come from this code. :data:`PUBLISHED` lists published shares to
compare with; their labels differ from MT-Bench's, as each entry's note says.
"""

from __future__ import annotations

import functools
import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from specviz.resources import shipped_dir
from specviz.workloads.labeller import MT_BENCH_CATEGORIES, OTHER, Labeller, default_labeller
from specviz.workloads.packaged import ShareGPTSource
from specviz.workloads.prompt import WorkloadError
from specviz.workloads.sharegpt import (
    ShareGPTFile,
    ShareGPTSample,
    ShareGPTSampling,
    TokenCounter,
    first_turns,
    read_conversations,
    sample_prompts,
    token_counter,
)

CHECK_RECORDS = 500
Z95 = 1.959963984540054
SHARES_FILE = "sharegpt_shares.json"


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of the proportion k/n (see the module docstring)."""
    if n <= 0:
        raise ValueError("a proportion needs n >= 1")
    p = k / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


@dataclass(frozen=True)
class Share:
    label: str
    count: int
    share: float
    low: float
    high: float


@dataclass(frozen=True)
class Published:
    """A published share, the MT-Bench label it is compared with, and how the labels differ."""

    source: str
    label: str
    low: float
    high: float
    compare_with: str | None
    note: str


#: Published shares of chat traffic (from issue 18's survey; labels differ and overlap).
PUBLISHED: tuple[Published, ...] = (
    Published(
        "LMArena Apr-Jul 2025 (140k)",
        "hard prompts",
        0.373,
        0.373,
        None,
        "no MT-Bench counterpart; overlaps every category",
    ),
    Published(
        "LMArena Apr-Jul 2025 (140k)",
        "instruction following",
        0.210,
        0.210,
        None,
        "no MT-Bench counterpart; overlaps every category",
    ),
    Published(
        "LMArena Apr-Jul 2025 (140k)",
        "creative writing",
        0.117,
        0.117,
        "writing",
        "creative only; MT-Bench writing also holds emails and blog posts",
    ),
    Published("LMArena Apr-Jul 2025 (140k)", "math", 0.069, 0.069, "math", "same topic"),
    Published(
        "Claude.ai, Clio (1M)",
        "coding",
        0.15,
        0.25,
        "coding",
        "software development broadly, incl. debugging and explaining code",
    ),
    Published(
        "ChatGPT, NBER w34255",
        "writing",
        0.24,
        0.36,
        "writing",
        "share of messages, not conversations; includes editing and translation",
    ),
    Published(
        "ChatGPT, NBER w34255",
        "programming",
        0.04,
        0.04,
        "coding",
        "share of messages, not conversations",
    ),
)


@dataclass(frozen=True)
class TrafficShares:
    """Label shares over the conversations that have a human turn."""

    source: str
    version: str
    conversations: int
    labelled: int
    shares: tuple[Share, ...]
    check_counts: Mapping[str, int]

    def share(self, label: str) -> Share:
        return next(s for s in self.shares if s.label == label)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "version": self.version,
            "conversations": self.conversations,
            "labelled": self.labelled,
            "interval": "Wilson score, 95%",
            "shares": {
                s.label: {"count": s.count, "share": s.share, "low": s.low, "high": s.high}
                for s in self.shares
            },
            "check": {"first_records": CHECK_RECORDS, "counts": dict(self.check_counts)},
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> TrafficShares:
        shares = tuple(
            Share(label, int(v["count"]), float(v["share"]), float(v["low"]), float(v["high"]))
            for label, v in data["shares"].items()
        )
        return TrafficShares(
            str(data["source"]),
            str(data["version"]),
            int(data["conversations"]),
            int(data["labelled"]),
            shares,
            {k: int(v) for k, v in data["check"]["counts"].items()},
        )


def label_counts(data: ShareGPTFile, labeller: Labeller, limit: int | None = None) -> Counter[str]:
    """How many of the (first ``limit``) conversations' first human turns get each label."""
    turns = first_turns(data) if limit is None else first_turns(_head(data, limit))
    return Counter(labeller.label(text) for _, text in turns)


def _head(data: ShareGPTFile, n: int) -> ShareGPTFile:
    return ShareGPTFile(
        data.path, data.conversations[:n], data.size_bytes, data.ends_early, data.stop_byte
    )


def measure_shares(
    data: ShareGPTFile, version: str, labeller: Labeller | None = None
) -> TrafficShares:
    """Each label's share of the conversations with a human turn, with Wilson intervals."""
    model = labeller or default_labeller()
    counts = label_counts(data, model)
    n = sum(counts.values())
    if n == 0:
        raise WorkloadError(f"{data.path}: no conversation has a human turn to label")
    shares = tuple(
        Share(label, counts[label], counts[label] / n, *wilson(counts[label], n))
        for label in (*model.categories, OTHER)
    )
    return TrafficShares(
        data.path.name,
        version,
        len(data.conversations),
        n,
        shares,
        dict(label_counts(data, model, CHECK_RECORDS)),
    )


def shares_path() -> Path:
    """The checked-in measured shares (``data/sharegpt_shares.json``)."""
    return shipped_dir("data") / SHARES_FILE


def load_shares(path: Path | None = None) -> TrafficShares:
    where = path or shares_path()
    try:
        return TrafficShares.from_dict(json.loads(where.read_text()))
    except (OSError, ValueError, KeyError) as err:
        raise WorkloadError(
            f"{where}: cannot read measured traffic shares ({err}); regenerate it with "
            "specviz traffic-shares --out " + str(where)
        ) from err


def composed_weights(shares: TrafficShares, categories: Sequence[str] = MT_BENCH_CATEGORIES) -> str:
    """The measured shares of MT-Bench's categories as mixture weights (``other`` left out:
    MT-Bench has no such prompts), in the ``category=weight,...`` form of a study file."""
    return ",".join(f"{c}={shares.share(c).count}" for c in categories)


def comparison(shares: TrafficShares) -> list[dict[str, Any]]:
    """Rows of published shares beside the measured share of the label they compare with."""
    rows = []
    for p in PUBLISHED:
        measured = shares.share(p.compare_with) if p.compare_with else None
        rows.append(
            {
                "published source": p.source,
                "published label": p.label,
                "published share": f"{p.low:.1%}"
                if p.low == p.high
                else f"{p.low:.0%}-{p.high:.0%}",
                "measured label": p.compare_with or "-",
                "measured share (95% CI)": "-"
                if measured is None
                else f"{measured.share:.1%} ({measured.low:.1%}-{measured.high:.1%})",
                "how labels differ": p.note,
            }
        )
    return rows


def sharegpt_workload(
    sampling: ShareGPTSampling,
    count_tokens: TokenCounter,
    labeller: Labeller | None = None,
    *,
    source: ShareGPTSource | None = None,
    progress: bool = False,
) -> tuple[ShareGPTFile, ShareGPTSample]:
    """The conversations of ``source`` (default: the ShareGPT wheel's file) and a sample of them,
    each prompt labelled with an MT-Bench category or ``other`` by ``labeller`` (default:
    :func:`default_labeller`)."""
    data = read_conversations((source or ShareGPTSource()).file(), progress=progress)
    sample = sample_prompts(data, sampling, count_tokens)
    model = labeller or default_labeller()
    items = tuple(
        replace(s, prompt=replace(s.prompt, category=model.label(s.prompt.turns[0])))
        for s in sample.items
    )
    return data, replace(sample, items=items)


def tokenizer_counter(model: str, trust_remote_code: bool) -> TokenCounter:
    """Token counts with ``model``'s tokenizer (as vLLM samples ShareGPT), loaded at the first
    count: a file that is missing or not ShareGPT is refused before the tokenizer loads."""
    from specviz.model_source import load_tokenizer

    counter = functools.cache(lambda: token_counter(load_tokenizer(model, trust_remote_code)))
    return lambda text: counter()(text)


def target_traffic(
    source: ShareGPTSource, sampling: ShareGPTSampling, model: str, trust_remote_code: bool
) -> tuple[ShareGPTFile, ShareGPTSample]:
    """The labelled sample of ``source`` (:func:`sharegpt_workload`), lengths counted with the
    target ``model``'s tokenizer (:func:`tokenizer_counter`): what ``specviz run --workload
    sharegpt`` and a study's ``[mixtures.traffic]`` decode."""
    return sharegpt_workload(sampling, tokenizer_counter(model, trust_remote_code), source=source)
