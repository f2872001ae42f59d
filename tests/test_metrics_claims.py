"""Claims about metric tables that mutation testing found unpinned: the single-task table's
counts and order, and a request that ended at its prefill."""

from __future__ import annotations

from test_metrics_degradation import single_rows
from test_metrics_summary import SPEC

from specviz.metrics import single_task_best_k, summary
from specviz.metrics.synthetic import events_from_rounds, prefill, requests_from_rows


def test_the_single_task_table_counts_requests_and_tokens_per_task_and_k_in_order():
    t = single_task_best_k(requests_from_rows(list(reversed(single_rows()))))
    assert t.select("category", "k", "requests", "tokens").rows() == [
        ("A", 2, 2, 20),
        ("A", 4, 2, 20),
        ("B", 2, 2, 20),
        ("B", 4, 2, 20),
    ]


def test_a_request_that_ended_at_its_prefill_is_still_one_request():
    s = summary(events_from_rounds([prefill(verify_s=0.2)], SPEC)).row(0, named=True)
    assert (s["requests"], s["rounds"], s["verify_rounds"], s["tokens"]) == (1, 1, 0, 1)
