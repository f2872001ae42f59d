"""Whether two runs of one study give the same answer: rounds per request, and the headline.

Under greedy decoding every request's round structure is exact, so two runs of one study into
two directories must record identical round counts (per turn, drafted and accepted tokens too)
for every request; :func:`round_counts` and :func:`same_rounds` check that. :func:`compare`
adds each run's answer (:func:`specviz.report.answer.study_answer`): whether both lead with the
same finding, and how far apart their modelled extra times are (percentage points).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from specviz.config import N_BOOT
from specviz.report.answer import study_answer
from specviz.report.data import load_runs
from specviz.rundir import read_run_meta

KEY = ("run", "request_id")
COUNTS = ("rounds", "turn_rounds", "new_tokens", "drafted", "accepted")


def round_counts(source: str | Path) -> pl.DataFrame:
    """Every request under ``source``: its run directory (relative), request_id and counts."""
    data = load_runs(source, require_baseline=False)
    run_of = {}
    for run_dir in data.run_dirs:
        run_of[read_run_meta(run_dir)["run_id"]] = str(run_dir.relative_to(data.source))
    return (
        data.requests.with_columns(
            pl.col("run_id").replace_strict(run_of, return_dtype=pl.String).alias("run")
        )
        .select(*KEY, *COUNTS)
        .sort(list(KEY))
    )


def same_rounds(a: pl.DataFrame, b: pl.DataFrame) -> bool:
    """Both tables hold the same requests with the same counts."""
    return a.height == b.height and a.equals(b)


def compare(first: str | Path, second: str | Path, n_boot: int = N_BOOT) -> dict[str, Any]:
    """Rounds identical per request; each run's headline and modelled extra time; their gap."""
    counts = [round_counts(first), round_counts(second)]
    answers = [study_answer(load_runs(p, require_baseline=False), n_boot) for p in (first, second)]
    heads = [a["headline"] for a in answers]
    lead = [(h.get("method"), h.get("mixture"), h.get("part")) for h in heads]
    totals = [h.get("total_pct") for h in heads]
    gap = None if None in totals else abs(totals[0] - totals[1])
    return {
        "requests": counts[0].height,
        "identical_rounds": same_rounds(*counts),
        "same_headline": lead[0] == lead[1],
        "headline": [h["text"] for h in heads],
        "modelled_extra_pct": totals,
        "wall_extra_pct": [_wall_total(a, h) for a, h in zip(answers, heads, strict=True)],
        "modelled_gap_pp": gap,
    }


def _wall_total(answer: dict[str, Any], head: dict[str, Any]) -> float | None:
    for row in answer["streams"]:
        if (row["method"], row["mixture"]) == (head.get("method"), head.get("mixture")):
            return row["wall_total_pct"]
    return None
