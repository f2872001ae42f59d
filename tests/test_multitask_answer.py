"""The answer leads with what multitasking costs; a badly chosen k is tuning, on its own line.

On a recorded study shaped like the default one (tests/mix_study.py: prompt lookup at k = 2 and
k = 5 under the constant and the persistent heuristic policy; a chat mix weighting the hard
tasks more than the single-task set does; k = 5 the best k for every task).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from engine_helpers import run_cli
from mix_study import memory_runs, mix_runs, write_mix_study

from specviz.metrics.advice import advise
from specviz.metrics.answer import MixTask, Term
from specviz.metrics.degradation import MULTITASK_TERMS
from specviz.report.answer import FINDING, ZERO, study_answer
from specviz.report.data import load_runs
from specviz.report.summary import advice_text, answer_text, mix_text
from specviz.rundir import CO_DECODED_KEY, RUN_FILE

K2 = "prompt-lookup constant k=2"


@pytest.fixture(scope="module")
def answer(tmp_path_factory: pytest.TempPathFactory) -> dict:
    study = write_mix_study(tmp_path_factory.mktemp("mix") / "study", mix_runs())
    return study_answer(load_runs(study), n_boot=200)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> dict:
    # the load factor jumps half-way through the study: the later runs (every chat-mix run and
    # the last single-task ones) ran 2.5x slower
    runs = mix_runs(load=2.5, load_from=len(mix_runs()) // 2)
    study = write_mix_study(tmp_path_factory.mktemp("loaded") / "study", runs)
    return study_answer(load_runs(study), n_boot=200)


def stream(answer: dict, method: str) -> dict:
    return next(r for r in answer["streams"] if r["method"] == method)


def term(row: dict, part: str) -> dict:
    return next(t for t in row["terms"] if t["part"] == part)


def test_the_headline_leads_with_a_multitask_term_and_says_why_the_mix_is_harder(answer):
    head = answer["headline"]
    assert head["status"] == FINDING and head["part"] in MULTITASK_TERMS
    assert head["part"] == "composition"
    # the chat mix holds more of the hard tasks and less of the easy ones than the single-task set
    assert "The mix is harder than the single-task set" in head["text"]
    assert "more writing" in head["text"] and "less extraction" in head["text"]


def test_a_k_worse_than_the_best_single_k_for_every_task_is_tuning_not_the_headline(answer):
    k2 = stream(answer, K2)
    assert k2["best_single_k"] == "5" and k2["every_task_best_k"] == [5]
    tuning = term(k2, "tuning")
    assert tuning["status"] == FINDING and tuning["pct"] > 0
    # before the split, this loss was the stream's k mismatch; sharing k = 5 costs nothing
    assert term(k2, "k_mismatch")["status"] == ZERO
    assert term(stream(answer, "prompt-lookup constant k=5"), "tuning")["status"] == ZERO
    lines = [t for t in answer["tuning"] if t["method"] == K2]
    assert len(lines) == 1
    assert "k = 2 is worse than k = 5 for every task here" in lines[0]["text"]
    assert answer["headline"]["part"] != "tuning"


def test_summary_command_leads_with_the_multitask_term_then_the_tuning_line(
    tmp_path: Path, answer: dict
):
    study = write_mix_study(tmp_path / "study", mix_runs())
    done = run_cli("summary", str(study), "--all", "--n-boot", "200")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[2] == answer["headline"]["text"] == answer_text(answer).splitlines()[2]
    assert " composition " in lines[2]
    assert lines[4].startswith(f"Tuning, not a multitask cost: {K2} on chat-mix: k = 2 is worse")


def test_each_multitask_stream_gets_its_best_configuration_and_what_to_do(answer):
    configs = {c["method"]: c for c in answer["configurations"]}
    k2, k5 = configs[K2], configs["prompt-lookup constant k=5"]
    assert k2["single"] == "prompt-lookup k=5" and k2["routes"] == "every task: prompt-lookup k=5"
    assert k2["advice"] == {"action": "change k", "text": k2["advice"]["text"]}
    assert k2["advice"]["text"].startswith("change k to 5")
    assert k5["advice"]["action"] == "keep k"
    # k = 5 is every task's choice: per-task routing adds nothing over one configuration
    assert k5["single_tokens_per_s"] == pytest.approx(k5["oracle_tokens_per_s"])
    assert k2["tokens_per_s"] < k2["single_k_tokens_per_s"]
    assert "Which configuration to run on each multitask stream" in answer_text(answer)


def _row(tuning: str, mismatch: str, pct: float = 2.0, carry: str = "inside the noise") -> tuple:
    terms = [Term("tuning", tuning, pct, None, None),
             Term("k_mismatch", mismatch, pct, None, None),
             Term("carry_over", carry, pct, None, None)]  # fmt: skip
    return terms, {"k": 2, "best_single_k": "5", "best_k": "a=5, b=3"}


def what_to_do(row: tuple, routes: list[dict], single_baseline: bool) -> dict:
    """The published advice (action and words) for a stream's terms and degradation row."""
    terms, figures = row
    advice = advise(terms, routes, single_baseline)
    return {"action": advice.action, "text": advice_text(advice, figures)}


