"""The answer in words: its sentences, and each part of it declared once and rendered twice.

- The typed answer's sentences (:func:`headline`, :func:`term_sentence`, :func:`tuning_lines`,
  :func:`load_lines`, :func:`advice_text`, :func:`regime_text`) are published in its JSON
  (:func:`specviz.report.answer.answer_json`). A term reads as a *finding* (its modelled 95%
  interval excludes zero), *zero by construction* with the reason (:data:`ZERO_REASONS`),
  *inside the noise* with the smallest effect the study could detect, *not measured*, or
  *interval not estimable* with the thin tasks; a remedy not run reads "not in this study".
- :func:`summary_parts` (the report's summary; ``specviz summary --all``) and
  :func:`first_screen_parts` declare the published answer's parts in order; each kind of
  :class:`Part` (:func:`heading`, :func:`lead`, :func:`lines`, :func:`bullets`, :func:`title`,
  :func:`table`, :func:`note`) holds its HTML (all text escaped by
  :func:`~specviz.report.html.text_element`, tables by
  :func:`~specviz.report.numbers.rows_table`) and its text lines side by side;
  :func:`page_only` / :func:`terminal_only` mark the few parts one medium leaves out.
  :func:`screen_text` is ``specviz summary``'s one screen.
- One set of formatters: :func:`pct`, :func:`share`, :func:`rate`, :func:`tok_s`, :func:`span`,
  :func:`ratio`.
- Plain Python, not Jinja2 templates: the page has no whitespace between tags and the terminal
  text is pinned byte for byte, which template whitespace control says less clearly than one
  small function per kind of part; and no templating dependency.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from specviz.metrics.advice import DO_NOT_SPECULATE, KEEP_K, Advice
from specviz.metrics.answer import (
    FINDING,
    NOT_ESTIMABLE,
    UNMEASURED,
    ZERO,
    MixTask,
    Regime,
    share_pct,
)
from specviz.metrics.bootstrap import MIN_TASK_REQUESTS
from specviz.metrics.degradation import TERMS, ThinTask
from specviz.metrics.remedies import NO_GAP, NOT_RUN, Absence
from specviz.metrics.speedup import BASELINE
from specviz.metrics.study import Stream, StreamTerm, StudyAnswer
from specviz.report.html import element, esc, text_element
from specviz.report.numbers import rows_table

QUESTION = "How much slower is the multitask workload than single-task, and why?"
CLOCK_NAMES = {"modelled": "modelled", "wall": "wall clock"}
REMEDIES_TITLE = "What each remedy recovers of the multitask loss (modelled; wall clock)"
CONFIGURATIONS_TITLE = "Which configuration to run on each multitask stream (modelled)"
CLOCKS_NOTE = (
    "Modelled: every request's rounds priced with one cost curve of this target on this "
    "machine, calibrated over all of the study's rounds (the table below); under greedy "
    "decoding the rounds repeat exactly, so modelled figures do not move with machine "
    "load. Wall clock: the measured seconds, the check. Extra time = seconds to serve the "
    "multitask stream's requests minus what the single-task runs need for the same "
    "tokens, as a share of the latter. Composition: the stream weights tasks differently "
    "from the benchmark; tuning: the stream's k against the best single k for its tasks "
    "(a better global k; single-task serving pays it too, so it is not a multitask "
    "cost); k mismatch: the best single k shared by every task instead of each task's "
    "best; carry-over: an adaptive policy's state carried from one task to the next; residual: "
    "the rest of what interleaving costs (see docs/metrics.md)."
)

# each term as a word of a sentence ("k mismatch adds 12%"): the sentence says what it measures,
# so these are the bare names; a chart's labels carry the meaning too (degradation.TERM_LABELS)
LABELS = {"total": "extra time", "composition": "composition", "tuning": "tuning",
          "k_mismatch": "k mismatch", "carry_over": "carry-over", "residual": "residual",
          "drafter_memory": "drafter memory shared across tasks"}  # fmt: skip
ZERO_REASONS = {
    "composition": "the stream holds the single-task prompts in their single-task shares",
    "tuning": "the stream's k is the best single k for its tasks",
    "k_mismatch": "every task's best measured k is the same single k",
    "carry_over": "the policy keeps no state across requests",
    "residual": "greedy decoding repeats every round, and identical rounds cost the same",
    "drafter_memory": "the shared memory drafted exactly as the per-task memories did",
}
ABSENT = "not in this study"
UNMEASURED_REASON = "no constant-k control stream of the same drafter, k and mixture"
NO_STREAM = (
    "No multitask stream could be compared: the study needs single-task and multitask mixtures "
    "run with the same method."
)

# -- the formatters ---------------------------------------------------------------------------


def pct(value: float | None, reference: float | None = None) -> str:
    """``+1.2%``: ``value`` in percent, or ``value`` as a percent of ``reference`` (a share of
    one: ``reference`` 1.0); ``n/a`` when it is missing or the reference is zero. The one
    formatter of every signed percent in the answer's words and tables."""
    if reference is not None:
        value = share_pct(value, reference)
    return "n/a" if value is None else f"{value:+.1f}%"


