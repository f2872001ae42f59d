"""The power plan: a prior's per-task spread predicts each multitask term's 95% half-width at a
planned size (specviz.metrics.power), and ``specviz study --plan --prior DIR`` prints it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from engine_helpers import run_cli
from mix_study import mix_runs, write_mix_study

from specviz.metrics.degradation import TERMS, degradation
from specviz.metrics.power import (
    NOT_ESTIMABLE,
    PREDICTED,
    ZERO,
    half_width_pct,
    requests_needed,
    stream_spreads,
    term_power,
)
from specviz.study.spec import POWER_TERMS

# seconds per token of each task's prompts: a lognormal spread around these
BASE_SPT = {"coding": 0.010, "extraction": 0.008, "writing": 0.016}


def synthetic_requests(prompts: int, mix: dict[str, int], seed: int) -> pl.DataFrame:
    """Single-task runs of ``prompts`` prompts per task (seconds per token lognormal around
    :data:`BASE_SPT`, 30-79 new tokens) and one multitask stream ``mix`` drawing ``mix[task]``
    of them, its seconds the single-task ones times 1 + 5% noise (a residual). TEST data."""
    rng = np.random.default_rng(seed)
    common = {"target": "t", "temperature": 0.0, "drafter": "d", "policy": "constant", "k": 4,
              "repeat": 0}  # fmt: skip
    spt = {(t, i): b * float(rng.lognormal(0, 0.3)) for t, b in BASE_SPT.items()
           for i in range(prompts)}  # fmt: skip
    tokens = {key: int(rng.integers(30, 80)) for key in spt}
    rows = [
        common | {"run_id": f"single-{t}", "mixture": t, "category": t, "prompt_id": f"{t}-{i}",
                  "new_tokens": tokens[t, i], "wall_s": tokens[t, i] * spt[t, i],
                  "request_id": f"{t}-{i}", "request_index": i}
        for t, i in spt
    ]  # fmt: skip
    order = [(t, int(i)) for t, m in mix.items() for i in rng.choice(prompts, m, replace=False)]
    rng.shuffle(order)
    for j, (t, i) in enumerate(order):
        wall = tokens[t, i] * spt[t, i] * (1 + 0.05 * float(rng.standard_normal()))
        rows.append(common | {"run_id": "mix", "mixture": "mix", "category": t,
                              "prompt_id": f"{t}-{i}", "new_tokens": tokens[t, i],
                              "wall_s": wall, "request_id": f"m-{j}", "request_index": j})  # fmt: skip
    return pl.DataFrame(rows)


def _only(spreads: dict) -> object:
    (spread,) = spreads.values()
    return spread


def _bootstrap_half_width(requests: pl.DataFrame, part: str) -> float:
    row = degradation(requests, n_boot=1000).row(0, named=True)
    return 100 * (row[f"{part}_high"] - row[f"{part}_low"]) / 2 / row["reference_s"]


@pytest.mark.parametrize("part", ["composition", "residual"])
def test_predicted_half_width_agrees_with_the_bootstrap_at_the_planned_size(part: str):
    """A prior of 30 requests per task predicts the half-width of a stream of 60 per task; four
    such streams, drawn afresh, get bootstrap half-widths whose mean agrees within 25%: the
    prior's spread rests on 87 degrees of freedom (its sd known to about +-10%, with the
    lognormal-times-tokens figure's tails), the four studies' widths on 4 x 180 requests."""
    planned = {"coding": 60, "extraction": 60, "writing": 60}
    prior = _only(stream_spreads(synthetic_requests(300, dict.fromkeys(BASE_SPT, 30), 3), "wall_s"))
    predicted = half_width_pct(prior, part, planned)
    obtained = [_bootstrap_half_width(synthetic_requests(300, planned, 100 + i), part)
                for i in range(4)]  # fmt: skip
    assert predicted == pytest.approx(float(np.mean(obtained)), rel=0.25)
    # and it is not the prior's own width: a stream twice as large narrows it by sqrt(2)
    at_prior = half_width_pct(prior, part, dict.fromkeys(BASE_SPT, 30))
    assert predicted == pytest.approx(at_prior / 2**0.5, rel=1e-9)


def test_prediction_at_the_priors_own_size_is_its_bootstrap_width_up_to_small_sample_bias():
    """On the mix study the prediction at the prior's own counts exceeds its bootstrap width by
    at most what the unbiased variance adds over the bootstrap's plug-in one with 3 to 6
    requests per task (sqrt(n / (n - 1)): 1.10 to 1.22), and never falls below it by more
    than the bootstrap's own noise."""
    requests = pl.concat(
        [pl.read_parquet(p) for p in sorted(_mix_prior().glob("runs/*/requests.parquet"))],
        how="diagonal_relaxed",
    )
    spreads = stream_spreads(requests, "wall_s")
    table = degradation(requests, n_boot=2000)
    for row in table.iter_rows(named=True):
        spread = spreads[tuple(row[c] for c in ("target", "temperature", "drafter", "policy",
                                                "k", "mixture"))]  # fmt: skip
        counts = {c: t.requests for c, t in spread.terms["composition"].tasks.items()}
        for part in ("composition", "residual"):
            term = term_power(spread, part, counts, 1.5)
            if term.status != PREDICTED:
                continue
            boot = 100 * (row[f"{part}_high"] - row[f"{part}_low"]) / 2 / row["reference_s"]
            assert 0.95 * boot <= term.half_width_pct <= 1.25 * boot, (row["policy"], part)