def test_what_to_do_follows_the_oracle_and_the_established_terms():
    spec = [{"category": "a", "speculate": True}, {"category": "b", "speculate": True}]
    noise, finding = "inside the noise", FINDING
    assert what_to_do(_row(noise, noise), spec, False)["action"] == "keep k"
    assert what_to_do(_row(finding, noise), spec, False)["text"].startswith("change k to 5")
    routed = what_to_do(_row(finding, finding), spec, False)
    assert routed["action"] == "route by task" and "a=5, b=3" in routed["text"]
    carried = what_to_do(_row(noise, noise, carry=finding), spec, False)
    assert carried["action"] == "route by task" and "state per task" in carried["text"]
    # every task's best static configuration is the baseline
    none = [{"category": "a", "speculate": False}, {"category": "b", "speculate": False}]
    assert what_to_do(_row(finding, finding), none, True)["action"] == "do not speculate"
    # one configuration for all: the baseline; but task a gains from speculating
    some = [{"category": "a", "speculate": True}, {"category": "b", "speculate": False}]
    advice = what_to_do(_row(noise, noise), some, True)
    assert advice["action"] == "route by task" and "speculate only on a" in advice["text"]


def test_a_steady_load_raises_no_load_warning(answer):
    assert answer["load"] == []
    assert all(not r["load"]["changing"] for r in answer["streams"])


def test_a_load_that_jumps_half_way_is_reported_instead_of_a_wall_clock_finding(loaded, answer):
    k5 = stream(loaded, "prompt-lookup constant k=5")
    load = k5["load"]
    # the chat-mix runs all ran at 2.5x, the single-task runs partly: the wall clock's multitask
    # extra time is inflated by load alone, far beyond its interval
    assert load["changing"] and load["multitask_load"] > load["single_task_load"]
    assert load["shift_pct"] > load["allowed_pct"]
    assert load["max_load"] / load["min_load"] == pytest.approx(2.5, rel=0.05)
    # the wall clock reads a large slowdown; the modelled figure, load divided out, does not move
    steady = stream(answer, "prompt-lookup constant k=5")
    assert k5["wall_total_pct"] > steady["wall_total_pct"] + 20
    assert k5["total_pct"] == pytest.approx(steady["total_pct"], abs=0.5)
    line = next(x for x in loaded["load"] if "prompt-lookup constant k=5 on chat-mix" in x)
    assert line.startswith("The wall clock was taken under changing load")
    assert "not findings" in line
    assert "taken under changing load" in loaded["headline"]["text"]
    text = answer_text(loaded)
    assert line in text
    assert "prompt-lookup constant k=5   chat-mix  wall clock (changing load)" in text


def test_a_shared_drafter_memory_leads_when_it_is_the_largest_multitask_cost(tmp_path: Path):
    study = write_mix_study(tmp_path / "study", memory_runs())
    answer = study_answer(load_runs(study), n_boot=200)
    head = answer["headline"]
    assert head["part"] == "drafter_memory" and head["method"] == "suffix-shared constant k=5"
    shared = stream(answer, "suffix-shared constant k=5")
    memory = term(shared, "drafter_memory")
    assert memory["status"] == FINDING and memory["low_pct"] > 0
    # the per-task memory repeats the single-task rounds: the shared memory's whole
    # interleaving cost is the memory term
    assert memory["pct"] == pytest.approx(term(shared, "residual")["pct"], abs=1e-6)
    configs = {c["method"]: c for c in answer["configurations"]}
    advice = configs["suffix-shared constant k=5"]["advice"]
    assert advice["action"] == "route by task" and "own drafter memory" in advice["text"]


