"""``specviz report A B``: two studies side by side on the same axes, with their differences.

Researchers compare configurations (float32 vs bf16, two models, two workloads, in-process vs
served) more often than they read one. For each study this computes what a single report's
first screen shows (the regime too: dtype and verify-cost curve, and how the two differ) (:func:`specviz.report.answer.study_answer`, acceptance per category and
stream), then draws both on shared axes: the decomposition of every multitask stream's extra
time (modelled, wall-clock total as the check), acceptance per category single-task vs
multitask, and the speedup over the baseline. Rows are matched by method and mixture (the
target may differ: that can be what is compared). Every matched figure gets ``B - A`` with its
95% interval (:func:`specviz.metrics.compare.difference`, MOVER from the two bootstrap
intervals). No kernel runs: the page is built in this process and written like a report (one
offline HTML file, written atomically).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import polars as pl
from tqdm.auto import tqdm

from specviz.config import N_BOOT
from specviz.metrics.answer import RegimeShift, regime_shift
from specviz.metrics.compare import difference
from specviz.plots.compare import compared_bars
from specviz.report.answer import regime_of, study_answer
from specviz.report.data import StudyData, load_runs
from specviz.report.errors import ReportError
from specviz.report.export import notebook_to_html
from specviz.report.first_screen import acceptance_streams, decomposition_long
from specviz.report.html import element, esc, text_element
from specviz.report.numbers import downloads, rows_table
from specviz.report.vega import render
from specviz.report.write import is_specviz_report, partial_cell, write_page
from specviz.rundir import RunDirError, check_out_file, refuse_unfinished

DIFFERENCE_COLUMNS = ("what", "quantity", "a", "b", "difference", "low", "high")
DECOMPOSITION_QUANTITY = "extra time, % of single-task decode time (modelled)"


@dataclass(frozen=True)
class ComparedStudy:
    """One side of a comparison: its label, data, answer and acceptance per stream."""

    label: str
    data: StudyData
    answer: dict[str, Any]
    acceptance: pl.DataFrame


def study_labels(sources: Sequence[Path]) -> tuple[str, str]:
    """``A: <name>`` and ``B: <name>``, with the parent folder when the names are the same."""
    a, b = (Path(s).resolve() for s in sources)
    if a.name != b.name:
        return f"A: {a.name}", f"B: {b.name}"
    return f"A: {a.parent.name}/{a.name}", f"B: {b.parent.name}/{b.name}"


def analyse(data: StudyData, label: str, n_boot: int) -> ComparedStudy:
    """One study's answer and acceptance per stream."""
    answer = study_answer(data, n_boot=n_boot)
    return ComparedStudy(label, data, answer, acceptance_streams(data, n_boot=n_boot))


def decomposition_rows(study: ComparedStudy) -> pl.DataFrame:
    """Every modelled term and total of every stream (``row``: stream · term)."""
    long = decomposition_long(study.answer)
    return long.select(
        pl.format("{} · {}", "stream", "term").alias("row"),
        pl.lit(study.label).alias("study"),
        pl.col("percent").alias("value"),
        "low",
        "high",
        pl.col("wall_percent").alias("wall"),
    )


def acceptance_rows(study: ComparedStudy) -> pl.DataFrame:
    """Acceptance rate per method, category and stream (``row``: category · stream)."""
    return study.acceptance.select(
        pl.format("{} · {}", "category", "stream").alias("row"),
        pl.lit(study.label).alias("study"),
        pl.col("acceptance_rate").alias("value"),
        pl.col("acceptance_rate_low").alias("low"),
        pl.col("acceptance_rate_high").alias("high"),
        pl.lit(None, dtype=pl.Float64).alias("wall"),
        "method",
    )


def speedup_rows(study: ComparedStudy) -> pl.DataFrame:
    """The modelled speedup of every method over the baseline, wall clock as the check."""
    rows = [
        (s["method"], study.label, s["modelled"], s["modelled_low"], s["modelled_high"], s["wall"])
        for s in sorted(study.answer["speedups"], key=lambda s: s["method"])
    ]
    schema = {"row": pl.String, "study": pl.String, "value": pl.Float64, "low": pl.Float64,
              "high": pl.Float64, "wall": pl.Float64}  # fmt: skip
    return pl.DataFrame(rows, schema=schema, orient="row")


def differences(a: pl.DataFrame, b: pl.DataFrame, quantity: str) -> pl.DataFrame:
    """``B - A`` with its 95% interval for every row both studies have (columns
    :data:`DIFFERENCE_COLUMNS`)."""
    keys = ["row", *(["method"] if "method" in a.columns else [])]
    joined = a.join(b, on=keys, how="inner", suffix="_b").drop_nulls(
        ["value", "low", "high", "value_b", "low_b", "high_b"]
    )
    rows = []
    for r in joined.iter_rows(named=True):
        d = difference(r["value"], r["low"], r["high"], r["value_b"], r["low_b"], r["high_b"])
        what = f"{r['method']}: {r['row']}" if "method" in r else r["row"]
        rows.append((what, quantity, r["value"], r["value_b"], d.value, d.low, d.high))
    schema = dict.fromkeys(DIFFERENCE_COLUMNS, pl.Float64) | {
        "what": pl.String,
        "quantity": pl.String,
    }
    return pl.DataFrame(rows, schema=schema, orient="row")


