"""Hub ids resolve through the Hugging Face cache, offline, on the same path users take."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
from engine_helpers import run_cli

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def fake_hub_cache(root: Path, repo_id: str, model_dir: Path) -> Path:
    """Lay out ``model_dir`` as huggingface_hub caches a download of ``repo_id``."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    shutil.copytree(model_dir, snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return root


def test_a_cached_hub_id_loads_offline_and_records_its_revision(
    tiny_model_dir, tiny_draft_dir, tmp_path
):
    cache = tmp_path / "hub"
    fake_hub_cache(cache, "specviz-test/Qwen2.5-Tiny-Instruct", tiny_model_dir)
    fake_hub_cache(cache, "specviz-test/Qwen2.5-Tinier-Instruct", tiny_draft_dir)
    env = {"HF_HUB_CACHE": str(cache)}
    out = tmp_path / "run"
    result = run_cli(
        "run",
        "--target",
        "specviz-test/Qwen2.5-Tiny-Instruct",
        "--drafter",
        "model",
        "--draft",
        "specviz-test/Qwen2.5-Tinier-Instruct",
        "--limit",
        "2",
        "--max-new-tokens",
        "8",
        "--out",
        str(out),
        "--quiet",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    meta = json.loads((out / "run.json").read_text())
    assert meta["models"]["target"]["revision"] == COMMIT
    assert meta["models"]["target"]["embedding_rows"] == 128
    assert meta["models"]["draft"]["embedding_rows"] == 112
    assert pl.read_parquet(out / "requests.parquet").height == 2