def _task(category: str, share: float, reference: float, cost: float) -> MixTask:
    # the task's share part of composition, N (w - w')(s' - rate), as % of T_ref = N * rate
    return MixTask(category, share, reference, cost, 100 * (share - reference) * (cost - 1))


def test_a_composition_lead_says_whether_the_mix_is_harder_or_easier_and_why():
    # more of the expensive writing (+25 points at 1.6x: +15%), less of the cheap extraction
    # (-25 points at 0.4x: +15%), coding unchanged (0)
    mix = [_task("writing", 0.5, 0.25, 1.6), _task("coding", 0.25, 0.25, 1.0),
           _task("extraction", 0.25, 0.5, 0.4)]  # fmt: skip
    assert mix_text(30.0, mix) == (
        "The mix is harder than the single-task set: more writing (50% of its tokens against "
        "25%; 1.60x the set's seconds per token), less extraction (25% of its tokens against "
        "50%; 0.40x the set's seconds per token)."
    )
    flipped = [_task("writing", 0.25, 0.5, 1.6), _task("extraction", 0.5, 0.25, 0.4)]
    text = mix_text(-30.0, flipped)
    assert text.startswith("The mix is easier than the single-task set: ")
    assert "less writing (25% of its tokens against 50%" in text and "more extraction" in text


def test_the_lead_says_changing_load_once_however_many_streams_it_moved(loaded):
    from specviz.report.summary import lead_lines, load_detail

    moved = [r for r in loaded["streams"] if r["load"]["changing"]]
    lead = [x for x in lead_lines(loaded) if "changing load" in x]
    # one line under the headline (the first screen), each stream's detail in the numbers
    assert len(lead) == 1 and f"for {len(moved)} of {len(loaded['streams'])} streams" in lead[0]
    assert len(load_detail(loaded)) == len(moved) >= 1


def _co_decode(study: Path, runs: list, mixture: str) -> int:
    """Mark every run of ``mixture`` in ``study`` as co-decoded (run.json ``co_decoded``), as
    :func:`specviz.codecode.co_decode` writes it; return how many runs were marked."""
    marked = [run for run in runs if run.mixture == mixture]
    for run in marked:
        path = study / "runs" / run.name / RUN_FILE
        path.write_text(json.dumps(json.loads(path.read_text()) | {CO_DECODED_KEY: {"lanes": 8}}))
    return len(marked)


def test_a_co_decoded_stream_has_no_wall_clock_and_its_modelled_answer_is_unchanged(
    tmp_path: Path, answer
):
    # the load jumps half-way (the chat-mix runs ran 2.5x slower): decoded alone, that is a
    # wall-clock warning; co-decoded, those runs have no batch-1 wall clock to warn about
    runs = mix_runs(load=2.5, load_from=len(mix_runs()) // 2)
    study = write_mix_study(tmp_path / "study", runs)
    assert _co_decode(study, runs, "chat-mix") > 0
    shared = study_answer(load_runs(study), n_boot=200)
    k5 = stream(shared, "prompt-lookup constant k=5")
    assert not k5["clocked"] and k5["wall"]["total"] is None and k5["wall_total_pct"] is None
    assert stream(answer, "prompt-lookup constant k=5")["clocked"]
    # the modelled answer is the study's answer decoded alone: the same terms, the same lead
    for part in MULTITASK_TERMS:
        assert term(k5, part)["pct"] == pytest.approx(
            term(stream(answer, "prompt-lookup constant k=5"), part)["pct"], abs=0.5
        )
        assert term(k5, part)["wall_pct"] is None
    assert shared["load"] == [] and shared["load_summary"] is None
    head = shared["headline"]["text"]
    assert "no batch-1 wall clock (co-decoded)" in head and "by the wall clock" not in head
    # every wall-clock figure comes from the requests decoded alone
    assert shared["clock"]["co_decoded_requests"] == sum(
        r["requests"] for r in shared["runs_table"] if r["mixture"] == "chat-mix"
    )
    alone = [r for r in shared["runs_table"] if r["mixture"] != "chat-mix"]
    assert all(r["wall_tokens_per_s"] is not None for r in alone)
    assert all(
        r["wall_tokens_per_s"] is None for r in shared["runs_table"] if r["mixture"] == "chat-mix"
    )
    text = answer_text(shared)
    assert "chat-mix  wall clock" not in text and "co-decoded requests have no batch-1" in text
