"""The field's speculative-decoding metrics, theory against measurement, and the degradation
from single-task to multitask serving.

Every function takes a polars DataFrame or LazyFrame in the format of :mod:`specviz.rundir.schema`
(for instance ``specviz.rundir.scan_events(study_dir)``), checks the columns it reads
(:class:`specviz.rundir.schema.SchemaError` otherwise) and returns a ``pl.DataFrame``. Formulas and
conventions: each docstring and docs/metrics.md.
"""

from specviz.metrics import expressions
from specviz.metrics.batching import batch_composition_gap, batch_raggedness
from specviz.metrics.bootstrap import (
    RATIO_METRICS,
    Interval,
    bootstrap,
    bootstrap_by,
    bootstrap_ratio,
    metric_intervals,
)
from specviz.metrics.degradation import (
    MissingCounterpartError,
    NoMultitaskStreamError,
    composition_by_task,
    degradation,
    degradation_long,
    label_streams,
    single_task_best_k,
)
from specviz.metrics.divergence import greedy_divergence
from specviz.metrics.frames import GROUP_COLUMNS
from specviz.metrics.oracle import (
    NoOracleError,
    oracle_choices,
    oracle_gap,
    oracle_prompt_spt,
    recovered_share,
)
from specviz.metrics.speedup import (
    MissingBaselineError,
    missing_baseline,
    paired_requests,
    speedup,
)
from specviz.metrics.summary import (
    k_distribution,
    per_position,
    request_summary,
    request_table,
    summary,
    summary_exprs,
)
from specviz.metrics.theory import (
    best_k,
    cost_at,
    expected_tokens,
    leviathan_speedup,
    predicted_speedup_curve,
    theory_vs_measured,
    verify_cost,
)

__all__ = [
    "GROUP_COLUMNS",
    "RATIO_METRICS",
    "Interval",
    "MissingBaselineError",
    "MissingCounterpartError",
    "NoMultitaskStreamError",
    "NoOracleError",
    "batch_composition_gap",
    "batch_raggedness",
    "best_k",
    "bootstrap",
    "bootstrap_by",
    "bootstrap_ratio",
    "composition_by_task",
    "cost_at",
    "degradation",
    "degradation_long",
    "expected_tokens",
    "expressions",
    "greedy_divergence",
    "k_distribution",
    "label_streams",
    "leviathan_speedup",
    "metric_intervals",
    "missing_baseline",
    "oracle_choices",
    "oracle_gap",
    "oracle_prompt_spt",
    "paired_requests",
    "per_position",
    "predicted_speedup_curve",
    "recovered_share",
    "request_summary",
    "request_table",
    "single_task_best_k",
    "speedup",
    "summary",
    "summary_exprs",
    "theory_vs_measured",
    "verify_cost",
]