def test_requests_needed_scale_as_one_over_the_target_squared():
    assert requests_needed(3.0, 100, 1.5) == 400
    assert requests_needed(3.0, 100, 0.75) == 1600
    assert requests_needed(3.0, 100, 3.0) == 100
    for target in (0.5, 1.0, 2.0):
        ratio = requests_needed(2.0, 1000, target / 2) / requests_needed(2.0, 1000, target)
        assert ratio == pytest.approx(4.0, rel=0.01)


def test_the_needed_requests_reach_the_target_when_the_stream_grows_at_its_shares():
    prior = _only(stream_spreads(synthetic_requests(100, dict.fromkeys(BASE_SPT, 20), 5), "wall_s"))
    planned = dict.fromkeys(BASE_SPT, 10)
    term = term_power(prior, "composition", planned, 0.5)
    assert term.status == PREDICTED and not term.resolved
    total = sum(planned.values())

    def grown(n: int) -> dict[str, float]:
        return {c: m * n / total for c, m in planned.items()}

    assert half_width_pct(prior, "composition", grown(term.needed)) <= 0.5
    assert half_width_pct(prior, "composition", grown(term.needed - 1)) > 0.5


def test_a_term_zero_in_every_prior_request_is_zero_by_construction_and_needs_none():
    spread = _only(stream_spreads(synthetic_requests(40, dict.fromkeys(BASE_SPT, 10), 1), "wall_s"))
    term = term_power(spread, "k_mismatch", dict.fromkeys(BASE_SPT, 10), 1.5)
    assert (term.status, term.half_width_pct, term.resolved) == (ZERO, 0.0, True)
    assert term_power(spread, "carry_over", dict.fromkeys(BASE_SPT, 10), 1.5).status == ZERO


def test_a_lone_task_of_one_request_makes_the_term_not_estimable():
    spread = _only(stream_spreads(synthetic_requests(40, dict.fromkeys(BASE_SPT, 10), 1), "wall_s"))
    lone = {"coding": 10, "extraction": 10, "writing": 1}
    term = term_power(spread, "composition", lone, 1.5)
    assert (term.status, term.half_width_pct, term.resolved) == (NOT_ESTIMABLE, None, None)
    # two thin tasks pool into one stratum, as the bootstrap pools them
    pooled = {"coding": 10, "extraction": 1, "writing": 1}
    assert term_power(spread, "composition", pooled, 1.5).status == PREDICTED


def test_a_task_absent_from_the_prior_takes_the_streams_spread_between_tasks_included():
    spread = _only(
        stream_spreads(synthetic_requests(40, {"coding": 10, "writing": 10}, 2), "wall_s")
    )
    known = half_width_pct(spread, "composition", {"coding": 10, "writing": 10})
    with_new = half_width_pct(spread, "composition", {"coding": 10, "writing": 10, "math": 10})
    assert known is not None and with_new is not None and with_new > 0


def test_power_terms_of_a_study_file_are_the_decomposition_terms_and_drafter_memory():
    assert set(POWER_TERMS) == {*TERMS, "drafter_memory"}


# -- the CLI ---------------------------------------------------------------------------------

PLANNED = """
name = "planned"
models = ["tiny-target"]
policies = ["constant", "heuristic"]
k = [2, 5]
[[drafters]]
kind = "prompt-lookup"
[workload]
per_category = 6
categories = ["writing", "roleplay", "coding", "extraction", "summarization"]
[mixtures]
uniform = []
size = 96
[mixtures.custom]
chat-mix = "writing=24,roleplay=24,coding=24,extraction=12,summarization=12"
"""

