"""The report's opening summary: how much slower the multitask stream is, and why, in numbers.

Formats the answer :func:`specviz.report.answer.study_answer` computed (the notebooks publish
it as ``answer``; ``specviz summary`` prints the same dict): the headline, one sentence per
term, the decomposition with cost-accounted (modelled) figures first and the wall clock beside
them as the check, the speedups both ways and the calibrated cost curve. It computes no metric.
Every piece of data text is escaped.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

import polars as pl

from specviz.metrics.answer import FINDING
from specviz.metrics.degradation import TERMS
from specviz.metrics.speedup import BASELINE
from specviz.report.answer import LABELS, NO_STREAM, NO_WALL_CLOCK, ZERO, pct
from specviz.report.html import element, esc, text_element
from specviz.report.numbers import frame_table

QUESTION = "How much slower is the multitask workload than single-task, and why?"
CLOCK_NAMES = {"modelled": "modelled", "wall": "wall clock"}
REMEDIES_TITLE = "What each remedy recovers of the multitask loss (modelled; wall clock)"
CONFIGURATIONS_TITLE = "Which configuration to run on each multitask stream (modelled)"


def verdict(total: float, reference: float) -> str:
    """``"slower: +15.4% time"`` or ``"faster: -6.9% time"`` for the same tokens."""
    word = "slower" if total > 0 else "faster" if total < 0 else "as fast"
    return f"{word}: {pct(total, reference)} time for the same tokens"


def clock_scope(answer: dict[str, Any]) -> str:
    """Which requests the wall clock covers: ``all requests``, or, when some were co-decoded,
    the batch-size-1 subsample (every wall-clock figure, the speedups' included)."""
    shared = answer["clock"].get("co_decoded_requests") or 0
    if not shared:
        return "all requests"
    return (
        f"the {answer['requests'] - shared:,} requests decoded alone, the batch-1 subsample "
        f"(the {shared:,} co-decoded requests have no batch-1 wall clock)"
    )


def _scope_suffix(answer: dict[str, Any]) -> str:
    """`` over the ... subsample`` when some requests were co-decoded, else nothing."""
    shared = answer["clock"].get("co_decoded_requests")
    return f" over {clock_scope(answer)}" if shared else ""


def _clock_ratio(answer: dict[str, Any]) -> str:
    ratio = answer["clock"]["modelled_over_wall"]
    return "n/a" if ratio is None else f"{ratio:.2f}"


def control_sentence(row: dict[str, Any]) -> str:
    """The baseline's own multitask-vs-single-task gap: what is not speculative decoding."""
    m, w = row["modelled"], row["wall"]
    head = (
        f"Control: the autoregressive baseline (no drafter) on {row['mixture']} is "
        f"{verdict(m['total'], m['reference_s'])} modelled (composition "
        f"{pct(m['composition'], m['reference_s'])})"
    )
    if not row.get("clocked", True):
        return (
            f"{head}; {NO_WALL_CLOCK}. It drafts nothing: its modelled gap is the stream's "
            "task shares alone."
        )
    return (
        f"{head}, {verdict(w['total'], w['reference_s'])} "
        "by the wall clock. It drafts nothing: its modelled gap is the stream's task shares "
        "alone, and what the wall clock adds beyond that is machine noise."
    )


def table(header: list[str], rows: list[list[str]]) -> str:
    """Every row of formatted cells as an HTML table, escaped
    (:func:`specviz.report.numbers.frame_table`)."""
    frame = pl.DataFrame(rows, schema=[(h, pl.String) for h in header], orient="row")
    return frame_table(frame, {h: h for h in header}).markup


def drafted_first(streams: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The drafted streams, then the baseline's (the controls), each in the answer's order."""
    return [r for r in streams if r["drafter"] != BASELINE] + [
        r for r in streams if r["drafter"] == BASELINE
    ]


def _clock_name(row: dict[str, Any], clock: str) -> str:
    """``modelled``, ``wall clock``, or ``wall clock (changing load)`` when the stream's wall
    clock was taken under changing load (its figures are then no finding)."""
    changing = clock == "wall" and row.get("load", {}).get("changing")
    return f"{CLOCK_NAMES[clock]} (changing load)" if changing else CLOCK_NAMES[clock]


def decomposition_rows(streams: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the decomposition: each stream modelled, then its wall-clock check."""
    header = [
        "method",
        "mixture",
        "clock",
        "multitask tok/s",
        "single-task tok/s",
        "extra time",
        *[LABELS[p] for p in TERMS],
        "modelled / wall s",
        "best k per task",
        "best single k",
    ]
    rows = []
    for r in drafted_first(streams):
        for clock in ("modelled", "wall") if r.get("clocked", True) else ("modelled",):
            d = r[clock]
            ref = d["reference_s"]
            rows.append(
                [
                    r["method"],
                    r["mixture"],
                    _clock_name(r, clock),
                    f"{d['multitask_tokens_per_s']:.1f}",
                    f"{d['reference_tokens_per_s']:.1f}",
                    pct(d["total"], ref),
                    *[pct(d[p], ref) for p in TERMS],
                    _ratio(r["modelled_over_wall"], 2) if clock == "modelled" else "",
                    r.get("best_k") or "",
                    r.get("best_single_k") or "",
                ]
            )
    return header, rows


def configuration_rows(configs: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Per drafted multitask stream: its throughput, the best single k for its method, the best
    single configuration for its traffic, the per-task oracle and what to do."""
    header = ["method", "mixture", "tok/s", "best single k", "best single configuration",
              "per-task oracle", "oracle routes", "what to do"]  # fmt: skip
    rows = [
        [
            c["method"],
            c["mixture"],
            f"{c['tokens_per_s']:.1f}",
            f"k={c['best_single_k']}: {c['single_k_tokens_per_s']:.1f} tok/s",
            f"{c['single']}: {c['single_tokens_per_s']:.1f} tok/s",
            f"{c['oracle_tokens_per_s']:.1f} tok/s",
            c["routes"],
            c["advice"]["text"],
        ]
        for c in configs
    ]
    return header, rows


def _ratio(value: float | None, digits: int = 3) -> str:
    """A ratio to ``digits`` places (None: ``n/a``, a figure with no batch-1 wall clock)."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def speedup_rows(speedups: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    header = ["method", "requests", "speedup modelled", "95% CI", "speedup wall clock",
              "95% CI (wall)", "modelled / wall"]  # fmt: skip
    rows = [
        [
            s["method"],
            str(s["requests"]),
            f"{s['modelled']:.3f}",
            f"{s['modelled_low']:.3f} to {s['modelled_high']:.3f}",
            _ratio(s["wall"]),
            f"{_ratio(s['wall_low'])} to {_ratio(s['wall_high'])}" if s["wall"] else "n/a",
            _ratio(s["modelled_over_wall"]),
        ]
        for s in sorted(speedups, key=lambda s: s["method"])
    ]
    return header, rows


def cost_rows(models: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The calibrated curves: one row per target and part, milliseconds by rows / tokens."""
    width = max(
        [len(m["verify_s"]) for m in models.values()]
        + [len(c) for m in models.values() for c in m["draft_s"].values()]
        + [1]
    )
    header = ["target", "cost", *[str(i) for i in range(width + 1)], "calibrated from"]
    rows = []
    for target, m in sorted(models.items()):
        verify = ["", *[f"{1000 * v:.1f}" for v in m["verify_s"]]]
        source = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in m["samples"].items())
        rows.append([target, "verify ms by rows", *_pad(verify, width + 1), source])
        for drafter, curve in m["draft_s"].items():
            cells = [f"{1000 * v:.2f}" for v in curve]
            rows.append([target, f"draft ms by tokens: {drafter}", *_pad(cells, width + 1), ""])
        prefill = (
            f"prefill: {1000 * m['prefill_intercept_s']:.1f} ms + "
            f"{1000 * m['prefill_s_per_token']:.3f} ms per prompt token"
        )
        if m["prefill_s_per_token"] < 0:  # a longer prompt is never cheaper: noise, not a cost
            prefill += (
                f" (warning: negative slope, {m['samples'].get('prefill_rounds', 0)} prefill "
                "rounds are too few to fit a line; add runs with other prompt lengths)"
            )
        rows.append([target, prefill, *_pad([], width + 1), ""])
    return header, rows


def runs_rows(runs: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Per method and mixture: tokens/s modelled and by the wall clock."""
    header = ["method", "mixture", "requests", "tokens", "tok/s modelled", "tok/s wall clock",
              "modelled / wall s"]  # fmt: skip
    rows = [
        [
            r["method"],
            r["mixture"],
            str(r["requests"]),
            str(r["tokens"]),
            f"{r['modelled_tokens_per_s']:.1f}",
            _ratio(r["wall_tokens_per_s"], 1),
            _ratio(r["modelled_over_wall"], 2),
        ]
        for r in runs
    ]
    return header, rows


def _fraction(value: float | None) -> str:
    """``40%`` of a share (None: ``n/a``): a part of a whole, unsigned, unlike :func:`pct`."""
    return "n/a" if value is None else f"{value:.0%}"


def remedy_lines(remedies: dict[str, Any]) -> list[str]:
    """Sentences for :func:`specviz.report.answer.remedy_answer`: the multitask loss of each
    stream against the oracle, each remedy's recovered share, the drafter-memory term, and
    "not in this study" for a remedy the study did not run (modelled seconds, the wall-clock
    figure after it)."""
    lines = [
        f"{r['method']} on {r['mixture']}: {pct(r['gap_share'], 1.0)} of its seconds above "
        "the oracle (each task's best static drafter and k, chosen on other prompts); wall "
        f"clock {pct(r.get('gap_share_wall'), 1.0)}."
        for r in remedies["loss"]
    ]
    for r in remedies["recovered"]:
        share = r["recovered_share"]
        what = (
            f"recovers {_fraction(share)} of the oracle gap (wall clock "
            f"{_fraction(r.get('recovered_share_wall'))})"
            if share is not None
            else "has no oracle gap to recover (the reference is at the oracle)"
        )
        lines.append(
            f"{r['remedy']} ({r['reference']} -> {r['remedied']}) on {r['mixture']}: {what}."
        )
    for m in remedies["memory"]:
        lines.append(
            f"{m['shared']} (shared memory) vs {m['per_task']} (per-task memory), {m['policy']} "
            f"k={m['k']} on {m['mixture']}: interleaving {pct(m['interleaving_pct'])} of "
            f"single-task time = drafter memory {pct(m['drafter_memory_pct'])} + other "
            f"{pct(m['other_interleaving_pct'])}; wall clock: drafter memory "
            f"{pct(m.get('drafter_memory_pct_wall'))}."
        )
    lines += [f"{name}: {reason}." for name, reason in remedies["absent"].items()]
    return lines


def _pad(cells: list[str], width: int) -> list[str]:
    return (cells + [""] * width)[:width]


def _list(items: list[str]) -> str:
    return element("ul", "".join(text_element("li", i) for i in items)) if items else ""


def nonzero_findings(answer: dict[str, Any]) -> list[str]:
    """``answer["findings"]`` without the terms zero by construction (the report's first screen
    folds those into one footnote: :func:`specviz.report.first_screen.zero_footnote`)."""
    pairs = zip(answer["findings"], _drafted_terms(answer), strict=True)
    return [f for f, (_, t) in pairs if t["status"] != ZERO]


def lead_lines(answer: dict[str, Any]) -> list[str]:
    """What follows the headline: each tuning loss on its own line (a badly chosen k, not a
    multitask cost), then one line on the streams whose wall clock was taken under changing
    load (their detail: :func:`load_detail`)."""
    summary = answer.get("load_summary")
    return [t["text"] for t in answer.get("tuning", [])] + ([summary] if summary else [])


def load_detail(answer: dict[str, Any]) -> list[str]:
    """Each stream whose wall clock was taken under changing load, and by how much."""
    return list(answer.get("load", []))


def answer_html(answer: dict[str, Any]) -> str:
    """The summary's body for one :func:`~specviz.report.answer.study_answer` result."""
    streams = answer["streams"]
    out = [element("p", element("strong", esc(answer["headline"]["text"])))]
    out += [text_element("p", line) for line in lead_lines(answer)]
    if load_detail(answer):
        out.append(_list(load_detail(answer)))
    if not streams:
        return "".join(out)
    controls = [control_sentence(r) for r in streams if r["drafter"] == BASELINE]
    out.append(_list(nonzero_findings(answer) + controls))
    out.append(table(*decomposition_rows(streams)))
    if answer.get("configurations"):
        out.append(text_element("h3", CONFIGURATIONS_TITLE))
        out.append(table(*configuration_rows(answer["configurations"])))
    out.append(
        text_element(
            "p",
            "Modelled: every request's rounds priced with one cost curve of this target on this "
            "machine, calibrated over all of the study's rounds (the table below); under greedy "
            "decoding the rounds repeat exactly, so modelled figures do not move with machine "
            "load. Wall clock: the measured seconds, the check. Extra time = seconds to serve the "
            "multitask stream's requests minus what the single-task runs need for the same "
            "tokens, as a share of the latter. Composition: the stream weights tasks differently "
            "from the benchmark; tuning: the stream's k against the best single k for its tasks "
            "(a better global k; single-task serving pays it too, so it is not a multitask "
            "cost); k mismatch: the best single k shared by every task instead of each task's "
            "best; "
            "carry-over: an adaptive policy's state carried from one task to the next; residual: "
            "the rest of what interleaving costs (see docs/metrics.md).",
            class_="specviz-note",
        )
    )
    if answer.get("remedies"):
        out.append(text_element("h3", REMEDIES_TITLE))
        out.append(_list(remedy_lines(answer["remedies"])))
    return "".join(out)


def summary_html(published: dict[str, Any]) -> str:
    """The summary block: the question, the answer, its tables, the cost curve, the data."""
    out = [text_element("h2", QUESTION)]
    answer = published.get("answer")
    if answer is None:
        out.append(text_element("p", NO_STREAM))
        return element("section", "".join(out), class_="specviz-summary")
    out.append(answer_html(answer))
    if answer["speedups"]:
        heading = f"Speedup over the baseline, modelled and wall clock{_scope_suffix(answer)}"
        out.append(text_element("h3", heading))
        out.append(table(*speedup_rows(answer["speedups"])))
    if not answer["runs_table"]:
        return element("section", "".join(out), class_="specviz-summary")
    out.append(text_element("h3", "Every stream, modelled and wall clock"))
    out.append(table(*runs_rows(answer["runs_table"])))
    out.append(text_element("h3", "Cost curve (modelled seconds)"))
    out.append(table(*cost_rows(answer["cost_models"])))
    out.append(
        text_element(
            "p",
            f"Data: {answer['runs']} runs, {answer['requests']} requests, categories "
            f"{', '.join(answer['categories'])}; methods {', '.join(answer['methods'])}. "
            f"Modelled seconds are {_clock_ratio(answer)} of the wall clock over "
            f"{clock_scope(answer)} (per-round Python overhead is not modelled).",
            class_="specviz-note",
        )
    )
    return element("section", "".join(out), class_="specviz-summary")


def text_table(header: list[str], rows: list[list[str]]) -> str:
    """Columns aligned with spaces, for a terminal."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    lines = [header, ["-" * w for w in widths], *rows]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines)  # fmt: skip


def answer_text(answer: dict[str, Any]) -> str:
    """The summary for a terminal: the same answer, sentences and tables as :func:`summary_html`."""
    out = [QUESTION, "", answer["headline"]["text"], ""]
    lead = lead_lines(answer)
    out += [*lead, ""] if lead else []
    out += [*[f"- {line}" for line in load_detail(answer)], ""] if load_detail(answer) else []
    streams = answer["streams"]
    if streams:
        controls = [control_sentence(r) for r in streams if r["drafter"] == BASELINE]
        out += [f"- {line}" for line in answer["findings"] + controls] + [""]
        out += [text_table(*decomposition_rows(streams)), ""]
    if answer.get("configurations"):
        out += [
            f"{CONFIGURATIONS_TITLE}:",
            text_table(*configuration_rows(answer["configurations"])),
        ]
        out.append("")
    if answer.get("remedies"):
        out += [f"{REMEDIES_TITLE}:"] + [f"- {x}" for x in remedy_lines(answer["remedies"])]
        out.append("")
    if answer["speedups"]:
        heading = "Speedup over the baseline:"
        if _scope_suffix(answer):
            heading = f"Speedup over the baseline; the wall clock{_scope_suffix(answer)}:"
        out += [heading, text_table(*speedup_rows(answer["speedups"])), ""]
    if not answer["runs_table"]:
        return "\n".join(out)
    out += ["Every stream:", text_table(*runs_rows(answer["runs_table"])), ""]
    out += ["Cost curve:", text_table(*cost_rows(answer["cost_models"])), ""]
    out.append(
        f"{answer['runs']} runs, {answer['requests']} requests; modelled seconds are "
        f"{_clock_ratio(answer)} of the wall clock{_scope_suffix(answer)}."
    )
    return "\n".join(out)


# -- the one-screen summary (``specviz summary``; ``--all`` prints answer_text) ---------------

#: the default summary fits a terminal screen: at most this many lines of at most this many columns
SCREEN_LINES, SCREEN_COLUMNS = 25, 100
MAX_BEST_LINES = 4  # multitask mixtures named under "Best configuration"; the rest: --all
# each term's short name in the one-screen table
SHORT_TERMS = {"composition": "composition", "tuning": "tuning", "k_mismatch": "k mismatch",
               "carry_over": "carry-over", "residual": "residual",
               "drafter_memory": "drafter memory"}  # fmt: skip
RESOLVED_TITLE = "Terms resolved at their target or established (95% CI excludes 0), modelled:"


def _wrap(text: str) -> list[str]:
    return textwrap.wrap(text, SCREEN_COLUMNS, break_on_hyphens=False) or [""]


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _drafted_terms(answer: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(stream, term) of every drafted stream, in the answer's order (that of ``findings``)."""
    return [(r, t) for r in answer["streams"] if r["drafter"] != BASELINE for t in r["terms"]]


def _width_cell(term: dict[str, Any]) -> str:
    width, target = term.get("half_width_pct"), term.get("target_pct")
    if width is None or target is None:
        return "no interval"
    return f"±{width:.1f} {'<=' if width <= target else '>'} {target:g}"


def resolved_rows(answer: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The one-screen table: every term of a drafted stream that is resolved at its target or
    is a finding, findings first, each by its size."""
    header = ["stream", "term", "modelled", "95% CI", "half-width"]
    shown = [
        (r, t)
        for r, t in _drafted_terms(answer)
        if t["status"] == FINDING or (t["status"] != ZERO and t.get("resolved"))
    ]
    shown.sort(key=lambda rt: (rt[1]["status"] != FINDING, -abs(rt[1]["pct"] or 0.0)))
    rows = [
        [
            _clip(f"{r['method']} · {r['mixture']}", 40),
            SHORT_TERMS.get(t["part"], t["part"]),
            pct(t["pct"]),
            f"{pct(t['low_pct'])} to {pct(t['high_pct'])}",
            _width_cell(t),
        ]
        for r, t in shown
    ]
    return header, rows


def unresolved_line(answer: dict[str, Any]) -> str:
    """One line naming the terms that are neither findings nor resolved at their target (the
    widest first) and how many are zero by construction."""
    open_ = [
        (r, t)
        for r, t in _drafted_terms(answer)
        if t["status"] not in (FINDING, ZERO) and not t.get("resolved")
    ]
    zeros = sum(t["status"] == ZERO for _, t in _drafted_terms(answer))
    tail = f"; {zeros} zero by construction; --all prints every term."
    if not open_:
        return f"Unresolved: none{tail}"
    open_.sort(key=lambda rt: -(rt[1].get("half_width_pct") or float("inf")))
    names = [
        f"{SHORT_TERMS.get(t['part'], t['part'])} of {r['method']} on {r['mixture']} "
        + (f"±{t['half_width_pct']:.1f}%" if t.get("half_width_pct") is not None else "(no CI)")
        for r, t in open_
    ]
    head = f"Unresolved ({len(open_)}, widest first): "
    budget = 2 * SCREEN_COLUMNS - len(head) - len(tail) - 20
    named: list[str] = []
    for name in names:
        if len(", ".join([*named, name])) > budget:
            break
        named.append(name)
    more = f" and {len(names) - len(named)} more" if len(named) < len(names) else ""
    return f"{head}{', '.join(named)}{more}{tail}"


def best_lines(answer: dict[str, Any]) -> list[str]:
    """Per multitask mixture: the best single static configuration for its traffic and the
    per-task oracle (modelled), one line each."""
    best: dict[str, dict[str, Any]] = {}
    for c in answer.get("configurations", []):
        if (
            c["mixture"] not in best
            or c["single_tokens_per_s"] > best[c["mixture"]]["single_tokens_per_s"]
        ):
            best[c["mixture"]] = c
    lines = [
        _clip(
            f"{mixture}: {c['single']}, {c['single_tokens_per_s']:.1f} tok/s (per-task oracle "
            f"{c['oracle_tokens_per_s']:.1f} tok/s)",
            SCREEN_COLUMNS,
        )
        for mixture, c in sorted(best.items())
    ]
    if len(lines) > MAX_BEST_LINES:
        hidden = len(lines) - MAX_BEST_LINES + 1
        lines = [*lines[: MAX_BEST_LINES - 1], f"… and {hidden} more streams (--all)"]
    return lines


def screen_text(answer: dict[str, Any]) -> str:
    """The summary on one screen (at most :data:`SCREEN_LINES` lines of :data:`SCREEN_COLUMNS`
    columns): the headline, the regime it holds for, the resolved and established terms in one
    table, the best configuration per multitask stream and one line on what is unresolved.
    :func:`answer_text` (``--all``) prints every term and table."""
    headline = answer["headline"].get("short") or answer["headline"]["text"]
    top = [QUESTION, *_wrap(headline), *_wrap(answer.get("regime", {}).get("text", ""))]
    if not answer["streams"]:
        return "\n".join([*top, "--all prints every table."])
    best = best_lines(answer)
    title = (
        "Best single configuration per multitask stream (modelled; --all: what to do per method):"
    )
    best_block = [title, *best] if best else []
    bottom = [*best_block, *_wrap(unresolved_line(answer))]
    header, rows = resolved_rows(answer)
    room = max(2, SCREEN_LINES - len(top) - len(bottom) - 4)  # blank, title, header, rule
    if len(rows) > room:
        hidden = len(rows) - (room - 1)
        rows = rows[: room - 1]
        rows.append([f"… and {hidden} more (--all)", "", "", "", ""])
    table_ = [RESOLVED_TITLE]
    table_ += text_table(header, rows).splitlines() if rows else ["(none)"]
    return "\n".join([*top, "", *table_, *bottom])
