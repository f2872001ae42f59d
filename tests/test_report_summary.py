"""The summary formats published numbers; data text in it is escaped."""

from __future__ import annotations

from specviz.report.summary import QUESTION, summary_html, verdict

ROW = {
    "method": "<b>m</b>",
    "mixture": "uniform-interleaved",
    "multitask_tokens_per_s": 50.0,
    "reference_tokens_per_s": 60.0,
    "reference_s": 10.0,
    "total": 2.0,
    "total_low": 1.0,
    "total_high": 3.0,
    "composition": 0.5,
    "k_mismatch": 0.0,
    "carry_over": None,
    "residual": 1.5,
    "best_k": "coding=4",
}


def test_verdict_says_slower_or_faster() -> None:
    assert verdict(2.0, 10.0) == "slower: +20.0% time for the same tokens"
    assert verdict(-1.0, 10.0) == "faster: -10.0% time for the same tokens"


def test_summary_answers_with_parts_and_escapes_labels() -> None:
    html = summary_html(
        {
            "collapse.degradation": [ROW],
            "report.data": {
                "runs": 2,
                "requests": 4,
                "categories": ["<script>x</script>"],
                "methods": ["m"],
            },
        }
    )
    assert QUESTION in html
    assert "slower: +20.0% time for the same tokens (95% CI +10.0% to +30.0%)" in html
    assert "composition +5.0%, k mismatch +0.0%, carry-over n/a, residual +15.0%" in html
    assert "<b>m</b>" not in html and "&lt;b&gt;m&lt;/b&gt;" in html
    assert "<script>" not in html


def test_summary_without_a_multitask_comparison_says_what_is_missing() -> None:
    html = summary_html({})
    assert "No multitask stream could be compared" in html


def test_the_answer_leads_with_a_drafted_method_and_the_baseline_is_the_control() -> None:
    baseline = ROW | {"method": "none", "total": 5.0, "total_low": 4.0, "total_high": 6.0}
    drafted = ROW | {"method": "prompt-lookup constant k=5"}
    html = summary_html({"collapse.degradation": [baseline, drafted]})
    lead = html.split("<strong>", 1)[1].split("</strong>", 1)[0]
    assert lead.startswith("prompt-lookup constant k=5 on uniform-interleaved")
    assert (
        "Control: the autoregressive baseline (no drafter) on uniform-interleaved is "
        "slower: +50.0% time for the same tokens (95% CI +40.0% to +60.0%)" in html
    )
    rows = html.split("<tbody>", 1)[1]
    assert rows.index("prompt-lookup constant k=5") < rows.index("<td>none</td>")
