"""A recorded study shaped like the default one (studies/default.toml), built from engine records.

Prompt lookup on a mix of tasks: five tasks, each with its own share of copyable tokens; the
single-task set holds every task equally (6 prompts each) and the multitask stream ``chat-mix``
weights the hard tasks (writing, roleplay: little to copy) more and the easy ones (extraction,
summarization) less, as the default study's chat mix does. Methods: the baseline, and prompt
lookup under the ``constant`` and the persistent ``heuristic`` policy at k = 2 and k = 5.

Rounds are deterministic per prompt and k, as under greedy decoding: a prompt is a fixed
sequence of copyable / not copyable positions (seeded by its id); at each position the drafter
proposes the copyable run ahead, up to k tokens, and the target accepts all of it (nothing
when there is no run). The verify cost steps up between 3 and 4 rows, as on the development
machine, yet k = 5 is never slower than k = 2 on a prompt: copying up to 5 tokens beats two
rounds. So k = 5 is the best k for every task, and the k = 2 streams pay a *tuning* loss.

``load`` multiplies every second of the runs from index ``load_from`` on (the order of
:func:`mix_runs`: single-task runs first, then the multitask ones), so a study's load factor can
jump half-way. These are TEST data: they exercise the metrics, never stand in for measurements.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from report_fixtures import _request_row

from specviz.config import DrafterConfig, ModelSpec, PolicyConfig, RunConfig
from specviz.recorder import UNBATCHED_EVENT_LABELS, EventRecorder
from specviz.records import Round
from specviz.rundir import EVENTS_FILE, REQUEST_SCHEMA, REQUESTS_FILE, RUN_FILE, SCHEMA_VERSION

COPYABLE = {
    "writing": 0.3,
    "roleplay": 0.3,
    "coding": 0.6,
    "extraction": 0.9,
    "summarization": 0.85,
}
SINGLE_PROMPTS = 6
CHAT_MIX = {"writing": 6, "roleplay": 6, "coding": 6, "extraction": 3, "summarization": 3}
TOKENS = 48
METHODS = (("none", "constant", 0), ("prompt-lookup", "constant", 2),
           ("prompt-lookup", "constant", 5), ("prompt-lookup", "heuristic", 2),
           ("prompt-lookup", "heuristic", 5))  # fmt: skip


@dataclass(frozen=True)
class MixRun:
    """One run: a method (drafter, policy, k) on a mixture (a task, or ``chat-mix``)."""

    drafter: str
    policy: str
    k: int
    mixture: str
    load: float = 1.0
    partition: str | None = None  # a suffix drafter's memory: "shared" or "task"

    @property
    def label(self) -> str:
        """The drafter's label (``suffix-shared``, ``suffix-task``, or its kind)."""
        return f"{self.drafter}-{self.partition}" if self.partition else self.drafter

    @property
    def name(self) -> str:
        return f"{self.label}-{self.policy}-k{self.k}-{self.mixture}"

    def prompts(self) -> list[str]:
        """The run's prompts in stream order (chat-mix: the tasks interleaved)."""
        if self.mixture != "chat-mix":
            return [f"{self.mixture}-{i}" for i in range(SINGLE_PROMPTS)]
        queues = {c: [f"{c}-{i}" for i in range(n)] for c, n in CHAT_MIX.items()}
        out = []
        while any(queues.values()):
            out += [q.pop(0) for q in queues.values() if q]
        return out


def mix_runs(load: float = 1.0, load_from: int | None = None) -> list[MixRun]:
    """Every run of the study: single-task runs of every method, then the chat-mix runs."""
    mixtures = [*COPYABLE, "chat-mix"]
    runs = [MixRun(d, p, k, m) for m in mixtures for d, p, k in METHODS]
    cut = len(runs) if load_from is None else load_from
    return [MixRun(r.drafter, r.policy, r.k, r.mixture, load if i >= cut else 1.0)
            for i, r in enumerate(runs)]  # fmt: skip


def memory_runs() -> list[MixRun]:
    """The baseline and a suffix drafter at k = 5 with one memory shared by every task, or one
    per task. Single-task, the two are the same; on chat-mix the shared memory holds the other
    tasks' outputs, which halves the copyable run the drafter finds."""
    mixtures = [*COPYABLE, "chat-mix"]
    methods = [("none", "constant", 0, None), ("suffix", "constant", 5, "shared"),
               ("suffix", "constant", 5, "task")]  # fmt: skip
    return [MixRun(d, p, k, m, partition=part) for m in mixtures for d, p, k, part in methods]