def share(value: float | None) -> str:
    """``40%`` of a share (None: ``n/a``): a part of a whole, unsigned, unlike :func:`pct`."""
    return "n/a" if value is None else f"{value:.0%}"


def rate(value: float | None) -> str:
    """``54.0``: tokens per second in a table's ``tok/s`` column (None: ``n/a``, e.g. a
    stream with no batch-1 wall clock)."""
    return "n/a" if value is None else f"{value:.1f}"


def decode_tok_s(value: float) -> str:
    """``54.0 decode tok/s``: tokens per second on the decode clock (prefill excluded,
    :func:`specviz.metrics.accounting.decode_clock`) in a sentence or a cell of mixed units."""
    return f"{rate(value)} decode tok/s"


def span(low: float | None, high: float | None, fmt: Callable[[Any], str] = pct) -> str:
    """``-1.0% to +2.0%``: an interval's bounds, each by ``fmt``."""
    return f"{fmt(low)} to {fmt(high)}"


def ratio(value: float | None, places: int = 2) -> str:
    """``0.94``: a ratio of two seconds or two speeds (None: ``n/a``)."""
    return "n/a" if value is None else f"{value:.{places}f}"


# -- the typed answer in sentences (published in its JSON) -----------------------------------


def _name(stream: Stream) -> str:
    return f"{stream.modelled['method']} on {stream.modelled['mixture']}"


def term_reason(term: StreamTerm) -> str:
    """Why a term is zero by construction or not measured (empty otherwise)."""
    t = term.term
    if t.status == UNMEASURED:
        return UNMEASURED_REASON
    if t.status != ZERO:
        return ""
    if t.part == "carry_over" and t.controlled:
        return "the policy's carried state changed no round"
    return ZERO_REASONS[t.part]


#: the wall-clock twin of a stream whose requests (or counterparts') were co-decoded
NO_WALL_CLOCK = "no batch-1 wall clock (co-decoded)"


def _wall_text(stream: Stream, value_pct: float | None) -> str:
    """The wall-clock twin of a figure, marked when the stream ran under changing load (or
    :data:`NO_WALL_CLOCK`)."""
    if not stream.clocked:
        return NO_WALL_CLOCK
    if stream.load.changing:
        return f"wall clock {pct(value_pct)}, taken under changing load"
    return f"wall clock {pct(value_pct)}"


def _finding_text(stream: Stream, term: StreamTerm) -> str:
    t = term.term
    return (
        f"{_name(stream)}: {LABELS[t.part]} {pct(t.pct)} of single-task decode time (95% CI "
        f"{span(t.low_pct, t.high_pct)}), modelled; {_wall_text(stream, term.wall_pct)}."
    )