def _html_cell(markup: str, cell_id: str) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell("")
    cell["id"] = cell_id
    cell.outputs = [nbformat.v4.new_output("display_data", data={"text/html": markup})]
    return cell


def _chart_cell(chart: Any, cell_id: str) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell("")
    cell["id"] = cell_id
    cell.outputs = [nbformat.v4.new_output("display_data", data=render(chart.to_dict()))]
    return cell


def _headlines(a: ComparedStudy, b: ComparedStudy) -> str:
    items = "".join(
        element(
            "li",
            element("strong", esc(s.label))
            + esc(f" ({s.data.source}): {s.answer['headline']['text']}"),
        )
        for s in (a, b)
    )
    return text_element("h2", "How do the two studies differ?") + element("ul", items)


def shift_sentence(shift: RegimeShift, labels: tuple[str, str]) -> str:
    """How the two sides' regimes differ for one target, and what follows from it."""
    if not shift.moved:
        return (
            f"{shift.target}: both studies hold for the same regime (dtype and verify-cost curve "
            "alike): a term that moved did not move with the regime."
        )
    changes = []
    if shift.dtypes is not None:
        a, b = (" and ".join(d) or "not recorded" for d in shift.dtypes)
        changes.append(f"dtype {a} -> {b}")
    changes += [f"T({k + 1})/T(1) {ra:.2f} -> {rb:.2f}" for k, ra, rb in shift.ratios]
    return (
        f"{shift.target}, {labels[0]} -> {labels[1]}: {'; '.join(changes)}. The best k and the "
        "terms that price k (tuning, k mismatch, the drafter's speedup) follow the verify-cost "
        "curve; composition follows each task's cost per token, which the dtype moves too."
    )


def regime_shifts(a: ComparedStudy, b: ComparedStudy) -> list[RegimeShift]:
    """The regime shift of each target both studies ran (of their only targets when each ran
    one, whatever its name: that can be what is compared)."""
    ra = [regime_of(r) for r in a.answer.get("regime", {}).get("targets", [])]
    rb = {r["target"]: regime_of(r) for r in b.answer.get("regime", {}).get("targets", [])}
    if len(ra) == 1 and len(rb) == 1:
        return [regime_shift(ra[0], next(iter(rb.values())))]
    return [regime_shift(r, rb[r.target]) for r in ra if r.target in rb]


def moved_terms(table_: pl.DataFrame) -> list[str]:
    """Each decomposition figure whose B - A interval excludes zero: what moved."""
    moved = table_.filter(
        (pl.col("quantity") == DECOMPOSITION_QUANTITY)
        & ((pl.col("low") > 0) | (pl.col("high") < 0))
    ).sort("what")
    return [
        f"{r['what']}: {r['a']:+.1f}% -> {r['b']:+.1f}% (B - A {r['difference']:+.1f} points, "
        f"95% CI {r['low']:+.1f} to {r['high']:+.1f})"
        for r in moved.iter_rows(named=True)
    ]


def regime_html(a: ComparedStudy, b: ComparedStudy, table_: pl.DataFrame) -> str:
    """Which regime each side's modelled answer holds for, how they differ, and which terms
    moved between them."""
    sides = [
        element("li", element("strong", esc(s.label)) + esc(": " + s.answer["regime"]["text"]))
        for s in (a, b)
        if s.answer.get("regime")
    ]
    shifts = [shift_sentence(s, (a.label, b.label)) for s in regime_shifts(a, b)]
    moved = moved_terms(table_)
    out = text_element("h3", "Regimes, and which terms moved")
    out += element("ul", "".join(sides)) + "".join(text_element("p", t) for t in shifts)
    if moved:
        out += text_element("p", "Moved (B - A interval excludes 0):")
        out += element("ul", "".join(text_element("li", m) for m in moved))
    else:
        out += text_element("p", "No term of the decomposition moved (every B - A interval "
                                 "holds 0).")  # fmt: skip
    return out


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:+.3g}" if abs(value) < 1e4 else f"{value:+.0f}"