def _verify_s(rows: int) -> float:
    return 0.020 + 0.0005 * (rows - 1) + (0.004 if rows >= 4 else 0.0)


def _copyable(prompt_id: str) -> list[bool]:
    rng = random.Random(prompt_id)
    return [rng.random() < COPYABLE[prompt_id.rsplit("-", 1)[0]] for _ in range(TOKENS + 8)]


def _rounds(run: MixRun, prompt_id: str, k: int) -> tuple[list[tuple[Round, float, float]], int]:
    """One request's records with (draft, verify) seconds, and the policy's k after it."""
    copyable = _copyable(prompt_id)
    first = Round(turn=0, index=0, prefill=True, k=0, draft=(), q_tokens=None, target=(1,), p=(),
                  p_next=0.5, n_accepted=0, n_emitted=1, finish=None)  # fmt: skip
    rounds = [(first, 0.0, 0.05 * run.load)]
    pos = 1
    while pos < TOKENS:
        run_ahead = 0
        while pos + run_ahead < len(copyable) and copyable[pos + run_ahead]:
            run_ahead += 1
        if run.partition == "shared" and run.mixture == "chat-mix":
            run_ahead //= 2
        asked = 0 if run.drafter == "none" else k
        drafted = min(asked, run_ahead)
        emitted = min(drafted + 1, TOKENS - pos)
        pos += emitted
        draft = tuple(range(10, 10 + drafted))
        record = Round(turn=0, index=len(rounds), prefill=False, k=asked, draft=draft, q_tokens=None,
                       target=(*draft, 2), p=(0.9,) * drafted, p_next=0.5, n_accepted=drafted,
                       n_emitted=emitted, finish="length" if pos >= TOKENS else None)  # fmt: skip
        draft_s = 0.0 if run.drafter == "none" else (0.0004 + 0.0001 * drafted) * run.load
        rounds.append((record, draft_s, _verify_s(drafted + 1) * run.load))
        if run.policy == "heuristic" and run.drafter != "none":
            k = k + 2 if drafted == asked else max(1, k - 1)
    return rounds, k


def write_mix_run(run_dir: Path, run: MixRun) -> None:
    """events.parquet, requests.parquet and run.json of one run."""
    drafter = DrafterConfig(kind=run.drafter)
    if run.partition:
        drafter = DrafterConfig(kind=run.drafter, name=run.label, partition=run.partition)
    config = RunConfig(target=ModelSpec(name="tiny-target"), drafter=drafter,
                       policy=PolicyConfig(kind=run.policy, k=max(run.k, 1)),
                       max_new_tokens=TOKENS)  # fmt: skip
    rng = random.Random(run.name)
    events, requests, k = [], [], run.k
    for index, prompt_id in enumerate(run.prompts()):
        category = prompt_id.rsplit("-", 1)[0]
        labels = {"run_id": run.name, "request_id": f"{index:05d}-{prompt_id}",
                  "request_index": index, "repeat": 0, "prompt_id": prompt_id,
                  "category": category, "mixture": run.mixture, "drafter": run.label,
                  "policy": config.policy_label, "target": "tiny-target"}  # fmt: skip
        recorder = EventRecorder()
        rounds, k = _rounds(run, prompt_id, k)
        for record, draft_s, verify_s in rounds:
            recorder.add(record, draft_s, verify_s)
        frame = recorder.frame(labels | UNBATCHED_EVENT_LABELS)
        events.append(frame)
        requests.append(_request_row(labels, config, frame.to_dicts(), prompt_id, rng))
    run_dir.mkdir(parents=True, exist_ok=True)
    pl.concat(events).write_parquet(run_dir / EVENTS_FILE)
    pl.DataFrame(requests, schema=REQUEST_SCHEMA, orient="row").write_parquet(
        run_dir / REQUESTS_FILE
    )
    meta = {"schema_version": SCHEMA_VERSION, "run_id": run.name, "config": config.to_dict(),
            "requests": len(requests), "complete": True, "synthetic": True}  # fmt: skip
    (run_dir / RUN_FILE).write_text(json.dumps(meta, indent=2))


def write_mix_study(study_dir: Path, runs: list[MixRun]) -> Path:
    """A study directory: ``study.json`` plus ``runs/<name>/`` per run."""
    for run in runs:
        write_mix_run(study_dir / "runs" / run.name, run)
    conditions = [r.name for r in runs]
    (study_dir / "study.json").write_text(
        json.dumps({"name": study_dir.name, "conditions": conditions, "synthetic": True})
    )
    return study_dir