def mix_text(composition_pct: float | None, tasks: Sequence[MixTask]) -> str:
    """Why the mix is harder (composition > 0) or easier (< 0): the (at most three) tasks whose
    share, larger or smaller than in the single-task set, moves it most that way."""
    harder = (composition_pct or 0.0) > 0
    moving = [t for t in tasks if (t.pct or 0.0) * (1 if harder else -1) > 0]
    moving = (moving if harder else moving[::-1])[:3]
    if not moving:
        return ""
    named = [
        f"{'more' if t.share > t.reference_share else 'less'} {t.category} "
        f"({t.share:.0%} of its tokens against {t.reference_share:.0%}; "
        f"{t.relative_cost:.2f}x the set's seconds per token)"
        for t in moving
    ]
    word = "harder" if harder else "easier"
    return f"The mix is {word} than the single-task set: {', '.join(named)}."


def interval_text(low_pct: float | None, high_pct: float | None, thin: Sequence[ThinTask]) -> str:
    """``95% CI -1.0% to +2.0%``, or, when the interval is not estimable
    (:func:`specviz.metrics.degradation.thin_tasks_of_term`), ``interval not estimable: 1
    request for coding; use ≥ 2 per task``."""
    if not thin:
        return f"95% CI {span(low_pct, high_pct)}"
    counts = ", ".join(
        f"{t.requests} request{'' if t.requests == 1 else 's'} for {t.category}" for t in thin
    )
    return f"interval not estimable: {counts}; use ≥ {MIN_TASK_REQUESTS} per task"


def _total_text(stream: Stream) -> str:
    f = stream.figures
    load = " (taken under changing load)" if stream.load.changing else ""
    interval = interval_text(f.total_low_pct, f.total_high_pct, f.total_thin_tasks)
    extra = (
        f"Multitask terms together {pct(f.multitask_pct)} modelled; with tuning "
        f"({pct(stream.term('tuning').pct)}) the extra time is {pct(f.total_pct)} ({interval})"
    )
    if not stream.clocked:
        return f"{extra}; {NO_WALL_CLOCK}."
    return (
        f"{extra}, {pct(f.wall_total_pct)} by the wall clock{load}; modelled / wall-clock "
        f"seconds {ratio(f.modelled_over_wall)}."
    )


def term_sentence(stream: Stream, term: StreamTerm) -> str:
    """One sentence for one term of one stream, saying what is established about it."""
    t = term.term
    head = f"{_name(stream)}: {LABELS[t.part]}"
    if t.status == FINDING:
        return _finding_text(stream, term)
    if t.status in (ZERO, UNMEASURED):
        return f"{head} is {t.status} ({term_reason(term)})."
    if t.status == NOT_ESTIMABLE:
        interval = interval_text(None, None, t.thin_tasks)
        return f"{head} {pct(t.pct)} ({interval}), modelled; {_wall_text(stream, term.wall_pct)}."
    return (
        f"{head} {pct(t.pct)} is inside the noise (95% CI {span(t.low_pct, t.high_pct)}); the "
        f"smallest effect this study could detect is ±{t.detectable_pct:.1f}%."
    )


def headline(answer: StudyAnswer) -> dict[str, Any]:
    """The lead (:func:`specviz.metrics.lead.lead`: the largest *multitask* finding among
    drafted streams, never tuning, or the stream with the largest multitask extra time when
    none is established) in words."""
    found = answer.lead
    if found is None:
        return {"text": NO_STREAM, "status": None}
    stream = answer.streams[found.stream]
    f = stream.figures
    if found.term is not None:
        term = stream.terms[found.term]
        composition = stream.term("composition").pct
        harder = mix_text(composition, stream.mix_tasks) if found.part == "composition" else ""
        short = _finding_text(stream, term)
        text = " ".join(x for x in (short, harder, _total_text(stream)) if x)
    else:
        text = f"No multitask term is established for any method. {_name(stream)}: " + _total_text(
            stream
        )
        short = (
            "No multitask term is established for any method; the largest multitask extra "
            f"time: {_name(stream)}, {pct(f.multitask_pct)} of single-task decode time, modelled."
        )
    m = stream.modelled
    return {"text": text, "short": short, "status": found.status, "method": m["method"],
            "mixture": m["mixture"], "part": found.part, "pct": found.pct,
            "multitask_pct": f.multitask_pct, "total_pct": f.total_pct}  # fmt: skip