_PRIOR: list[Path] = []


def _mix_prior() -> Path:
    """The mix study (tests/mix_study.py) as the prior: its chat-mix streams match the plan's."""
    if not _PRIOR:
        import tempfile

        _PRIOR.append(write_mix_study(Path(tempfile.mkdtemp()) / "prior", mix_runs()))
    return _PRIOR[0]


def _study_file(tmp_path: Path, power: str = "") -> Path:
    path = tmp_path / "planned.toml"
    path.write_text(PLANNED + power)
    return path


def test_study_plan_prints_each_terms_half_width_from_a_prior(tmp_path: Path):
    toml = _study_file(tmp_path, "[power]\ntarget_pct = 2.0\n")
    out = tmp_path / "out"
    done = run_cli("study", str(toml), "--plan", "--prior", str(_mix_prior()), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert not out.exists()
    text = done.stdout
    assert "target ±2%;" in text and str(_mix_prior()) in text
    for method in ("constant k=2", "constant k=5", "heuristic k=2", "heuristic k=5"):
        assert f"prompt-lookup {method} on chat-mix (96 requests):" in text
    lines = text.splitlines()
    heuristic = lines.index("  prompt-lookup heuristic k=5 on chat-mix (96 requests):")
    composition, k_mismatch, carry_over, residual = lines[heuristic + 1 : heuristic + 5]
    for line, name in ((composition, "composition"), (k_mismatch, "k mismatch"),
                       (carry_over, "carry-over")):  # fmt: skip
        assert line.strip().startswith(name), line
        assert "% at 96 requests" in line and "requests reach ±2%" in line, line
    assert residual.strip().startswith("residual") and "zero by construction" in residual


def test_study_plan_without_a_prior_predicts_no_half_width(tmp_path: Path):
    done = run_cli("study", str(_study_file(tmp_path)), "--plan", "--out", str(tmp_path / "o"))
    assert done.returncode == 0, done.stderr
    assert "power: 4 multitask stream(s), target ±1.5% (default): no half-width can be " in (
        done.stdout
    )
    assert "--prior DIR" in done.stdout


@pytest.mark.parametrize(
    ("power", "message"),
    [
        ("[power]\ntarget_pct = 0\n", "power.target_pct: expected a percent"),
        ('[power]\ntarget_pct = "2"\n', "power.target_pct: expected a percent"),
        ("[power]\nwidth = 2\n", "power.width: unknown key"),
        ("[power.term_target_pct]\nspeed = 2\n", "power.term_target_pct.speed: unknown key"),
    ],
)
def test_a_bad_power_table_is_refused_in_one_line(tmp_path: Path, power: str, message: str):
    done = run_cli("study", str(_study_file(tmp_path, power)), "--plan")
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr


def test_a_prior_that_is_no_study_is_refused_in_one_line(tmp_path: Path):
    done = run_cli(
        "study", str(_study_file(tmp_path)), "--plan", "--prior", str(tmp_path / "missing")
    )
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "missing" in done.stderr


def test_the_drafter_memory_term_is_sized_from_the_paired_differences_of_the_prior(
    tmp_path: Path,
):
    """The memory study (shared vs per-task suffix memory on chat-mix): the prediction at the
    prior's own counts is its bootstrap width up to the small-sample factor (3 to 6 requests
    per task), as for the other terms."""
    from mix_study import CHAT_MIX, memory_runs

    from specviz.report.answer import study_answer
    from specviz.report.data import load_runs
    from specviz.study.planning import prior_spreads

    study = write_mix_study(tmp_path / "memory", memory_runs())
    spreads = prior_spreads(study)
    key = ("tiny-target", 0.0, "suffix-shared", "constant", 5, "chat-mix")
    term = term_power(spreads[key], "drafter_memory", CHAT_MIX, 1.5)
    assert term.status == PREDICTED
    answer = study_answer(load_runs(study), n_boot=2000)
    (row,) = [r for r in answer["streams"] if r["drafter"] == "suffix-shared"]
    (memory,) = [t for t in row["terms"] if t["part"] == "drafter_memory"]
    boot = (memory["high_pct"] - memory["low_pct"]) / 2
    assert 0.95 * boot <= term.half_width_pct <= 1.3 * boot
    # the per-task-memory stream has no such term
    per_task = spreads[("tiny-target", 0.0, "suffix-task", "constant", 5, "chat-mix")]
    assert term_power(per_task, "drafter_memory", CHAT_MIX, 1.5) is None
