"""The answer names its regime: the dtype its runs decoded in and the verify-cost curve
T(k+1)/T(1) at the study's k, on the first screen, in the summary, and in ``report A B`` with
the terms that moved between two regimes."""

from __future__ import annotations

import json
from pathlib import Path

import mix_study
import pytest
from mix_study import mix_runs, write_mix_study
from report_fixtures import default_conditions, write_study

from specviz.metrics.answer import Regime, regime_shift
from specviz.report.answer import study_answer
from specviz.report.compare import (
    DECOMPOSITION_QUANTITY,
    analyse,
    decomposition_rows,
    differences,
    regime_html,
    shift_sentence,
)
from specviz.report.data import load_runs
from specviz.report.first_screen import answer_html

BF16 = ("bfloat16", "auto: the CPU has native bf16 (avx512_bf16)")
FP32 = ("float32", "auto: float32, the CPU lacks native bf16 (amx_bf16 / avx512_bf16)")


def record_dtype(study: Path, dtype: str, reason: str, runs: str = "*") -> Path:
    """Record in each run.json (matching ``runs``) the target's dtype, as a real run does
    (specviz.rundir.provenance.model_info)."""
    for path in study.glob(f"runs/{runs}/run.json"):
        meta = json.loads(path.read_text())
        target = meta["config"]["target"]["name"]
        meta["models"] = {"target": {"name": target, "dtype": dtype, "dtype_reason": reason,
                                     "device": "cpu"}}  # fmt: skip
        path.write_text(json.dumps(meta))
    return study


@pytest.fixture(scope="module")
def bf16_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    study = write_study(tmp_path_factory.mktemp("regime") / "study", default_conditions())
    return record_dtype(study, *BF16)


def test_the_regime_is_the_recorded_dtype_and_the_calibrated_verify_ratio_at_the_studys_k(
    bf16_study: Path,
):
    answer = study_answer(load_runs(bf16_study), n_boot=200)
    (regime,) = answer["regime"]["targets"]
    curve = answer["cost_models"]["tiny-target"]["verify_s"]
    assert regime["dtypes"] == ["bfloat16"] and regime["device"] == "cpu"
    assert regime["verify_ratios"] == [{"k": 4, "ratio": pytest.approx(curve[4] / curve[0])}]
    text = answer["regime"]["text"]
    assert text.startswith(f"Regime: tiny-target, bfloat16 ({BF16[1]}) on cpu, verify cost ")
    assert f"T(5)/T(1) = {curve[4] / curve[0]:.2f}" in text
    assert "the modelled answer holds for this dtype and cost curve" in text


def test_the_first_screen_names_the_regime(bf16_study: Path):
    answer = study_answer(load_runs(bf16_study), n_boot=200)
    html = answer_html(answer).markup
    assert 'class="specviz-note specviz-regime"' in html
    assert "bfloat16" in html and "T(5)/T(1) = " in html


def test_runs_that_decoded_in_two_dtypes_are_named_as_differing(tmp_path: Path):
    study = write_study(tmp_path / "study", default_conditions())
    record_dtype(study, *BF16)
    record_dtype(study, *FP32, runs="none-*")
    text = study_answer(load_runs(study), n_boot=200)["regime"]["text"]
    assert "bfloat16 and float32 (runs differ)" in text


def test_a_regime_shift_names_the_dtype_and_each_verify_ratio_that_moved():
    a = Regime("t", ("float32",), "", "cpu", "", ((2, 1.10), (5, 1.45)))
    b = Regime("t", ("bfloat16",), "", "cpu", "", ((2, 1.11), (5, 1.16)))
    shift = regime_shift(a, b)
    assert shift.dtypes == (("float32",), ("bfloat16",))
    assert shift.ratios == ((5, 1.45, 1.16),)  # k = 2 moved by 0.01: the same curve
    sentence = shift_sentence(shift, ("A: x", "B: y"))
    assert "dtype float32 -> bfloat16; T(6)/T(1) 1.45 -> 1.16" in sentence
    assert not regime_shift(a, a).moved
    assert "same regime" in shift_sentence(regime_shift(a, a), ("A: x", "B: y"))


def test_report_a_b_names_each_sides_regime_and_the_terms_that_moved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A: float32 with the verify cost stepping up at 4 rows (tests/mix_study.py); B: bf16 with
    a nearly flat curve, as on a CPU with native bf16. The tuning term of k = 2 moves with the
    curve, and the comparison names both regimes, how they differ and which terms moved."""
    a = record_dtype(write_mix_study(tmp_path / "fp32", mix_runs()), *FP32)
    monkeypatch.setattr(mix_study, "_verify_s", lambda rows: 0.020 + 0.0002 * (rows - 1))
    b = record_dtype(write_mix_study(tmp_path / "bf16", mix_runs()), *BF16)
    sides = [analyse(load_runs(p), label, 200) for p, label in ((a, "A: fp32"), (b, "B: bf16"))]
    diffs = differences(*[decomposition_rows(s) for s in sides], DECOMPOSITION_QUANTITY)
    html = regime_html(*sides, diffs)
    for side in sides:
        assert side.answer["regime"]["text"].replace("'", "&#x27;") in html
    assert "dtype float32 -&gt; bfloat16" in html
    ratio_a, ratio_b = (
        {r["k"]: r["ratio"] for r in s.answer["regime"]["targets"][0]["verify_ratios"]}
        for s in sides
    )
    assert f"T(6)/T(1) {ratio_a[5]:.2f} -&gt; {ratio_b[5]:.2f}" in html
    assert ratio_a[5] > 1.25 and ratio_b[5] < 1.1
    assert "Moved (B - A interval excludes 0):" in html
    moved = html.split("Moved (B - A interval excludes 0):")[1]
    # k = 2 costs more against k = 5 when a 6-row verify is nearly as cheap as a 1-row one
    assert "prompt-lookup constant k=2 · chat-mix · tuning: +8.5% -&gt; +11.6%" in moved
