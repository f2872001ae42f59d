"""A run directory's identity and ``run.json``: what makes a directory this run (schema,
configuration, workload), the refusal to mix another run into it, and the one writer of a new
run's metadata (:func:`start_run`), in-process (:func:`begin_run`) and server-measured
(:mod:`specviz.endpoint.run`) alike.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specviz.rundir.outdir import check_out_dir, entries
from specviz.rundir.read import (
    RunDirError,
    read_run_json,
    read_run_meta,
    write_json,
)
from specviz.rundir.schema import ADDED_SINCE, RUN_FILE, SCHEMA_VERSION
from specviz.rundir.tables import (
    check_tables,
)

if TYPE_CHECKING:  # the identity helpers read loaded models; reading a run directory does not
    from specviz.batch.config import BatchConfig
    from specviz.config import RunConfig
    from specviz.models import LoadedModel
    from specviz.workloads.request import Request


# -- a run directory's identity and metadata ------------------------------------------------
#
# A run directory is tied to one configuration and one workload: opening it with another is
# refused, so nothing already written is mixed with or overwritten by a different run.


def workload_fingerprint(requests: Sequence[Request]) -> str:
    def row(r: Request) -> list[Any]:
        out = [r.index, r.repeat, r.mixture, r.prompt.id, r.prompt.category, list(r.prompt.turns)]
        # recorded context enters only when present: fingerprints of older runs stay valid
        return [*out, [list(pair) for pair in r.prompt.context]] if r.prompt.context else out

    blob = json.dumps([row(r) for r in requests])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_identity(
    config: RunConfig, requests: Sequence[Request], batch: BatchConfig | None
) -> dict[str, Any]:
    """What makes a run directory this run: schema, configuration, workload (and batching)."""
    identity = {
        "schema_version": SCHEMA_VERSION,
        "config": config.to_dict(),
        "workload": workload_fingerprint(requests),
    }
    return identity if batch is None else identity | {"batch": batch.to_dict()}


def open_run_dir(out_dir: Path, identity: dict[str, Any], resume: bool) -> None:
    """Refuse a directory holding anything but this very run; refuse to restart without resume.

    Also refuses, before any model is loaded, an ``out_dir`` that cannot be written."""
    check_out_dir(out_dir)
    if (out_dir / RUN_FILE).is_file():
        version = read_run_json(out_dir).get("schema_version")
        if version in ADDED_SINCE:
            raise RunDirError(
                f"{out_dir} holds a run of schema {version}: this specviz "
                f"reads it but adds nothing to it (it writes schema {SCHEMA_VERSION}); pass "
                "another --out directory"
            )
        existing = read_run_meta(out_dir)
        mine = {k: existing.get(k) for k in identity}
        if mine != identity:
            differs = sorted(k for k in identity if mine[k] != identity[k])
            detail = ""
            if "config" in differs:
                old, new = existing.get("config", {}), identity["config"]
                keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
                detail = f" (config keys: {', '.join(keys)})"
            raise RunDirError(
                f"{out_dir} holds a run with a different {', '.join(differs)}{detail}; "
                "pass another --out directory"
            )
        if not resume:
            raise RunDirError(f"{out_dir} already holds this run: pass --resume to continue it")
        check_tables(out_dir)  # a damaged file is named before any model loads
    elif entries(out_dir):
        raise RunDirError(f"{out_dir} is not empty and holds no specviz run: pass another --out")


def start_run(
    out_dir: Path,
    identity: Mapping[str, Any],
    requests: Sequence[Request],
    seed: int,
    provenance: Mapping[str, Any],
) -> dict[str, Any]:
    """Write the ``run.json`` of a run that starts in ``out_dir`` and return it: ``identity``,
    a ``run_id`` (the directory's name and a digest of the identity), when it was created,
    ``provenance`` (models, versions, hardware, ...: what the caller knows of where it runs),
    the seed, the workload's prompt ids, and ``complete: false`` until the run marks it done."""
    out_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode())
    meta = {
        **identity,
        "run_id": f"{out_dir.name}-{digest.hexdigest()[:8]}",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **provenance,
        "seed": seed,
        "requests": len(requests),
        "prompt_ids": [r.prompt.id for r in requests],
        "complete": False,
    }
    write_json(out_dir / RUN_FILE, meta)
    return meta


def begin_run(
    out_dir: Path,
    identity: dict[str, Any],
    config: RunConfig,
    target: LoadedModel,
    draft: LoadedModel | None,
    requests: Sequence[Request],
) -> dict[str, Any]:
    """Write ``run.json`` for an in-process run that starts (or resumes) in ``out_dir``;
    return it.

    ``identity`` (schema version, config, workload, ...) was already checked against the
    directory by :func:`open_run_dir`; a resumed run keeps its original metadata.
    """
    from specviz.rundir.provenance import git_commit, hardware, model_info, versions

    if (out_dir / RUN_FILE).is_file():
        # left as it is: an unfinished run stays unfinished until the runner marks it complete,
        # and a finished one is never marked unfinished, whatever happens to this resume
        meta = read_run_meta(out_dir)
        _check_same_dtype(out_dir, meta, target)
        return meta
    provenance = {
        "models": {"target": model_info(target)}
        | ({"draft": model_info(draft)} if draft is not None else {}),
        "versions": versions(),
        "hardware": hardware(target.device),
        "git_commit": git_commit(),
    }
    return start_run(out_dir, identity, requests, config.seed, provenance)


def _check_same_dtype(out_dir: Path, meta: dict[str, Any], target: LoadedModel) -> None:
    """A resumed run keeps its target's dtype: ``auto`` may resolve otherwise on another CPU
    (specviz.precision), and one run must not mix two targets' outputs."""
    recorded = meta.get("models", {}).get("target", {}).get("dtype")
    now = str(target.dtype).removeprefix("torch.")
    if recorded is not None and recorded != now:
        raise RunDirError(
            f"{out_dir} was decoded with its target in {recorded}, but it loads in {now} here "
            f"({target.dtype_reason}): resume it on a machine where its dtype resolves to "
            f"{recorded}, or decode into another --out"
        )
