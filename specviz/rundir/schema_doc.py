"""Render docs/schema.md from :mod:`specviz.rundir.schema` (a test keeps the file in sync)."""

from __future__ import annotations

import polars as pl

from specviz.rundir import schema


def _table(columns: dict[str, tuple[pl.DataType, str]]) -> str:
    rows = ["| column | type | meaning |", "| --- | --- | --- |"]
    rows += [f"| `{name}` | {dtype} | {meaning} |" for name, (dtype, meaning) in columns.items()]
    return "\n".join(rows)


def render() -> str:
    intro = (schema.__doc__ or "").strip()
    return (
        f"# Run directory schema (version {schema.SCHEMA_VERSION})\n\n"
        "Generated from `specviz/rundir/schema.py` by `python -m specviz.rundir.schema_doc > docs/schema.md`.\n\n"
        f"{intro}\n\n## events.parquet\n\n{_table(schema.EVENT_COLUMNS)}\n\n"
        f"## requests.parquet\n\n{_table(schema.REQUEST_COLUMNS)}\n\n"
        "## run.json\n\n"
        "`schema_version`, `run_id`, `config` (the full RunConfig), `workload` (fingerprint of the "
        "request stream), `prompt_ids`, `models` (name, source, revision, class, parameters, "
        "embedding rows, tokenizer size, dtype, `dtype_reason` (why that dtype: `--dtype` or "
        "what `auto` detected), `greedy_equality` (what greedy speculation promises against "
        "plain greedy in that dtype and engine), `engine` (`lean`, `lean-invariant` or "
        "`transformers`: what ran the forwards, docs/engine.md) and `engine_reason`, device of "
        "target and draft), `versions`, "
        "`hardware`, `git_commit`, `seed`, `requests`, `created`, `complete`; `cost_model` "
        "(a `specviz.cost.CostModel` in its `to_dict` form: `version`, `verify_s`, `draft_s`, "
        "...) when a cost-aware policy measured it before the run (runs recorded before the one "
        "cost model hold `cost_curve` (`verify`, `draft`) instead, still read on resume).\n"
    )


if __name__ == "__main__":
    print(render(), end="")
