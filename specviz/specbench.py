"""Export a run in Spec-Bench's answer format, for Spec-Bench's own ``evaluation/speed.py``.

One JSON object per request (in stream order)::

    {"question_id": prompt_id, "category": category, "answer_id": request_id,
     "model_id": "<target>-specviz-<drafter>-<policy>-k<k>-temp-<t>",
     "choices": [{"index": 0, "turns": [text per turn], "new_tokens": [per turn],
                  "wall_time": [seconds per turn], "decoding_steps": [per turn],
                  "accept_lengths": [tokens emitted per verify round, all turns]}]}

``decoding_steps`` counts the target forward passes of each turn, its prefill included, so
``sum(decoding_steps) == len(accept_lengths) + number of turns``. ``accept_lengths`` holds, for
every verify round in order, the tokens it emitted, correction or bonus included (plain
decoding: all 1), so Spec-Bench's "#Mean accepted tokens" (``np.mean`` over all
accept_lengths of the file) equals specviz's mean accepted length of the run, and its per-request
speed ``sum(new_tokens) / sum(wall_time)`` equals the request table's ``new_tokens / wall_s``.

Differences to keep in mind when comparing with the leaderboard: Spec-Bench's own decoders count
every token a step appends, including tokens after an end-of-sequence token in the final step
(specviz counts only emitted tokens); ``speed.py`` re-counts the *baseline's* tokens by
re-tokenizing its output text (``len(tokenizer(turn).input_ids) - 1`` per turn, which assumes one
BOS token), and its speedup is the mean per-request tokens/s of the method over the mean
per-request tokens/s of the baseline, not paired by prompt.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from specviz.metrics import expressions as ex
from specviz.metrics.frames import collect
from specviz.rundir import (
    EVENTS_FILE,
    REQUESTS_FILE,
    RunDirError,
    check_out_file,
    collect_tables,
    is_run_dir,
    refuse_unfinished,
    scan_events,
    scan_requests,
    write_out_file,
)


def _model_id(row: dict) -> str:
    target = Path(str(row["target"]).rstrip("/")).name or str(row["target"])
    if row["drafter"] == "none":
        method = "vanilla"
    else:
        method = f"{row['drafter']}-{row['policy']}-k{row['k']}"
    return f"{target}-specviz-{method}-temp-{row['temperature']}"


def accept_lengths(events: pl.LazyFrame) -> pl.DataFrame:
    """Per request (run_id, request_id): the list of tokens emitted by each verify round, in order."""
    return (
        events.filter(~pl.col("prefill"))
        .group_by(["run_id", "request_id", "round"])
        .agg(ex.count_where(pl.col("emitted")).alias("emitted"))
        .group_by(["run_id", "request_id"])
        .agg(pl.col("emitted").sort_by("round").alias("accept_lengths"))
        .pipe(collect)
    )


def _turn_lists(row: dict) -> tuple[list, list, list, list]:
    lists = (row["output_turns"], row["turn_new_tokens"], row["turn_wall_s"], row["turn_rounds"])
    if all(v is not None for v in lists):
        return tuple(list(v) for v in lists)  # type: ignore[return-value]
    if row["n_turns"] == 1:
        return [row["output_text"]], [row["new_tokens"]], [row["wall_s"]], [row["rounds"]]
    raise RunDirError(
        f"request {row['request_id']} has {row['n_turns']} turns but no per-turn columns "
        "(output_turns, turn_new_tokens, turn_wall_s, turn_rounds): re-run it with this specviz."
    )


def is_specbench_export(head: bytes) -> bool:
    """The start of a file is an answer file this module wrote (its first line names specviz in
    ``model_id``), so exporting again may replace it."""
    first = head.split(b"\n", 1)[0]
    try:
        row = json.loads(first)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(row, dict) and "-specviz-" in str(row.get("model_id", ""))


def export_specbench(
    run_dir: Path, out: Path, *, allow_incomplete: bool = False, force: bool = False
) -> int:
    """Write the run at ``run_dir`` as a Spec-Bench answer file ``out``; returns the line count.

    ``run_dir`` must be one run directory (one model configuration), not a study directory. An
    unfinished run is refused unless ``allow_incomplete`` (then its finished requests are written).
    ``out`` may be a new file, an answer file specviz wrote, a character device or a pipe; any
    other existing file is refused unless ``force`` (:func:`specviz.rundir.outdir.check_out_file`).
    """
    run_dir = Path(run_dir)
    out = Path(out)
    if not is_run_dir(run_dir):
        raise RunDirError(
            f"{run_dir} is not a run directory (no run.json): export one run at a time, e.g. "
            "one of the directories `specviz study` created."
        )
    check_out_file(out, force=force, ours=is_specbench_export)
    refuse_unfinished(run_dir, allow_incomplete)
    requests = collect_tables(scan_requests(run_dir).sort("request_index"), run_dir, REQUESTS_FILE)
    try:
        lengths = accept_lengths(scan_events(run_dir))
    except (pl.exceptions.PolarsError, OSError):
        collect_tables(scan_events(run_dir), run_dir, EVENTS_FILE)  # names a damaged file
        raise
    table = requests.join(lengths, on=["run_id", "request_id"], how="left")
    lines = []
    for row in table.iter_rows(named=True):
        turns, new_tokens, wall_time, steps = _turn_lists(row)
        lines.append(
            json.dumps(
                {
                    "question_id": row["prompt_id"],
                    "category": row["category"],
                    "answer_id": row["request_id"],
                    "model_id": _model_id(row),
                    "choices": [
                        {
                            "index": 0,
                            "turns": turns,
                            "new_tokens": new_tokens,
                            "wall_time": wall_time,
                            "decoding_steps": steps,
                            "accept_lengths": row["accept_lengths"] or [],
                        }
                    ],
                },
                ensure_ascii=False,
            )
        )
    write_out_file(out, "".join(line + "\n" for line in lines))
    return len(lines)
