"""Synthetic, schema-conformant run and study directories for the plot, report and notebook tests.

The generator builds the engine's own records (:class:`specviz.records.Round`: a prefill round,
then verify rounds until the token budget is spent) and passes them through the run's recorder
(:class:`specviz.recorder.EventRecorder`), so the event rows follow the recording rules by
construction. Acceptance is
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
from specviz.recorder import UNBATCHED_EVENT_LABELS, UNBATCHED_LABELS, EventRecorder
from specviz.records import Round
from specviz.rundir import (
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
    events: list[pl.DataFrame] = []
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
        recorder = EventRecorder()
        for record, draft_s, verify_s in _request_rounds(rng, run, alpha):
            recorder.add(record, draft_s, verify_s)
        frame = recorder.frame(labels | UNBATCHED_EVENT_LABELS)
        events.append(frame)
        rows = frame.to_dicts()
        text = run.texts[index % len(run.texts)] if run.texts else f"{category} answer {index}"
        requests.append(_request_row(labels, config, rows, text, rng))
    run_dir.mkdir(parents=True, exist_ok=True)
    pl.concat(events).write_parquet(run_dir / EVENTS_FILE)
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


def _request_rounds(
    rng: random.Random, run: SyntheticRun, alpha: float
) -> list[tuple[Round, float, float]]:
    """One request's engine records with their (draft, verify) seconds: a prefill round, then
    verify rounds until the token budget is spent."""
    verify_unit = 0.02
    prefill = Round(
        turn=0,
        index=0,
        prefill=True,
        k=0,
        draft=(),
        q_tokens=None,
        target=(rng.randrange(1000),),
        p=(),
        p_next=rng.random(),
        n_accepted=0,
        n_emitted=1,
        finish=None,
    )
    rounds = [(prefill, 0.0, verify_unit * 3)]
    emitted = 1
    while emitted < run.max_new_tokens:
        k = 0 if run.drafter == "none" else run.k
        n = 0
        while n < k and rng.random() < alpha:
            n += 1
        draft, p = [], []
        for i in range(k):  # the draws of the row-by-row generator this replaced, in its order
            draft.append(rng.randrange(1000))
            if i <= n:
                rng.randrange(1000)  # its target token (the target agrees where accepted)
                p.append(rng.random())
        n_emitted = min(n + 1, run.max_new_tokens - emitted)
        emitted += n_emitted
        record = Round(
            turn=0,
            index=len(rounds),
            prefill=False,
            k=k,
            draft=tuple(draft),
            q_tokens=None,
            target=(*draft[:n], rng.randrange(1000)),
            p=tuple(p),
            p_next=rng.random(),
            n_accepted=n,
            n_emitted=n_emitted,
            finish="length" if emitted >= run.max_new_tokens else None,
        )
        rounds.append((record, 0.002 * k, verify_unit * (1 + 0.08 * k)))
    return rounds


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
        | UNBATCHED_LABELS
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
