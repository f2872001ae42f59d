"""The study manifest, ``out_dir/study.json``: what the study is, its conditions, where they are.

The manifest is a pure function of the study and of what is on disk: each unit's status is read
from its run directory's ``run.json`` (``done`` when the runner marked it complete, ``partial``
when a run started and was interrupted, ``pending`` otherwise). Every writer (each shard, each
resume) rewrites it whole through an atomic rename, so shards that share an output directory can
only ever leave a manifest that is true of the disk at the moment it was written.

``fingerprint`` hashes every unit's id, configuration and request stream; resuming or adding a
shard to a directory whose fingerprint differs is refused, so one directory never mixes studies.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from specviz.rundir import RUN_FILE, read_run_meta, workload_fingerprint, write_json
from specviz.study.spec import Study, StudyError
from specviz.study.units import Plan, Unit
from specviz.workloads.mixtures import compose

MANIFEST_FILE = "study.json"
MANIFEST_VERSION = 1
DONE, PARTIAL, PENDING = "done", "partial", "pending"


def fingerprint(plan: Plan) -> str:
    blob = json.dumps(
        [
            [u.id, u.run_dir, u.config.to_dict(), workload_fingerprint(u.requests)]
            + ([u.batch.to_dict()] if u.batch is not None else [])
            for u in plan.units
        ],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def unit_status(out_dir: Path, unit: Unit) -> str:
    run_dir = out_dir / unit.run_dir
    if not (run_dir / RUN_FILE).is_file():
        return PENDING
    return DONE if read_run_meta(run_dir).get("complete") else PARTIAL


def read_manifest(out_dir: Path) -> dict[str, Any] | None:
    path = out_dir / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise StudyError(
            f"{path} is damaged ({err}): restore it from a copy, or pass another --out"
        ) from err


def build_manifest(study: Study, plan: Plan, out_dir: Path) -> dict[str, Any]:
    statuses = {u.id: unit_status(out_dir, u) for u in plan.units}
    units_by_condition: dict[str, list[Unit]] = {}
    for unit in plan.units:
        units_by_condition.setdefault(unit.condition_id, []).append(unit)
    conditions = []
    for c in plan.conditions:
        units = units_by_condition[c.id]
        conditions.append(
            {
                "id": c.id,
                "baseline": c.baseline,
                "target": c.config.target.name,
                "drafter": c.drafter_name,
                "policy": c.config.policy_label,
                "k": c.config.k_label,
                "mixture": c.mixture.name,
                "temperature": c.config.sampling.temperature,
                "config": c.config.to_dict(),
                "batch": c.batch.to_dict() if c.batch is not None else None,
                "run_dirs": [u.run_dir for u in units],
                "status": [statuses[u.id] for u in units],
            }
        )
    all_status = list(statuses.values())
    return {
        "manifest_version": MANIFEST_VERSION,
        "name": study.name,
        "study_file": study.source_file,
        "study": dict(study.raw),
        "fingerprint": fingerprint(plan),
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "status": "complete" if all(s == DONE for s in all_status) else "incomplete",
        "units": {s: all_status.count(s) for s in (DONE, PARTIAL, PENDING)},
        "prompts": {
            "source": study.workload.source,
            "count": len(plan.prompts),
            "categories": sorted({p.category for p in plan.prompts}),
        },
        "mixtures": [
            {
                "name": m.name,
                "weights": dict(m.weights),
                "size": m.size,
                "order": m.order,
                "seed": m.seed,
                "prompt_ids": [p.id for p in compose(m, plan.prompts_of(m))],
            }
            for m in plan.mixtures
        ],
        **({"traffic": _traffic(plan)} if plan.traffic is not None else {}),
        "conditions": conditions,
        "skipped": [{"combination": s.description, "reason": s.reason} for s in plan.skipped],
    }


def _traffic(plan: Plan) -> dict[str, Any]:
    """The real-traffic sample: data set and version, how it was read and sampled, its labels."""
    assert plan.traffic is not None
    return {
        "name": plan.traffic.spec.name,
        "mixtures": list(plan.traffic.mixtures),
        "count": len(plan.traffic.prompts),
        "categories": sorted({p.category for p in plan.traffic.prompts}),
        **plan.traffic.describe,
    }


def write_manifest(study: Study, plan: Plan, out_dir: Path) -> dict[str, Any]:
    manifest = build_manifest(study, plan, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / MANIFEST_FILE, manifest)
    return manifest
