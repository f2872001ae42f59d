"""Charts of specviz results: one function per chart, a small table in, an altair chart out.

Aggregation happens in polars (mostly in :mod:`specviz.metrics`) before a chart is built; raw
per-token and per-round views embed at most :data:`RAW_ROW_LIMIT` rows and say so when capped.
Interactivity is made of altair params and selections (dropdowns, sliders, legend toggles,
brushes), which keep working in an exported HTML report without a kernel.
"""

from specviz.plots.acceptance import metric_by_category, per_position_curves
from specviz.plots.common import RAW_ROW_LIMIT, PlotError, cap_rows, method_label
from specviz.plots.mixture import (
    degradation_bars,
    mixture_sweep,
    predicted_speedup_by_k,
    single_vs_multitask,
    task_share,
    theory_vs_measurement,
)
from specviz.plots.tokens import token_rounds, token_status, token_table
from specviz.plots.trajectory import k_trajectory

__all__ = [
    "RAW_ROW_LIMIT",
    "PlotError",
    "cap_rows",
    "degradation_bars",
    "k_trajectory",
    "method_label",
    "metric_by_category",
    "mixture_sweep",
    "per_position_curves",
    "predicted_speedup_by_k",
    "single_vs_multitask",
    "task_share",
    "theory_vs_measurement",
    "token_rounds",
    "token_status",
    "token_table",
]
