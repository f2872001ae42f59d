"""Synthetic, schema-conformant run and study directories for the plot, report and notebook tests.

The generator follows the engine's recording rules (:mod:`specviz.recorder`): each turn opens
with a prefill round (one ``bonus`` row), each verify round has ``n_drafted`` draft rows
followed by one ``correction`` or ``bonus`` row at ``position == accepted``, drafts after the
first rejection are unverified, and nothing past the token budget is emitted. Acceptance is
drawn per draft with a per-category probability; a multitask mixture lowers it, so the data has
a known, real degradation for the report to find. Request rows are totals of the event rows.
These are TEST data only: they exercise the tables, never stand in for measurements.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from specviz.config import DrafterConfig, ModelSpec, PolicyConfig, RunConfig
from specviz.schema import (
    EVENT_SCHEMA,
    EVENTS_FILE,
    REQUEST_SCHEMA,
    REQUESTS_FILE,
    RUN_FILE,
    SCHEMA_VERSION,
)

XSS_TEXTS = (
    "<script>alert(1)</script>",
    '<img src=x onerror="alert(2)">',
    "</script><script>alert(3)</script>",
)

# a task category whose name is markup: it reaches axis labels, dropdowns, tooltips, the summary
XSS_CATEGORY = '<img src=x onerror="alert(5)">'

DEFAULT_ALPHA = {"coding": 0.8, "writing": 0.45, "math": 0.65, XSS_CATEGORY: 0.6}

# an unbatched run (specviz.schema: batch columns of a batch-size-1 run)
UNBATCHED = {"batch_size": 1, "batch_composition": None, "batch_id": None, "row": 0}
UNBATCHED_EVENT = {**UNBATCHED, "batch_step": None, "batch_rows": 1, "batch_tasks": 1}


@dataclass(frozen=True)
class SyntheticRun:
    """One condition of a synthetic study."""

    name: str
    drafter: str  # "none" or a drafter kind
    mixture: str  # a category name (single-task) or "uniform-interleaved"
    categories: tuple[str, ...]
    requests_per_category: int = 3
    k: int = 4
    max_new_tokens: int = 24
    seed: int = 0
    multitask_penalty: float = 0.8  # alpha multiplier in a multitask stream
    alpha: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_ALPHA))
    texts: tuple[str, ...] = ()  # output texts to cycle through (e.g. XSS payloads)


def _config(run: SyntheticRun) -> RunConfig:
    drafter = (
        DrafterConfig(kind=run.drafter)
        if run.drafter != "model"
        else DrafterConfig(kind="model", draft=ModelSpec(name="tiny-draft"))
    )
    return RunConfig(
        target=ModelSpec(name="tiny-target"),
        drafter=drafter,
        policy=PolicyConfig(k=run.k),
        max_new_tokens=run.max_new_tokens,
    )


def write_run(run_dir: Path, run: SyntheticRun) -> Path:
    """Write events.parquet, requests.parquet and run.json for ``run`` under ``run_dir``."""
    rng = random.Random(f"{run.seed}-{run.name}")
    config = _config(run)
    run_id = f"{run.name}-synthetic"
    multitask = len(run.categories) > 1
    stream = [c for c in run.categories for _ in range(run.requests_per_category)]
    if multitask:
        rng.shuffle(stream)
    events: list[dict] = []
    requests: list[dict] = []
    for index, category in enumerate(stream):
        alpha = run.alpha[category] * (run.multitask_penalty if multitask else 1.0)
        labels = {
            "run_id": run_id,
            "request_id": f"00-{index:05d}-{category}-{index}",
            "request_index": index,
            "repeat": 0,
            "prompt_id": f"{category}-{index % run.requests_per_category}",
            "category": category,
            "mixture": run.mixture,
            "drafter": run.drafter,
            "policy": config.policy_label,
            "target": config.target.name,
        }
        rows = _request_events(rng, run, config, alpha)
        events += [labels | UNBATCHED_EVENT | r for r in rows]
        text = run.texts[index % len(run.texts)] if run.texts else f"{category} answer {index}"
        requests.append(_request_row(labels, config, rows, text, rng))
    run_dir.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(events, schema=EVENT_SCHEMA, orient="row").write_parquet(run_dir / EVENTS_FILE)
    pl.DataFrame(requests, schema=REQUEST_SCHEMA, orient="row").write_parquet(
        run_dir / REQUESTS_FILE
    )
    meta = {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "config": config.to_dict(),
        "requests": len(stream),
        "complete": True,
        "synthetic": True,
    }
    (run_dir / RUN_FILE).write_text(json.dumps(meta, indent=2))
    return run_dir


def _request_events(
    rng: random.Random, run: SyntheticRun, config: RunConfig, alpha: float
) -> list[dict]:
    rows: list[dict] = []
    emitted = 0
    verify_unit = 0.02

    def row(rnd: int, **values) -> dict:
        base = {"turn": 0, "round": rnd, "prefill": False, "q": None}
        return base | values

    rows.append(
        row(
            0,
            prefill=True,
            position=0,
            k=0,
            n_drafted=0,
            kind="bonus",
            draft_token=None,
            target_token=rng.randrange(1000),
            accepted=None,
            verified=True,
            emitted=True,
            p=rng.random(),
            draft_s=0.0,
            verify_s=verify_unit * 3,
        )
    )
    emitted = 1
    rnd = 1
    while emitted < run.max_new_tokens:
        k = 0 if run.drafter == "none" else run.k
        n = 0
        while n < k and rng.random() < alpha:
            n += 1
        draft_s = 0.002 * k
        verify_s = verify_unit * (1 + 0.08 * k)
        for i in range(k):
            out = i < n and emitted < run.max_new_tokens
            rows.append(
                row(
                    rnd,
                    position=i,
                    k=k,
                    n_drafted=k,
                    kind="draft",
                    draft_token=rng.randrange(1000),
                    target_token=rng.randrange(1000) if i <= n else None,
                    accepted=i < n,
                    verified=i <= n,
                    emitted=out,
                    p=rng.random() if i <= n else None,
                    draft_s=draft_s,
                    verify_s=verify_s,
                )
            )
            emitted += out
        out = emitted < run.max_new_tokens
        rows.append(
            row(
                rnd,
                position=n,
                k=k,
                n_drafted=k,
                kind="correction" if n < k else "bonus",
                draft_token=None,
                target_token=rng.randrange(1000),
                accepted=None,
                verified=True,
                emitted=out,
                p=rng.random(),
                draft_s=draft_s,
                verify_s=verify_s,
            )
        )
        emitted += out
        rnd += 1
    return rows


def _request_row(
    labels: dict, config: RunConfig, rows: list[dict], text: str, rng: random.Random
) -> dict:
    target_rows = [r for r in rows if r["kind"] != "draft"]
    prefill_s = sum(r["verify_s"] for r in target_rows if r["prefill"])
    draft_s = sum(r["draft_s"] for r in target_rows)
    verify_s = sum(r["verify_s"] for r in target_rows if not r["prefill"])
    wall = (prefill_s + draft_s + verify_s) * (1.05 + 0.02 * rng.random())
    new_tokens = sum(r["emitted"] for r in rows)
    return (
        labels
        | UNBATCHED
        | {
            "k": config.k_label,
            "draft": None,
            "temperature": 0.0,
            "n_turns": 1,
            "prompt_tokens": 20,
            "new_tokens": new_tokens,
            "rounds": len(target_rows),
            "drafted": sum(r["kind"] == "draft" for r in rows),
            "accepted": sum(bool(r["accepted"]) for r in rows if r["kind"] == "draft"),
            "wall_s": wall,
            "ttft_s": prefill_s,
            "prefill_s": prefill_s,
            "draft_s": draft_s,
            "verify_s": verify_s,
            "finish_reason": "length",
            "prompt_turns": [f"Answer with: {text}"],
            "output_text": text,
            "output_turns": [text],
            "turn_new_tokens": [new_tokens],
            "turn_wall_s": [wall],
            "turn_rounds": [len(target_rows)],
            "turn_prompt_tokens": [20],
            "latency_s": wall,
        }
    )


def default_conditions(
    categories: tuple[str, ...] = ("coding", "writing"),
    drafters: tuple[str, ...] = ("none", "prompt-lookup"),
    requests_per_category: int = 3,
    texts: tuple[str, ...] = (),
) -> list[SyntheticRun]:
    """Single-task runs per category and one uniform multitask run, for every drafter."""
    runs = []
    for drafter in drafters:
        for mixture in (*categories, "uniform-interleaved"):
            cats = categories if mixture == "uniform-interleaved" else (mixture,)
            runs.append(
                SyntheticRun(
                    name=f"{drafter}-{mixture}",
                    drafter=drafter,
                    mixture=mixture,
                    categories=cats,
                    requests_per_category=requests_per_category,
                    texts=texts,
                )
            )
    return runs


def write_study(study_dir: Path, runs: list[SyntheticRun]) -> Path:
    """A study directory: ``study.json`` plus ``runs/<condition>/`` per run."""
    for run in runs:
        write_run(study_dir / "runs" / run.name, run)
    (study_dir / "study.json").write_text(
        json.dumps(
            {"name": study_dir.name, "conditions": [r.name for r in runs], "synthetic": True},
            indent=2,
        )
    )
    return study_dir


def isolate_jupyter(monkeypatch, home: Path) -> None:
    """Point HOME and the Jupyter/IPython directories at ``home`` (kernels write there)."""
    for name, sub in (
        ("HOME", ""),
        ("JUPYTER_DATA_DIR", "jupyter-data"),
        ("JUPYTER_RUNTIME_DIR", "jupyter-runtime"),
        ("IPYTHONDIR", "ipython"),
        ("MPLCONFIGDIR", "matplotlib"),
    ):
        path = home / sub if sub else home
        path.mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(name, str(path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
