"""Cost curves from another engine: llama.cpp's ``llama-bench`` output as a
:class:`~specviz.cost.CostModel`, and a study's recorded rounds priced with it.

Under greedy decoding a study's round structure (how many rounds, how many tokens each drafted
and verified) is exact; only the seconds depend on the engine and machine. Pricing the same
rounds with llama.cpp's per-row costs answers "what would this speculation give on llama.cpp on
this machine" without running the study again (docs/metrics.md, "Cost accounting").

``llama-bench -o json -t 1 -p 1,2,3,4,5,6,7,8 -n 0 -d 200 -m MODEL.gguf`` measures, per test,
one forward over ``n_prompt`` new tokens after a context of ``n_depth`` (``-n 0``: no
generation), ``samples_ns`` per repetition. A test with ``n_prompt = rows`` and ``n_gen = 0`` is
one verify forward of ``rows`` rows, so:

- ``verify_s[rows - 1]`` = the median of that test's ``samples_ns`` (seconds); rows between
  measured ones are interpolated linearly, past the last one the cost model extrapolates;
- the prefill line (``prefill_intercept_s + prefill_s_per_token * tokens``) = least squares
  through the tests of at least :data:`PREFILL_MIN_TOKENS` tokens when two or more exist (a long
  prompt is processed in large batches, far cheaper per token than a short verify), else
  through every test;
- drafting is not a llama.cpp figure: :func:`imported_cost_model` takes the draft curves from
  elsewhere (:func:`priced_speedups` keeps the study's own: the drafters as specviz ran them).

Also read: ``-o jsonl`` (one test per line) and ``-o md`` (the markdown table; seconds =
``n_prompt / t/s``, llama-bench's mean throughput, so less exact than ``samples_ns``). A file
must hold one model, one thread count and one depth; tests that generate (``tg``) are skipped.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from specviz.cost import CostModel, CostModelError
from specviz.metrics.accounting import fit_cost_models, with_modelled_seconds
from specviz.metrics.degradation import label_streams
from specviz.metrics.speedup import BASELINE, speedup
from specviz.report.data import load_runs
from specviz.report.tables import stream_labels

PREFILL_MIN_TOKENS = 16
_MD_TEST = re.compile(r"^pp(\d+)(?: @ d(\d+))?$")


@dataclass(frozen=True)
class BenchTest:
    """One llama-bench prompt test: a forward over ``rows`` new tokens after ``depth`` tokens of
    context, ``seconds`` per forward (median over repetitions), on ``threads`` threads."""

    rows: int
    depth: int
    threads: int
    model: str
    seconds: float


def _json_tests(records: list[Any], where: str) -> list[BenchTest]:
    tests = []
    for r in records:
        if not isinstance(r, dict) or not {"n_prompt", "n_gen", "samples_ns"} <= set(r):
            raise CostModelError(
                f"{where}: not llama-bench JSON (a test lacks n_prompt/samples_ns)"
            )
        if r["n_gen"] != 0 or r["n_prompt"] < 1 or not r["samples_ns"]:
            continue  # a generation test, or no timing: not one forward of n_prompt rows
        seconds = statistics.median(r["samples_ns"]) / 1e9
        tests.append(
            BenchTest(
                int(r["n_prompt"]),
                int(r.get("n_depth", 0)),
                int(r.get("n_threads", 0)),
                str(r.get("model_filename", "")),
                seconds,
            )
        )
    return tests


def _markdown_tests(text: str, where: str) -> list[BenchTest]:
    rows = [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in text.splitlines()
        if line.strip().startswith("|")
    ]
    if not rows or "test" not in rows[0] or "t/s" not in rows[0]:
        raise CostModelError(f"{where}: not llama-bench output (JSON, JSON lines or markdown)")
    head = rows[0]
    tests = []
    for row in rows[2:]:  # after the header and its |---| rule
        cell = dict(zip(head, row, strict=False))
        match = _MD_TEST.match(cell.get("test", ""))
        if match is None:
            continue  # tgN or ppN+tgM: not one forward
        n = int(match.group(1))
        rate = float(cell["t/s"].split("±")[0])
        tests.append(
            BenchTest(
                n, int(match.group(2) or 0), int(cell.get("threads") or 0), cell["model"], n / rate
            )
        )
    return tests


def read_llama_bench(path: str | Path) -> tuple[BenchTest, ...]:
    """The prompt tests of a llama-bench output file (JSON, JSON lines or markdown), sorted by
    rows; CostModelError for a file that is none of them, holds no prompt test, or mixes
    models, thread counts or depths."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise CostModelError(f"cannot read --cost-curve {path}: {err.strerror}") from err
    where = str(path)
    stripped = text.strip()
    try:
        if stripped.startswith("["):
            tests = _json_tests(json.loads(stripped), where)
        elif stripped.startswith("{"):
            tests = _json_tests([json.loads(line) for line in stripped.splitlines()], where)
        else:
            tests = _markdown_tests(text, where)
    except (json.JSONDecodeError, ValueError, KeyError) as err:
        raise CostModelError(f"{where}: not llama-bench output ({err})") from err
    if not tests:
        raise CostModelError(
            f"{where} has no prompt test: run llama-bench with -p 1,2,3,4,5,6,7,8 -n 0"
        )
    for what, values in (
        ("models", {t.model for t in tests}),
        ("thread counts", {t.threads for t in tests}),
        ("depths", {t.depth for t in tests}),
    ):
        if len(values) > 1:
            shown = ", ".join(map(str, sorted(values)))
            raise CostModelError(
                f"{where} mixes {what} ({shown}): one curve is one model, thread count and depth"
            )
    rows = [t.rows for t in tests]
    if len(set(rows)) != len(rows):
        raise CostModelError(f"{where} measures some row count twice: keep one test per -p value")
    return tuple(sorted(tests, key=lambda t: t.rows))


