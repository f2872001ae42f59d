"""The study's calibration step: one cost curve per target, pooled over all of the study's rounds.

Written to ``out_dir/cost_model.json`` when the study is complete (every shard done), beside the
manifest: ``{"version", "runs", "targets": {target: CostModel.to_dict()}}``. The report and
``specviz summary`` fit the same curve from the same rounds (:mod:`specviz.metrics.accounting`);
this file records it with the study's data.
"""

from __future__ import annotations

from pathlib import Path

from specviz.cost import COST_MODEL_VERSION
from specviz.metrics.accounting import fit_cost_models
from specviz.rundir import find_run_dirs, scan_events, scan_requests, write_json

COST_MODEL_FILE = "cost_model.json"


def write_cost_models(out_dir: Path) -> Path:
    """Fit the cost models over every run under ``out_dir`` and write ``cost_model.json``."""
    run_dirs = find_run_dirs(out_dir)
    models = fit_cost_models(
        scan_events(run_dirs), scan_requests(run_dirs), source=f"{out_dir.name}: all rounds"
    )
    path = out_dir / COST_MODEL_FILE
    write_json(
        path,
        {
            "version": COST_MODEL_VERSION,
            "runs": len(run_dirs),
            "targets": {t: m.to_dict() for t, m in models.items()},
        },
    )
    return path
