"""Claims about a run directory's files, without decoding: which table files a run has, a
damaged or foreign file named, older schema versions read with nulls, finished requests
flushed one part each and consolidated once each in order, ``run.json`` found, read and
refused, and JSON written atomically. Hand-made frames (:mod:`specviz.metrics.synthetic`)
stand in for a decoder's output, so these run in a second (mutation testing runs them for
every mutant of :mod:`specviz.rundir.tables` and :mod:`specviz.rundir.read`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from specviz.metrics.synthetic import (
    Labels,
    RoundSpec,
    events_from_rounds,
    prefill,
    requests_from_rows,
)
from specviz.rundir import RunDirError, RunWriter, SchemaError, scan_events, scan_requests
from specviz.rundir import read as read_module
from specviz.rundir.read import (
    find_run_dirs,
    is_run_dir,
    memory_partitions,
    read_run_json,
    read_run_meta,
    version_of,
    write_json,
)
from specviz.rundir.schema import EVENT_SCHEMA, REQUEST_SCHEMA, SCHEMA_VERSION
from specviz.rundir.tables import check_tables, collect_tables, damaged, table_files

DATA = Path(__file__).parent / "data"
REMEDY = "restore it from a copy, or delete the run directory and run it again"


def run_json(run_dir: Path, version: int = SCHEMA_VERSION, **extra: object) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "run.json").write_text(json.dumps({"schema_version": version, **extra}))
    return run_dir


def finished(index: int, rounds: list[RoundSpec] | None = None):
    """(events, request row) of request ``index`` of run ``run``."""
    rounds = rounds or [prefill(0.1), RoundSpec(drafted=2, accepted=1, verify_s=0.05)]
    labels = Labels(run_id="run", request_id=f"r{index}", request_index=index)
    events = events_from_rounds(rounds, labels).match_to_schema(EVENT_SCHEMA)
    row = dict(run_id="run", request_id=f"r{index}", request_index=index, prompt_id=f"p{index}")
    return events, requests_from_rows([row | {"new_tokens": 2, "wall_s": 1.0}])


def test_a_runs_table_files_are_its_consolidated_file_then_its_parts_in_order(tmp_path):
    run = run_json(tmp_path / "run")
    (run / "parts").mkdir()
    for name in ("events-000002", "events-000001", "requests-000001", "eventsx-000003"):
        (run / "parts" / f"{name}.parquet").write_bytes(b"")
    parts = [run / "parts" / "events-000001.parquet", run / "parts" / "events-000002.parquet"]
    assert table_files(run, "events.parquet") == parts
    (run / "events.parquet").write_bytes(b"")
    assert table_files(run, "events.parquet") == [run / "events.parquet", *parts]
    assert table_files(run, "requests.parquet") == [run / "parts" / "requests-000001.parquet"]
    (run / "requests.parquet").mkdir()  # not a file: not a table
    assert table_files(run, "requests.parquet") == [run / "parts" / "requests-000001.parquet"]


def test_a_damaged_file_is_named_with_the_first_line_of_its_error_and_the_remedy():
    err = damaged(Path("d/events.parquet"), ValueError("  bad footer\nat byte 12 "))
    assert str(err) == f"d/events.parquet is damaged (bad footer): {REMEDY}"
    assert str(damaged(Path("f"), OSError())) == f"f is damaged (OSError): {REMEDY}"


def test_check_tables_names_an_unreadable_table_and_one_lacking_a_column(tmp_path):
    run = run_json(tmp_path / "run")
    events, row = finished(0)
    events.write_parquet(run / "events.parquet")
    row.write_parquet(run / "requests.parquet")
    check_tables(run)
    (run / "events.parquet").write_bytes(b"not parquet")
    with pytest.raises(Exception) as direct:  # polars raises several error types
        pl.read_parquet_schema(run / "events.parquet")
    first = str(direct.value).strip().splitlines()[0]
    with pytest.raises(RunDirError) as bad:
        check_tables(run)
    assert str(bad.value) == f"{run / 'events.parquet'} is damaged ({first}): {REMEDY}"
    events.drop("kind").write_parquet(run / "events.parquet")
    with pytest.raises(SchemaError, match=r"events\.parquet is not a specviz events table .*kind"):
        check_tables(run)
    events.write_parquet(run / "events.parquet")
    row.drop("wall_s").write_parquet(run / "requests.parquet")
    with pytest.raises(SchemaError) as lacking:
        check_tables(run)
    assert str(lacking.value) == (
        f"{run / 'requests.parquet'} is not a specviz requests table of schema version "
        f"{SCHEMA_VERSION} (missing columns: wall_s). Restore it from a copy, or run into "
        "another --out directory."
    )


def test_a_run_that_recorded_nothing_is_named_with_every_path_given(tmp_path):
    one, two = run_json(tmp_path / "one"), run_json(tmp_path / "two")
    with pytest.raises(RunDirError) as caught:
        scan_events([one, two])
    assert str(caught.value) == (
        f"no events.parquet under {one}, {two}: the run recorded nothing yet."
    )
    with pytest.raises(RunDirError, match=r"^no requests\.parquet under .*one: the run"):
        scan_requests(one)


def test_older_runs_are_read_beside_current_ones_with_the_columns_they_lack_null(tmp_path):
    shutil.copytree(DATA / "schema-2", tmp_path / "study" / "a-old")
    shutil.copytree(DATA / "schema-3", tmp_path / "study" / "b-older")
    current = run_json(tmp_path / "study" / "c-new")
    events, row = finished(0)
    events.write_parquet(current / "events.parquet")
    row.write_parquet(current / "requests.parquet")
    study = tmp_path / "study"
    read = scan_events(study).collect()
    assert read.schema == EVENT_SCHEMA
    by_run = read.group_by("run_id").agg(pl.col("shadow_token").is_null().all())
    assert by_run["shadow_token"].all() and by_run.height == 3
    reqs = scan_requests(study).collect()
    assert reqs.schema == REQUEST_SCHEMA
    old = pl.read_parquet(DATA / "schema-2" / "requests.parquet")
    assert (
        reqs.filter(pl.col("run_id").is_in(old["run_id"].implode()))["turn_prompt_tokens"]
        .is_null()
        .all()
    )
    assert reqs.filter(pl.col("run_id") == "run")["turn_prompt_tokens"].to_list() == [None]
    only_old = scan_events(study / "a-old").collect()
    assert only_old.schema == EVENT_SCHEMA
    assert only_old.height == pl.read_parquet(DATA / "schema-2" / "events.parquet").height


def test_an_error_no_table_file_explains_is_raised_as_it_is(tmp_path):
    run = run_json(tmp_path / "run")
    pl.DataFrame({"x": [1, 2]}).write_parquet(run / "events.parquet")
    failing = pl.LazyFrame({"x": ["a"]}).select(pl.col("x").cast(pl.Int64))
    with pytest.raises(pl.exceptions.InvalidOperationError):
        collect_tables(failing, run, "events.parquet")
    scan = pl.scan_parquet(run / "events.parquet").select(pl.col("x").sum())
    assert collect_tables(scan, run, "events.parquet").item() == 3


def test_each_finished_request_is_flushed_as_its_own_numbered_pair_of_parts(tmp_path):
    run = run_json(tmp_path / "run")
    writer = RunWriter(run)
    assert writer.finished_request_ids() == set()
    writer.append(*finished(7))
    assert sorted(p.name for p in (run / "parts").iterdir()) == [
        "events-000007.parquet",
        "requests-000007.parquet",
    ]
    writer.append(*finished(12))
    assert writer.finished_request_ids() == {"r7", "r12"}


def test_consolidation_keeps_each_finished_request_once_in_request_and_round_order(tmp_path):
    run = run_json(tmp_path / "run")
    writer = RunWriter(run)
    long = [prefill(0.1), RoundSpec(drafted=3, accepted=1), RoundSpec(drafted=2, accepted=2)]
    for index in (2, 0, 1, 2):  # request 2 flushed twice
        writer.append(*finished(index, long if index == 1 else None))
    events, _ = finished(3)
    events.write_parquet(run / "parts" / "events-000003.parquet")  # its row never written
    (run / ".events.parquet.123.tmp").write_bytes(b"half")  # a crashed writer's leftover
    writer.consolidate()
    assert sorted(p.name for p in run.iterdir()) == [
        "events.parquet",
        "parts",
        "requests.parquet",
        "run.json",
    ]
    assert list((run / "parts").iterdir()) == []
    reqs = pl.read_parquet(run / "requests.parquet")
    assert reqs["request_id"].to_list() == ["r0", "r1", "r2"]
    # by request, round and position; a draft before its round's correction at one position
    short = [(0, 0, "bonus"), (1, 0, "draft"), (1, 1, "draft"), (1, 1, "correction")]
    rounds = [*short[:3], (1, 1, "correction"), (1, 2, "draft")]
    rounds += [(2, 0, "draft"), (2, 1, "draft"), (2, 2, "bonus")]
    expected = [("r0", *e) for e in short] + [("r1", *e) for e in rounds]
    expected += [("r2", *e) for e in short]
    read = pl.read_parquet(run / "events.parquet")
    assert read.select("request_id", "round", "position", "kind").rows() == expected
    # a resumed run: the consolidated files and new parts merge
    writer.append(*finished(4))
    writer.consolidate()
    assert pl.read_parquet(run / "requests.parquet")["request_id"].to_list() == [
        "r0",
        "r1",
        "r2",
        "r4",
    ]


def test_consolidating_a_run_with_nothing_recorded_writes_no_table(tmp_path):
    run = run_json(tmp_path / "run")
    RunWriter(run).consolidate()
    assert sorted(p.name for p in run.iterdir()) == ["parts", "run.json"]


def test_run_directories_are_found_at_or_below_a_path_sorted(tmp_path):
    study = tmp_path / "study"
    runs = [run_json(study / "b"), run_json(study / "a" / "nested"), run_json(study / "c")]
    assert find_run_dirs(study) == sorted(runs)
    assert find_run_dirs(str(runs[0])) == [runs[0]]
    assert is_run_dir(runs[0]) and not is_run_dir(study)
    (study / "d").mkdir()
    (study / "d" / "run.json").mkdir()  # not a file
    assert not is_run_dir(study / "d")
    with pytest.raises(RunDirError) as missing:
        find_run_dirs(tmp_path / "nowhere")
    assert str(missing.value) == (
        f"{tmp_path / 'nowhere'} does not exist: pass a run or study directory."
    )
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDirError) as empty:
        find_run_dirs(tmp_path / "empty")
    assert str(empty.value) == (
        f"{tmp_path / 'empty'} holds no run: no run.json at or below it. "
        "Create one with `specviz run` or `specviz study`."
    )


def test_a_missing_or_broken_run_json_is_named(tmp_path):
    with pytest.raises(RunDirError) as missing:
        read_run_json(tmp_path)
    assert str(missing.value) == (
        f"{tmp_path / 'run.json'} is missing: {tmp_path} is not a run directory."
    )
    (tmp_path / "run.json").write_text("{oops")
    with pytest.raises(RunDirError) as broken:
        read_run_json(str(tmp_path))
    assert str(broken.value).startswith(f"{tmp_path / 'run.json'} is not valid JSON (Expecting")
    assert str(broken.value).endswith(").")


@pytest.mark.parametrize("version", [1, None, "4", 99])
def test_a_run_of_a_schema_version_this_specviz_cannot_read_is_refused_with_the_fix(
    tmp_path, version
):
    run = run_json(tmp_path, version)
    with pytest.raises(SchemaError) as caught:
        read_run_meta(run)
    assert str(caught.value) == (
        f"{run / 'run.json'} has schema_version {version!r}; this specviz reads versions "
        f"2, 3, {SCHEMA_VERSION}. Re-run it with this version of specviz."
    )


def test_an_older_run_is_noted_once_per_version_naming_the_columns_read_as_null(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(read_module, "_NOTED", set())
    old, older = run_json(tmp_path / "a", 3, x=1), run_json(tmp_path / "b", 2)
    assert read_run_meta(old) == {"schema_version": 3, "x": 1}
    assert read_run_meta(run_json(tmp_path / "c", 3)) == {"schema_version": 3}
    assert version_of(older) == 2
    assert read_run_meta(run_json(tmp_path / "d")) == {"schema_version": SCHEMA_VERSION}
    assert capsys.readouterr().err.splitlines() == [
        f"specviz: note: {old} (and any other run of schema 3) is read as schema "
        f"{SCHEMA_VERSION} with shadow_token null (added since)",
        f"specviz: note: {older} (and any other run of schema 2) is read as schema "
        f"{SCHEMA_VERSION} with shadow_token, turn_prompt_tokens null (added since)",
    ]


def test_each_suffix_drafters_memory_partition_is_read_from_its_runs_config(tmp_path):
    def run(name, drafter):
        return run_json(tmp_path / name, config={"drafter": drafter})

    runs = [
        run("a", {"kind": "suffix", "name": "suffix-task", "partition": "task"}),
        run("b", {"kind": "suffix", "name": None, "partition": None}),
        run("c", {"kind": "model", "name": "m", "partition": "task"}),
        run_json(tmp_path / "d"),
    ]
    assert memory_partitions(runs) == {"suffix-task": "task", "suffix": "shared"}


def test_json_is_written_indented_with_sorted_keys_anything_else_as_text_and_a_newline(tmp_path):
    path = tmp_path / "run.json"
    write_json(path, {"b": Path("/x"), "a": {"é": [1]}})
    assert path.read_bytes() == (
        b'{\n  "a": {\n    "\\u00e9": [\n      1\n    ]\n  },\n  "b": "/x"\n}\n'
    )
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_a_current_runs_tables_are_read_and_one_lacking_a_column_named_when_scanned(tmp_path):
    run = run_json(tmp_path / "run")
    events, row = finished(0)
    events.write_parquet(run / "events.parquet")
    row.write_parquet(run / "requests.parquet")
    assert scan_events(run).collect().equals(events)
    assert scan_requests(run).collect().equals(row)
    events.drop("verify_s").write_parquet(run / "events.parquet")
    with pytest.raises(SchemaError) as caught:
        scan_events(run)
    assert str(caught.value) == (
        f"{run / 'events.parquet'} is not a specviz events table of schema version "
        f"{SCHEMA_VERSION} (missing columns: verify_s). Re-create it with this specviz version."
    )


def test_a_table_damaged_past_its_footer_is_named_with_its_own_read_error(tmp_path):
    run = run_json(tmp_path / "run")
    path = run / "events.parquet"
    pl.DataFrame({"x": list(range(200_000))}).write_parquet(path, statistics=False)
    data = bytearray(path.read_bytes())
    data[8:4000] = bytes(3992)
    path.write_bytes(bytes(data))
    with pytest.raises(Exception) as direct:  # polars raises several error types
        pl.read_parquet(path)
    first = str(direct.value).strip().splitlines()[0]
    with pytest.raises(RunDirError) as caught:
        collect_tables(pl.scan_parquet(path).select(pl.col("x").sum()), run, "events.parquet")
    assert str(caught.value) == f"{path} is damaged ({first}): {REMEDY}"


def test_consolidation_keeps_the_first_copy_of_a_request_written_twice(tmp_path):
    # a request recorded, then written again with other figures (a crash between a part's
    # rename and the parts' cleanup, then a resume): the consolidated copy is kept
    run = run_json(tmp_path / "run")
    writer = RunWriter(run)
    writer.append(*finished(0))
    writer.consolidate()
    events, row = finished(0)
    writer.append(events.with_columns(pl.lit(9.0).alias("verify_s")), row.with_columns(wall_s=9.0))
    writer.consolidate()
    assert pl.read_parquet(run / "requests.parquet")["wall_s"].to_list() == [1.0]
    read = pl.read_parquet(run / "events.parquet")
    assert read.height == events.height and 9.0 not in read["verify_s"].to_list()


def test_consolidating_only_the_events_of_an_unfinished_request_drops_them(tmp_path):
    run = run_json(tmp_path / "run")
    events, _ = finished(0)
    (run / "parts").mkdir()
    events.write_parquet(run / "parts" / "events-000000.parquet")
    RunWriter(run).consolidate()
    assert pl.read_parquet(run / "events.parquet").height == 0
    assert list((run / "parts").iterdir()) == []


def test_a_writer_makes_its_parts_folder_and_its_run_directory_and_reuses_them(tmp_path):
    run = tmp_path / "new" / "run"
    RunWriter(run).append(*finished(0))
    RunWriter(run).append(*finished(1))
    assert sorted(p.name for p in (run / "parts").iterdir()) == [
        "events-000000.parquet",
        "events-000001.parquet",
        "requests-000000.parquet",
        "requests-000001.parquet",
    ]
