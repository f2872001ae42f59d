"""llama.cpp's per-row costs as a cost model (``llama-bench`` output, captured from the real
binary on the embedded GGUF: tests/data/llama-bench/), and a study's recorded rounds priced with
it (``specviz reprice``)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import polars as pl
import pytest
from engine_helpers import run_cli
from report_fixtures import default_conditions, write_study

from specviz.cost import CostModelError
from specviz.llama_bench import imported_cost_model, priced_speedups, read_llama_bench
from specviz.metrics.accounting import modelled_seconds, round_table
from specviz.rundir import find_run_dirs, scan_events, scan_requests

DATA = Path(__file__).parent / "data" / "llama-bench"
BENCH_JSON = DATA / "smollm2-t1-d200.json"
BENCH_MD = DATA / "smollm2-t1-d200.md"


def _raw() -> list[dict]:
    return json.loads(BENCH_JSON.read_text())


def test_llama_bench_json_becomes_a_verify_curve_of_median_seconds_per_row_count():
    tests = read_llama_bench(BENCH_JSON)
    raw = {r["n_prompt"]: r for r in _raw() if r["n_gen"] == 0}
    assert [t.rows for t in tests] == sorted(raw)
    model = imported_cost_model(tests, {}, "fixture")
    for rows in range(1, 9):
        assert model.verify(rows) == statistics.median(raw[rows]["samples_ns"]) / 1e9
    assert "SmolLM2-135M-Instruct.Q4_1.gguf" in model.source and "1 threads" in model.source
    # llama.cpp keeps the weights in 4 bits: a verify of 8 rows costs several one-row forwards
    assert model.verify(8) > 2 * model.verify(1)


def test_the_prefill_line_comes_from_the_long_prompt_tests():
    tests = read_llama_bench(BENCH_JSON)
    long = [t for t in tests if t.rows >= 16]
    assert len(long) >= 2
    model = imported_cost_model(tests, {}, "fixture")
    for t in long:  # a least-squares line through the long tests: close to each of them
        assert model.prefill(t.rows) == pytest.approx(t.seconds, rel=0.25)


def test_the_markdown_table_of_the_same_run_gives_rows_over_its_mean_throughput():
    # one llama-bench run wrote both files: the markdown's t/s is the JSON's avg_ts (2 decimals)
    avg_ts = {r["n_prompt"]: r["avg_ts"] for r in _raw()}
    from_md = imported_cost_model(read_llama_bench(BENCH_MD), {}, "md")
    for rows in range(1, 9):
        assert from_md.verify(rows) == pytest.approx(rows / avg_ts[rows], rel=1e-3)
    assert [t.rows for t in read_llama_bench(BENCH_MD)] == sorted(avg_ts)


def test_json_lines_output_reads_as_the_json_array(tmp_path):
    lines = tmp_path / "bench.jsonl"  # llama-bench -o jsonl: one test object per line
    lines.write_text("".join(json.dumps(r) + "\n" for r in _raw()))
    assert read_llama_bench(lines) == read_llama_bench(BENCH_JSON)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: [x for x in r if x["n_prompt"] != 1], "no one-row test"),
        (lambda r: [*r, r[0] | {"n_threads": 2}], "mixes thread counts"),
        (lambda r: [*r, r[1] | {"n_depth": 0}], "mixes depths"),
        (lambda r: [x | {"n_gen": 16} for x in r], "no prompt test"),
        (lambda r: [{"n_prompt": 1}], "not llama-bench JSON"),
    ],
)
def test_a_bench_file_that_cannot_give_one_curve_is_refused_by_name(tmp_path, change, message):
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(change(_raw())))
    with pytest.raises(CostModelError, match=message):
        imported_cost_model(read_llama_bench(path), {}, str(path))


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_study(tmp_path_factory.mktemp("study") / "s", default_conditions())


def test_a_studys_rounds_priced_with_llama_bench_costs_are_the_sum_of_its_rows(study: Path):
    dirs = find_run_dirs(study)
    events, requests = scan_events(dirs).collect(), scan_requests(dirs).collect()
    model = imported_cost_model(read_llama_bench(BENCH_JSON), {"prompt-lookup": (0.0,)}, "x")
    priced = modelled_seconds(events, requests, {"tiny-target": model})
    rounds = round_table(events, requests)
    by_hand = {}
    for r in rounds.iter_rows(named=True):
        cost = model.prefill(r["prompt_tokens"]) if r["prefill"] else model.verify(r["rows"])
        by_hand[r["request_id"], r["run_id"]] = (
            by_hand.get((r["request_id"], r["run_id"]), 0) + cost
        )
    for row in priced.iter_rows(named=True):
        assert row["modelled_s"] == pytest.approx(by_hand[row["request_id"], row["run_id"]])


def test_reprice_gives_each_streams_modelled_speedup_with_both_curves(study: Path):
    table = priced_speedups(study, BENCH_JSON, n_boot=100)
    assert set(table["clock"]) == {"study", "llama-bench"}
    assert set(table["stream"]) == {"single-task", "multitask"}
    assert set(table["method"]) == {"prompt-lookup constant k=4"}  # the baseline is the reference
    both = table.pivot(on="clock", index=["method", "stream"], values="speedup_total")
    assert (both["study"] != both["llama-bench"]).all()  # a different curve, a different answer
    result = run_cli("reprice", str(study), "--cost-curve", str(BENCH_JSON), "--n-boot", "100")
    assert result.returncode == 0, result.stderr
    assert "prompt-lookup constant k=4 | multitask" in result.stdout
    assert str(BENCH_JSON) in result.stdout
    rows = json.loads(
        run_cli("reprice", str(study), "--cost-curve", str(BENCH_JSON), "--json").stdout
    )
    assert pl.DataFrame(rows).height == table.height


def test_reprice_refuses_a_file_that_is_not_llama_bench_output_in_one_line(study, tmp_path):
    bad = tmp_path / "bench.txt"
    bad.write_text("hello\n")
    result = run_cli("reprice", str(study), "--cost-curve", str(bad))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "not llama-bench output" in result.stderr