def difference_html(table_: pl.DataFrame) -> str:
    """The matched figures: A, B, B - A and its 95% interval; established differences first."""
    if table_.height == 0:
        return text_element(
            "p", "The two studies share no method and mixture: nothing to subtract."
        )
    ordered = table_.with_columns(
        ((pl.col("low") > 0) | (pl.col("high") < 0)).alias("established")
    ).sort("established", "quantity", "what", descending=[True, False, False])
    rows = [
        [
            r["quantity"],
            r["what"],
            f"{r['a']:.3f}",
            f"{r['b']:.3f}",
            _fmt(r["difference"]),
            f"{_fmt(r['low'])} to {_fmt(r['high'])}",
            "yes" if r["established"] else "no",
        ]
        for r in ordered.iter_rows(named=True)
    ]
    header = ["quantity", "what", "A", "B", "B - A", "95% CI of B - A", "interval excludes 0"]
    note = text_element(
        "p",
        "B - A of every figure both studies have; its interval combines the two studies' "
        "bootstrap 95% intervals (MOVER: the studies are independent samples; docs/metrics.md).",
        class_="specviz-note",
    )
    return text_element("h3", "Differences, B - A") + note + rows_table(header, rows)


def comparison_notebook(a: ComparedStudy, b: ComparedStudy) -> nbformat.NotebookNode:
    """The comparison page as a notebook of rendered outputs."""
    labels = [a.label, b.label]
    method = a.answer["headline"].get("method")
    decomposition = [decomposition_rows(s) for s in (a, b)]
    acceptance = [acceptance_rows(s) for s in (a, b)]
    speedups = [speedup_rows(s) for s in (a, b)]
    diffs = pl.concat(
        [
            differences(*decomposition, DECOMPOSITION_QUANTITY),
            differences(*speedups, "speedup over the baseline (modelled)"),
            differences(*acceptance, "acceptance rate"),
        ]
    )
    nb = nbformat.v4.new_notebook()
    title = nbformat.v4.new_markdown_cell(f"# specviz comparison: {esc(a.label)} vs {esc(b.label)}")
    title["id"] = "title"
    cells = [title, _html_cell(_headlines(a, b), "headlines")]
    cells.append(_html_cell(regime_html(a, b, diffs), "regimes"))
    both = pl.concat(decomposition)
    if both.height:
        chart = compared_bars(
            both,
            heading="Where each multitask stream's extra time goes (modelled), A vs B",
            x_title="Extra time, % of single-task decode time (modelled)",
            studies=labels,
            reference=0.0,
        )
        cells.append(_chart_cell(chart, "decomposition"))
    else:
        cells.append(_html_cell(text_element("p", "Neither study has a multitask stream."), "d0"))
    cells.append(
        _chart_cell(
            compared_bars(
                pl.concat(acceptance),
                heading="Acceptance per category, single-task and multitask, A vs B",
                x_title="Acceptance rate (accepted / drafted)",
                studies=labels,
                method=method,
            ),
            "acceptance",
        )
    )
    both_speedups = pl.concat(speedups)
    if both_speedups.height:
        chart = compared_bars(
            both_speedups,
            heading="Speedup over the baseline (modelled), A vs B",
            x_title="Speedup vs baseline (modelled, ratio of total tokens/s)",
            studies=labels,
            reference=1.0,
        )
        cells.append(_chart_cell(chart, "speedup"))
    links = downloads({"differences.csv": (diffs, "every difference")}).markup
    cells.append(_html_cell(difference_html(diffs) + links, "differences"))
    nb.cells = cells
    return nb


def build_comparison(
    sources: Sequence[str | Path],
    out: str | Path,
    *,
    categories: Sequence[str] = (),
    n_boot: int = N_BOOT,
    progress: bool = True,
    allow_incomplete: bool = False,
    force: bool = False,
) -> Path:
    """Two studies (run or study directories) side by side in one offline HTML page at ``out``.

    ``categories``: compare only these task categories (each study must hold them).
    ``n_boot``: bootstrap resamples of every interval. An unfinished run or study is refused
    unless ``allow_incomplete``; then the page says at the top that its data is partial.
    ``out`` is checked as a report's is: an existing file specviz did not write is refused
    unless ``force``. Returns the page's path.
    """
    if len(sources) != 2:
        raise ReportError(
            f"a comparison takes two run or study directories, got {len(sources)}: "
            "specviz report A B --out compare.html"
        )
    out = Path(out)
    if out.is_dir():
        raise ReportError(f"{out} is a directory: pass the report's file name, e.g. compare.html")
    check_out_file(out, force=force, ours=is_specviz_report)
    paths = [Path(s).resolve() for s in sources]
    labels = study_labels(paths)
    datas = [load_runs(path, categories) for path in paths]  # both checked before any work
    try:
        unfinished = [u for path in paths for u in refuse_unfinished(path, allow_incomplete)]
    except RunDirError as err:
        raise ReportError(str(err)) from None
    studies = [
        analyse(data, label, n_boot)
        for data, label in tqdm(
            list(zip(datas, labels, strict=True)), desc="Studies", disable=not progress
        )
    ]
    nb = comparison_notebook(*studies)
    if unfinished:
        nb.cells.insert(1, partial_cell(unfinished))
    html = notebook_to_html(nb, f"specviz comparison: {labels[0]} vs {labels[1]}")
    return write_page(out, html)