def tuning_lines(answer: StudyAnswer) -> list[dict[str, Any]]:
    """Each tuning loss (:attr:`~specviz.metrics.study.StudyAnswer.tuning`) in words: what a
    better global k would save, single-task serving too."""
    out = []
    for stream, loss in answer.tuning:
        m, term = stream.modelled, loss.term
        single = m["best_single_k"]
        scope = "for every task here" if loss.every_task else f"on {m['mixture']}'s tasks together"
        text = (
            f"Tuning, not a multitask cost: {_name(stream)}: k = {m['k']} is worse than "
            f"k = {single} {scope}: {pct(term.pct)} of single-task decode time (95% CI "
            f"{span(term.low_pct, term.high_pct)}), modelled; a single-task deployment "
            f"at k = {m['k']} pays it too."
        )
        out.append({"method": m["method"], "mixture": m["mixture"], "k": m["k"],
                    "best_single_k": single, "every_task": loss.every_task, "pct": term.pct,
                    "text": text})  # fmt: skip
    return out


def load_lines(streams: Sequence[Stream]) -> list[str]:
    """For each stream whose wall clock was taken under changing load
    (:func:`specviz.metrics.answer.wall_load`), how much load alone moves its wall-clock
    extra time."""
    out = []
    for stream in streams:
        load = stream.load
        if not load.changing:
            continue
        loads = load.loads or {}
        allowed = (
            "with no interval to hold it against"
            if load.allowed_pct is None
            else f"beyond the ±{load.allowed_pct:.1f}% its interval allows"
        )
        out.append(
            f"The wall clock was taken under changing load: {_name(stream)} ran its multitask "
            f"requests at {loads['multitask_load']:.2f}x the median request's load and its "
            f"single-task counterparts at {loads['single_task_load']:.2f}x (request load "
            f"factors {loads['min_load']:.2f}-{loads['max_load']:.2f}x), which alone moves its "
            f"wall-clock extra time by {pct(load.shift_pct)}, {allowed}: its wall-clock "
            "figures are not findings; read the modelled ones."
        )
    return out


def load_summary(answer: StudyAnswer) -> str | None:
    """One sentence for the first screen: how many streams' wall clocks were taken under
    changing load and how far load alone moves them; :func:`load_lines` gives each stream's
    detail. None when every wall clock held steady."""
    found = answer.changing_load
    if found is None:
        return None
    return (
        f"The wall clock was taken under changing load for {found.streams} of {found.of} "
        f"streams: load alone moves their wall-clock extra time by "
        f"{span(found.low_pct, found.high_pct)}, beyond what their intervals allow, so their "
        "wall-clock figures are not findings; read the modelled ones (each stream under The "
        "numbers)."
    )


# what a route-by-task or change-k advice says, by the established loss that decides it
_ADVICE = {
    "drafter_memory": "route by task: give each task its own drafter memory (sharing one costs "
    "{loss})",
    "carry_over": "route by task: keep the policy's state per task (carrying it across tasks "
    "costs {loss})",
    "k_mismatch": "route by task (k per task: {best_k}): sharing one k costs {loss}",
    "tuning": "change k to {best_single_k} (saves {loss} of single-task decode time, on any traffic)",
}


def advice_text(advice: Advice, row: Mapping[str, Any]) -> str:
    """An :class:`~specviz.metrics.advice.Advice` in words, naming the stream's ``k``, the best
    k of each task (``best_k``) or the best single k (``best_single_k``) of its degradation
    ``row`` as it calls for."""
    if advice.action == DO_NOT_SPECULATE:
        return (
            "do not speculate on this traffic: the baseline is every task's best static "
            "configuration"
        )
    if advice.action == KEEP_K:
        return f"keep k = {row['k']}"
    if advice.term is None:
        return (
            f"route by task: speculate only on {', '.join(advice.speculate_on)}; the baseline "
            "is the best single configuration"
        )
    return _ADVICE[advice.term.part].format(
        loss=pct(advice.term.pct), best_k=row["best_k"], best_single_k=row["best_single_k"]
    )