def _line(points: list[tuple[int, float]]) -> tuple[float, float]:
    """(intercept, slope) of the least-squares line through ``points``; flat for one point."""
    if len(points) == 1:
        return points[0][1], 0.0
    xs, ys = [float(x) for x, _ in points], [y for _, y in points]
    slope, intercept = statistics.linear_regression(xs, ys)
    return intercept, slope


def imported_cost_model(
    tests: tuple[BenchTest, ...], draft_s: Mapping[str, tuple[float, ...]], source: str
) -> CostModel:
    """The cost model of llama-bench's prompt tests (module docstring): verify from the row
    counts measured (a test of one row is required), prefill from a line, ``draft_s`` as given."""
    measured = {t.rows: t.seconds for t in tests}
    if 1 not in measured:
        raise CostModelError(f"{source} has no one-row test: add 1 to llama-bench's -p list")
    last = max(measured)
    xs = sorted(measured)
    verify = []
    for rows in range(1, last + 1):
        right = next(x for x in xs if x >= rows)
        left = max(x for x in xs if x <= rows)
        share = 0.0 if right == left else (rows - left) / (right - left)
        verify.append(measured[left] + share * (measured[right] - measured[left]))
    long = [(t.rows, t.seconds) for t in tests if t.rows >= PREFILL_MIN_TOKENS]
    intercept, slope = _line(long if len(long) >= 2 else [(t.rows, t.seconds) for t in tests])
    first = tests[0]
    return CostModel(
        verify_s=tuple(verify),
        draft_s=dict(draft_s),
        prefill_intercept_s=intercept,
        prefill_s_per_token=slope,
        source=f"llama-bench {source} ({first.model}, {first.threads} threads, depth "
        f"{first.depth}; rows {', '.join(map(str, xs))})",
        samples={"tests": len(tests)},
    )


def priced_speedups(source: str | Path, curve: str | Path, n_boot: int) -> pl.DataFrame:
    """Per target, method and stream (single-task or multitask) of the study under ``source``:
    the modelled speedup over the baseline on the same prompts (``speedup_total``, ratio of
    total throughputs, with its bootstrap interval), once priced with the study's own calibrated
    cost model (``clock`` = ``study``) and once with llama-bench's verify and prefill costs from
    ``curve`` (``clock`` = ``llama-bench``; the study's draft curves kept), plus the modelled
    tokens per second of each. One row per (clock, target, method, stream)."""
    data = load_runs(source)
    tests = read_llama_bench(curve)
    own = fit_cost_models(data.events, data.requests, source=str(data.source))
    imported = {t: imported_cost_model(tests, m.draft_s, str(curve)) for t, m in own.items()}
    frames = []
    for clock, models in (("study", own), ("llama-bench", imported)):
        priced = with_modelled_seconds(data.requests, data.events, models)
        labelled = stream_labels(label_streams(priced).collect())
        table = speedup(
            labelled, by=["target", "method", "stream"], n_boot=n_boot, seconds="modelled_s"
        )
        drafted = labelled.filter(pl.col("drafter") != BASELINE)["method"].unique()
        table = table.filter(pl.col("method").is_in(drafted.implode()))
        frames.append(table.with_columns(pl.lit(clock).alias("clock")))
    return pl.concat(frames).select(
        "clock",
        "target",
        "method",
        "stream",
        "requests",
        pl.col("tokens_per_s").alias("modelled_tokens_per_s"),
        pl.col("baseline_tokens_per_s").alias("baseline_modelled_tokens_per_s"),
        "speedup_total",
        "speedup_total_low",
        "speedup_total_high",
    )


def priced_text(table: pl.DataFrame, curve: str | Path) -> str:
    """:func:`priced_speedups` as lines: per target, method and stream, the modelled speedup
    with the study's own cost curve and with llama-bench's."""
    lines = [
        f"modelled speedup over the baseline, the study's recorded rounds priced twice: with the "
        f"study's own cost curve and with llama-bench's ({curve}; drafting at the study's cost)",
        "target | method | stream | requests | study: speedup [95% CI] tok/s | "
        "llama-bench: speedup [95% CI] tok/s",
    ]
    keys = ["target", "method", "stream"]
    study = table.filter(pl.col("clock") == "study")
    other = table.filter(pl.col("clock") == "llama-bench")
    for row in study.join(other, on=keys, suffix="_lb").sort(keys).iter_rows(named=True):
        cells = [row["target"], row["method"], row["stream"], str(row["requests"])]
        for suffix in ("", "_lb"):
            cells.append(
                f"{row['speedup_total' + suffix]:.3f} [{row['speedup_total_low' + suffix]:.3f}, "
                f"{row['speedup_total_high' + suffix]:.3f}] "
                f"{row['modelled_tokens_per_s' + suffix]:.1f}"
            )
        lines.append(" | ".join(cells))
    return "\n".join(lines)
