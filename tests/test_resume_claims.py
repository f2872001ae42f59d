"""Claims about resuming a run directory, proved from the decoder itself: a resumed run decodes
only the requests it has not recorded, and consolidation keeps one copy of a request whose parts
were written twice (a crash between a part's rename and the parts' cleanup)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from engine_helpers import drop_requests_from

from specviz.config import DrafterConfig, ModelSpec, PolicyConfig, RunConfig
from specviz.engine import Decoder
from specviz.rundir import RunWriter
from specviz.runner import Request, run
from specviz.workloads import builtin_prompts


def requests(n: int) -> list[Request]:
    return [Request(i, p, "builtin") for i, p in enumerate(builtin_prompts()[:n])]


def config(model: Path) -> RunConfig:
    # a stateless policy: nothing but the decoder's own calls can tell a re-decoded request
    return RunConfig(
        ModelSpec(str(model)),
        DrafterConfig("prompt-lookup"),
        PolicyConfig("constant", 2),
        max_new_tokens=12,
    )


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The prompt ids the decoder is asked to decode, in order."""
    seen: list[str] = []
    real = Decoder.decode

    def spy(self, prompt, seed):
        seen.append(prompt.id)
        return real(self, prompt, seed)

    monkeypatch.setattr(Decoder, "decode", spy)
    return seen


def test_a_resumed_run_decodes_only_the_requests_it_has_not_recorded(
    tiny_model_dir: Path, tmp_path: Path, decoded: list[str]
):
    reqs = requests(4)
    out = tmp_path / "run"
    run(config(tiny_model_dir), reqs, out, progress=False)
    assert decoded == [r.prompt.id for r in reqs]
    drop_requests_from(out, 2)
    decoded.clear()
    summary = run(config(tiny_model_dir), reqs, out, resume=True, progress=False)
    assert decoded == [reqs[2].prompt.id, reqs[3].prompt.id]
    assert (summary.requests_done, summary.requests_skipped) == (2, 2)
    table = pl.read_parquet(out / "requests.parquet")
    assert table["request_index"].to_list() == [0, 1, 2, 3]


def test_resuming_a_finished_run_decodes_nothing(
    tiny_model_dir: Path, tmp_path: Path, decoded: list[str]
):
    out = tmp_path / "run"
    run(config(tiny_model_dir), requests(2), out, progress=False)
    decoded.clear()
    summary = run(config(tiny_model_dir), requests(2), out, resume=True, progress=False)
    assert decoded == [] and (summary.requests_done, summary.requests_skipped) == (0, 2)


def test_consolidation_keeps_one_copy_of_a_request_whose_parts_were_written_again(
    tiny_model_dir: Path, tmp_path: Path
):
    out = tmp_path / "run"
    run(config(tiny_model_dir), requests(2), out, progress=False)
    requests_before = pl.read_parquet(out / "requests.parquet")
    events_before = pl.read_parquet(out / "events.parquet")
    # request 1's parts again beside the consolidated tables
    writer = RunWriter(out)
    writer.append(
        events_before.filter(pl.col("request_index") == 1),
        requests_before.filter(pl.col("request_index") == 1),
    )
    assert writer.finished_request_ids() == set(requests_before["request_id"])
    writer.consolidate()
    assert pl.read_parquet(out / "requests.parquet").equals(requests_before)
    assert pl.read_parquet(out / "events.parquet").equals(events_before)
    assert not list((out / "parts").glob("*.parquet"))


def test_consolidation_drops_the_events_of_a_request_whose_row_was_never_written(
    tiny_model_dir: Path, tmp_path: Path
):
    out = tmp_path / "run"
    run(config(tiny_model_dir), requests(2), out, progress=False)
    requests_before = pl.read_parquet(out / "requests.parquet")
    events_before = pl.read_parquet(out / "events.parquet")
    # a crash after request 1's events part, before its request row: it is not done
    drop_requests_from(out, 1)
    RunWriter(out).append(
        events_before.filter(pl.col("request_index") == 1),
        requests_before.filter(pl.col("request_index") == 1),
    )
    (out / "parts" / "requests-000001.parquet").unlink()
    RunWriter(out).consolidate()
    assert pl.read_parquet(out / "requests.parquet")["request_index"].to_list() == [0]
    assert set(pl.read_parquet(out / "events.parquet")["request_index"]) == {0}