def routes_text(routes: Sequence[Mapping[str, Any]]) -> str:
    """``every task: prompt-lookup k=5``, or ``coding: ...; writing: ...``."""
    distinct = {r["route"] for r in routes}
    if len(distinct) == 1:
        return f"every task: {distinct.pop()}"
    return "; ".join(f"{r['category']}: {r['route']}" for r in routes)


def absence_text(absence: Absence, oracle: str) -> str:
    """Why a remedy has no row, with the note on the missing oracle when that is why."""
    if absence.reason == NOT_RUN:
        return ABSENT
    return "no oracle gap for its streams" if absence.reason == NO_GAP else oracle


def ratios_text(regime: Regime) -> str:
    """``T(3)/T(1) = 1.05, T(6)/T(1) = 1.16`` (``no drafted k`` when none ran)."""
    if not regime.verify_ratios:
        return "no drafted k"
    return ", ".join(f"T({k + 1})/T(1) = {r:.2f}" for k, r in regime.verify_ratios)


def dtype_text(regime: Regime) -> str:
    """``bfloat16 (auto: the CPU has native bf16 (avx512_bf16)) on cpu``, or why it is unknown."""
    if not regime.dtypes:
        return "dtype not recorded"
    dtypes = " and ".join(regime.dtypes) + (" (runs differ)" if len(regime.dtypes) > 1 else "")
    reason = f" ({regime.dtype_reason})" if regime.dtype_reason else ""
    where = f" on {regime.gpu or regime.device}" if regime.gpu or regime.device else ""
    return f"{dtypes}{reason}{where}"


def regime_text(regimes: Sequence[Regime]) -> str:
    """One sentence: the dtype and the verify-cost curve each target's modelled figures hold
    for (every modelled figure is priced with that curve; another dtype or machine has
    another curve, and the best k and the terms that price k follow it)."""
    if not regimes:
        return "Regime: no calibrated cost curve (no unbatched rounds)."
    parts = [f"{r.target}, {dtype_text(r)}, verify cost {ratios_text(r)}" for r in regimes]
    return (
        f"Regime: {'; '.join(parts)} (calibrated on this study's rounds): the modelled "
        "answer holds for this dtype and cost curve."
    )


# -- the parts: each kind's HTML and text side by side -----------------------------------------


@dataclass(frozen=True)
class Part:
    """One part of the answer, rendered for the page (``html``, every text escaped) and for the
    terminal (``text``, its lines); an empty rendering leaves the part out of that medium."""

    html: str
    text: tuple[str, ...]


def page_only(part: Part) -> Part:
    return Part(part.html, ())


def terminal_only(part: Part) -> Part:
    return Part("", part.text)


def heading(text: str) -> Part:
    """The question: ``<h2>``; a line and a blank."""
    return Part(text_element("h2", text), (text, ""))


def lead(text: str) -> Part:
    """The headline: a bold paragraph; a line and a blank."""
    return Part(element("p", element("strong", esc(text))), (text, ""))


def lines(items: Sequence[str], class_: str | None = None) -> Part:
    """Sentences: a paragraph each; a line each, then a blank (nothing when none)."""
    html = "".join(text_element("p", x, class_=class_) for x in items)
    return Part(html, (*items, "") if items else ())


def bullets(items: Sequence[str]) -> Part:
    """A list: ``<ul>``; ``- `` lines, then a blank (nothing when empty)."""
    html = element("ul", "".join(text_element("li", x) for x in items)) if items else ""
    return Part(html, (*[f"- {x}" for x in items], "") if items else ())


def title(text: str, detail: str = "") -> Part:
    """A section's title: ``<h3>`` with its ``detail``; ``text:`` with its section right under."""
    return Part(text_element("h3", text + detail), (f"{text}:",))


def table(header: list[str], rows: list[list[str]]) -> Part:
    """Rows of formatted cells: :func:`~specviz.report.numbers.rows_table`; :func:`text_table`
    and a blank."""
    return Part(rows_table(header, rows), (text_table(header, rows), ""))


def note(text: str, class_: str = "specviz-note") -> Part:
    """Small print: a paragraph of ``class_``; a closing line (no blank after it)."""
    return Part(text_element("p", text, class_=class_), (text,))


def render_html(parts: Sequence[Part]) -> str:
    return "".join(p.html for p in parts)


def render_text(parts: Sequence[Part]) -> str:
    return "\n".join(line for p in parts for line in p.text)


def text_table(header: list[str], rows: list[list[str]]) -> str:
    """Columns aligned with spaces, for a terminal."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    rows_ = [header, ["-" * w for w in widths], *rows]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in rows_)  # fmt: skip


# -- the published answer's sentences and tables -----------------------------------------


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


def remedy_lines(remedies: dict[str, Any]) -> list[str]:
    """Sentences for the published ``remedies``: the multitask loss of each stream against the
    oracle, each remedy's recovered share, the drafter-memory term, and "not in this study" for
    a remedy the study did not run (modelled seconds, the wall-clock figure after it)."""
    out = [
        f"{r['method']} on {r['mixture']}: {pct(r['gap_share'], 1.0)} of its seconds above "
        "the oracle (each task's best static drafter and k, chosen on other prompts); wall "
        f"clock {pct(r.get('gap_share_wall'), 1.0)}."
        for r in remedies["loss"]
    ]
    for r in remedies["recovered"]:
        what = (
            f"recovers {share(r['recovered_share'])} of the oracle gap (wall clock "
            f"{share(r.get('recovered_share_wall'))})"
            if r["recovered_share"] is not None
            else "has no oracle gap to recover (the reference is at the oracle)"
        )
        out.append(
            f"{r['remedy']} ({r['reference']} -> {r['remedied']}) on {r['mixture']}: {what}."
        )
    for m in remedies["memory"]:
        out.append(
            f"{m['shared']} (shared memory) vs {m['per_task']} (per-task memory), {m['policy']} "
            f"k={m['k']} on {m['mixture']}: interleaving {pct(m['interleaving_pct'])} of "
            f"single-task decode time = drafter memory {pct(m['drafter_memory_pct'])} + other "
            f"{pct(m['other_interleaving_pct'])}; wall clock: drafter memory "
            f"{pct(m.get('drafter_memory_pct_wall'))}."
        )
    return out + [f"{name}: {reason}." for name, reason in remedies["absent"].items()]


def drafted_first(streams: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The drafted streams, then the baseline's (the controls), each in the answer's order."""
    return sorted(streams, key=lambda r: r["drafter"] == BASELINE)  # stable: order kept


def _drafted_terms(answer: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(stream, term) of every drafted stream, in the answer's order (that of ``findings``)."""
    return [(r, t) for r in answer["streams"] if r["drafter"] != BASELINE for t in r["terms"]]


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


def _clock_name(row: dict[str, Any], clock: str) -> str:
    """``modelled``, ``wall clock``, or ``wall clock (changing load)`` when the stream's wall
    clock was taken under changing load (its figures are then no finding)."""
    changing = clock == "wall" and row.get("load", {}).get("changing")
    return f"{CLOCK_NAMES[clock]} (changing load)" if changing else CLOCK_NAMES[clock]


def decomposition_rows(streams: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the decomposition: each stream modelled, then its wall-clock check."""
    header = ["method", "mixture", "clock", "multitask decode tok/s", "single-task decode tok/s",
              "extra time",
              *[LABELS[p] for p in TERMS], "modelled / wall s", "best k per task",
              "best single k"]  # fmt: skip
    # a stream with no batch-1 wall clock (co-decoded) has its modelled row only
    return header, [_decomposition_row(r, c) for r in drafted_first(streams) for c in CLOCK_NAMES
                    if c == "modelled" or r.get("clocked", True)]  # fmt: skip


def _decomposition_row(r: dict[str, Any], clock: str) -> list[str]:
    d, ref = r[clock], r[clock]["reference_s"]
    return [r["method"], r["mixture"], _clock_name(r, clock), rate(d["multitask_tokens_per_s"]),
            rate(d["reference_tokens_per_s"]), pct(d["total"], ref),
            *[pct(d[p], ref) for p in TERMS],
            ratio(r["modelled_over_wall"]) if clock == "modelled" else "",
            r.get("best_k") or "", r.get("best_single_k") or ""]  # fmt: skip


def configuration_rows(configs: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Per drafted multitask stream: its throughput, the best single k for its method, the best
    single configuration for its traffic, the per-task oracle and what to do."""
    header = ["method", "mixture", "decode tok/s", "best single k", "best single configuration",
              "per-task oracle", "oracle routes", "what to do"]  # fmt: skip
    rows = [[c["method"], c["mixture"], rate(c["tokens_per_s"]),
             f"k={c['best_single_k']}: {decode_tok_s(c['single_k_tokens_per_s'])}",
             f"{c['single']}: {decode_tok_s(c['single_tokens_per_s'])}", decode_tok_s(c["oracle_tokens_per_s"]),
             c["routes"], c["advice"]["text"]]
            for c in configs]  # fmt: skip
    return header, rows


def speedup_rows(speedups: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    header = ["method", "requests", "speedup modelled", "95% CI", "speedup wall clock",
              "95% CI (wall)", "modelled / wall"]  # fmt: skip
    three = partial(ratio, places=3)
    rows = [[s["method"], str(s["requests"]), three(s["modelled"]),
             span(s["modelled_low"], s["modelled_high"], three), three(s["wall"]),
             span(s["wall_low"], s["wall_high"], three) if s["wall"] is not None else "n/a",
             three(s["modelled_over_wall"])]
            for s in sorted(speedups, key=lambda s: s["method"])]  # fmt: skip
    return header, rows


def _pad(cells: list[str], width: int) -> list[str]:
    return (cells + [""] * width)[:width]


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
        if m.get("prefill_s_per_token2"):
            prefill += f" + {1e6 * m['prefill_s_per_token2']:.3f} µs per prompt token squared"
        falling = m["prefill_s_per_token"] < 0 and not m.get("prefill_s_per_token2")
        if falling:  # a longer prompt is never cheaper: noise, not a cost
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
    rows = [[r["method"], r["mixture"], str(r["requests"]), str(r["tokens"]),
             rate(r["modelled_tokens_per_s"]), rate(r["wall_tokens_per_s"]),
             ratio(r["modelled_over_wall"])]
            for r in runs]  # fmt: skip
    return header, rows


# -- the summary: the page's (summary_html) and the terminal's (answer_text) ------------------


def _data_parts(answer: dict[str, Any]) -> list[Part]:
    """Every stream's throughput, the cost curve and the data they come from."""
    clock, runs, requests = answer["clock"], answer["runs"], answer["requests"]
    over = ratio(clock["modelled_over_wall"])
    return [
        title("Every stream", ", modelled and wall clock"),
        table(*runs_rows(answer["runs_table"])),
        title("Cost curve", " (modelled seconds)"),
        table(*cost_rows(answer["cost_models"])),
        page_only(note(
            f"Data: {runs} runs, {requests} requests, categories "
            f"{', '.join(answer['categories'])}; methods {', '.join(answer['methods'])}. "
            f"Modelled seconds are {over} of the wall clock over {clock_scope(answer)} (per-round "
            "Python overhead is not modelled)."
        )),
        terminal_only(note(
            f"{runs} runs, {requests} requests; modelled seconds are {over} of the wall "
            f"clock{_scope_suffix(answer)}."
        )),
    ]  # fmt: skip


def summary_parts(answer: dict[str, Any]) -> list[Part]:
    """Every part of the summary, in order: the question, the headline and the lines under it,
    the findings (the page leaves out the terms zero by construction: the first screen's
    footnote names them), the tables, the remedies, the speedups and the data."""
    streams, configurations = answer["streams"], answer.get("configurations")
    controls = [control_sentence(r) for r in streams if r["drafter"] == BASELINE]
    parts = [heading(QUESTION), lead(answer["headline"]["text"]), lines(lead_lines(answer)),
             bullets(load_detail(answer))]  # fmt: skip
    if streams:
        parts += [terminal_only(bullets(answer["findings"] + controls)),
                  page_only(bullets(nonzero_findings(answer) + controls)),
                  table(*decomposition_rows(streams))]  # fmt: skip
    if configurations:
        parts += [title(CONFIGURATIONS_TITLE), table(*configuration_rows(configurations))]
    if streams:
        parts.append(page_only(note(CLOCKS_NOTE)))
    if answer.get("remedies"):  # on the page, beside the findings only
        remedies = [title(REMEDIES_TITLE), bullets(remedy_lines(answer["remedies"]))]
        parts += remedies if streams else [terminal_only(p) for p in remedies]
    if answer["speedups"]:
        # the wall clock's scope (the batch-1 subsample when runs were co-decoded) is in the
        # page's title; the terminal's closing line names it
        detail = f", modelled and wall clock{_scope_suffix(answer)}"
        parts += [title("Speedup over the baseline", detail),
                  table(*speedup_rows(answer["speedups"]))]  # fmt: skip
    return parts + (_data_parts(answer) if answer["runs_table"] else [])


def summary_html(published: dict[str, Any]) -> str:
    """The summary block: the question, the answer, its tables, the cost curve, the data."""
    answer = published.get("answer")
    parts = summary_parts(answer) if answer else [heading(QUESTION), lines([NO_STREAM])]
    return element("section", render_html(parts), class_="specviz-summary")


def answer_text(answer: dict[str, Any]) -> str:
    """The summary for a terminal: the same answer, sentences and tables as :func:`summary_html`."""
    return render_text(summary_parts(answer))


def first_screen_parts(answer: dict[str, Any] | None) -> list[Part]:
    """The report's first screen: the question, the headline (or why nothing can be
    compared), the regime it holds for, the tuning losses and the wall-clock load warning."""
    if answer is None:
        return [heading(QUESTION), lead(NO_STREAM)]
    regime = answer.get("regime", {}).get("text")
    return [
        heading(QUESTION),
        lead(answer["headline"]["text"]),
        *([note(regime, class_="specviz-note specviz-regime")] if regime else []),
        lines(lead_lines(answer), class_="specviz-note"),
    ]


# -- the one-screen summary (``specviz summary``; ``--all`` prints answer_text) ---------------

#: the default summary fits a terminal screen: at most this many lines of at most this many columns
SCREEN_LINES, SCREEN_COLUMNS = 25, 100
MAX_BEST_LINES = 4  # multitask mixtures named under "Best configuration"; the rest: --all
# each term's short name in the one-screen table
SHORT_TERMS = LABELS | {"drafter_memory": "drafter memory"}
BEST_TITLE = (
    "Best single configuration per multitask stream (modelled; --all: what to do per method):"
)
RESOLVED_TITLE = "Terms resolved at their target or established (95% CI excludes 0), modelled:"


def _wrap(text: str) -> list[str]:
    return textwrap.wrap(text, SCREEN_COLUMNS, break_on_hyphens=False) or [""]


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


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
    rows = [[_clip(f"{r['method']} · {r['mixture']}", 40), SHORT_TERMS.get(t["part"], t["part"]),
             pct(t["pct"]), span(t["low_pct"], t["high_pct"]), _width_cell(t)]
            for r, t in shown]  # fmt: skip
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
    out = [
        _clip(
            f"{mixture}: {c['single']}, {decode_tok_s(c['single_tokens_per_s'])} (per-task oracle "
            f"{decode_tok_s(c['oracle_tokens_per_s'])})",
            SCREEN_COLUMNS,
        )
        for mixture, c in sorted(best.items())
    ]
    if len(out) > MAX_BEST_LINES:
        hidden = len(out) - MAX_BEST_LINES + 1
        out = [*out[: MAX_BEST_LINES - 1], f"… and {hidden} more streams (--all)"]
    return out


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
    best_block = [BEST_TITLE, *best] if best else []
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
