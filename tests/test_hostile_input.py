"""Hostile input and faults (issue #14): every bad input exits 2 with one line naming the problem,
nothing lands outside --out, a second writer is refused, workers die with their parent, and
partial data is never reported as whole without saying so."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from engine_helpers import run_cli
from refusals import assert_one_line_refusal, cli
from report_fixtures import SyntheticRun, default_conditions, write_run, write_study

from specviz.batch.config import BATCH_SIZE_MAX
from specviz.cli import main
from specviz.config import K_MAX, MAX_NEW_TOKENS_MAX, ModelSpec, RunConfig
from specviz.report import ReportError, build_report
from specviz.rundir import (
    EVENT_SCHEMA,
    REQUEST_SCHEMA,
    OutPathError,
    RunDirError,
    locked,
    scan_requests,
    unfinished_runs,
)
from specviz.specbench import export_specbench
from specviz.study import StudyError, parse_study, run_study
from specviz.study.run import refuse_escaping, study_locks
from specviz.study.spec import REPEATS_MAX
from specviz.study.units import Unit

NO_MODEL = "no-such-org/no-such-model"  # loading it would fail: refusals must come first


def write_prompts(path: Path, categories: tuple[str, ...], per_category: int = 1) -> Path:
    rows = [
        {"question_id": f"q{c}-{i}", "category": c, "turns": [f"say hi {i}"]}
        for c in categories
        for i in range(per_category)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def study_file(
    path: Path,
    model: Path,
    prompts: Path,
    *,
    per_category: int = 1,
    max_new_tokens: int = 2,
    workers: int = 1,
) -> Path:
    """A baseline-only study TOML over ``prompts`` (single-task mixtures) with the tiny model."""
    path.write_text(
        f"""name = "hostile"
models = [{json.dumps(str(model))}]
max_new_tokens = {max_new_tokens}
[workload]
source = {json.dumps(str(prompts))}
per_category = {per_category}
[mixtures]
uniform = []
[options]
device = "cpu"
workers = {workers}
"""
    )
    return path


# -- 1. names that become paths ----------------------------------------------------------------


def test_categories_holding_paths_stay_inside_out(tiny_model_dir: Path, tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "q.jsonl", ("../../escaped", "a/b", ".."))
    study = parse_study(
        {
            "models": [str(tiny_model_dir)],
            "max_new_tokens": 2,
            "workload": {"source": str(prompts), "per_category": 1},
            "mixtures": {"uniform": []},
            "options": {"device": "cpu"},
        },
        "paths.toml",
    )
    out = tmp_path / "deep" / "out"
    assert run_study(study, out, progress=False).complete
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep", "q.jsonl"]
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["out"]
    run_dirs = sorted(p.parent for p in out.rglob("run.json"))
    assert len(run_dirs) == 3
    assert all(d.parent == out / "runs" for d in run_dirs)  # one level, no nesting, no escape
    # the category keeps its name as a label in the data
    mixtures = scan_requests(out).select("mixture").unique().collect()["mixture"].to_list()
    assert sorted(mixtures) == ["..", "../../escaped", "a/b"]


def test_a_run_directory_resolving_outside_out_is_refused(tmp_path: Path) -> None:
    unit = Unit("c", 0, RunConfig(ModelSpec("m")), (), "runs/../../elsewhere")
    with pytest.raises(StudyError, match="outside"):
        refuse_escaping(tmp_path / "out", [unit])


# -- 2. --out holding something else -------------------------------------------------------------


@pytest.mark.parametrize(
    ("setup", "fragment"),
    [
        ("finished-run", "holds a run (run.json), not a study"),
        ("foreign-file", "holds no specviz study (it holds 'notes.txt')"),
        ("foreign-runs", "holds no specviz study (it holds 'runs')"),
        ("a-file", "is a file, not a directory"),
        ("under-a-file", "which is a file"),
        ("damaged-manifest", "study.json is damaged"),
    ],
)
def test_study_refuses_an_out_it_does_not_own(
    tiny_model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    setup: str,
    fragment: str,
) -> None:
    toml = study_file(
        tmp_path / "s.toml", tiny_model_dir, write_prompts(tmp_path / "q.jsonl", ("x",))
    )
    out = tmp_path / "out"
    if setup == "finished-run":
        write_run(out, SyntheticRun("r", "none", "coding", ("coding",)))
    elif setup == "foreign-file":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    elif setup == "foreign-runs":
        (out / "runs" / "other").mkdir(parents=True)
    elif setup == "a-file":
        out.write_text("mine")
    elif setup == "under-a-file":
        out.write_text("mine")
        out = out / "sub"
    elif setup == "damaged-manifest":
        out.mkdir()
        (out / "study.json").write_text('{"fingerprint": ')
    before = snapshot(tmp_path)
    assert_one_line_refusal(
        *cli(capsys, "study", str(toml), "--out", str(out), "--quiet"), fragment
    )
    assert snapshot(tmp_path) == before  # nothing written, nothing changed


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# -- 3. workers die with their parent --------------------------------------------------------------


def _workers_of(pid: int) -> list[int]:
    """Pids of the spawned worker processes below ``pid``."""
    psutil = pytest.importorskip("psutil")  # installed with ipykernel
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found = []
    for child in children:
        with contextlib.suppress(psutil.Error):
            if "spawn_main" in " ".join(child.cmdline()):
                found.append(child.pid)
    return found


def _alive(pid: int) -> bool:
    psutil = pytest.importorskip("psutil")
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="kill -9 is POSIX")
def test_killing_a_study_kills_its_workers(tiny_model_dir: Path, tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "q.jsonl", ("a", "b", "c"), per_category=40)
    toml = study_file(
        tmp_path / "s.toml",
        tiny_model_dir,
        prompts,
        per_category=40,
        max_new_tokens=400,
        workers=2,
    )
    out = tmp_path / "out"
    parent = subprocess.Popen(
        [sys.executable, "-m", "specviz", "study", str(toml), "--out", str(out), "--quiet"],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and parent.poll() is None:
            workers = _workers_of(parent.pid)
            if len(workers) == 2 and any(out.glob("runs/*/parts/requests-*.parquet")):
                break
            time.sleep(0.5)
        assert len(workers) == 2, parent.stderr.read().decode() if parent.poll() else workers
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.2)
        assert not any(_alive(w) for w in workers), "workers outlived their parent"
        parts = sorted(out.glob("runs/*/parts/*.parquet"))
        time.sleep(2)
        assert sorted(out.glob("runs/*/parts/*.parquet")) == parts  # nobody writes any more
    finally:
        for pid in [parent.pid, *workers]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        parent.stderr.close()


# -- 4. one writer per --out ---------------------------------------------------------------------


def test_a_second_study_into_a_locked_out_is_refused(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = study_file(
        tmp_path / "s.toml", tiny_model_dir, write_prompts(tmp_path / "q.jsonl", ("x",))
    )
    out = tmp_path / "out"
    with locked(out):  # as a running study holds it
        status, err = cli(capsys, "study", str(toml), "--out", str(out), "--quiet")
        assert_one_line_refusal(status, err, "is in use by another specviz process")
        status, err = cli(capsys, "study", str(toml), "--out", str(out), "--shard", "1/2")
        assert_one_line_refusal(status, err, "is in use by another specviz process")
    assert [p.name for p in out.iterdir()] == [".specviz.lock"]
    status, err = cli(capsys, "study", str(toml), "--out", str(out), "--quiet")
    assert status == 0, err  # released: the same command now runs


def test_a_second_run_into_a_locked_out_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    with locked(out):
        status, err = cli(capsys, "run", "--target", NO_MODEL, "--out", str(out), "--quiet")
    assert_one_line_refusal(status, err, "is in use by another specviz process")


def test_shards_share_a_directory_but_not_a_shard(tmp_path: Path) -> None:
    @contextlib.contextmanager
    def hold(shard: tuple[int, int] | None) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for name, shared in study_locks(shard):
                stack.enter_context(locked(tmp_path, name, shared=shared))
            yield

    with hold((1, 2)), hold((2, 2)):  # two shards side by side
        with pytest.raises(OutPathError, match="in use"), hold((1, 2)):
            pass
        with pytest.raises(OutPathError, match="in use"), hold(None):
            pass


def test_a_lock_held_by_a_killed_process_is_released(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from specviz.rundir import locked\n"
            f"with locked(Path({str(tmp_path)!r})):\n    print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutPathError, match="in use"), locked(tmp_path):
            pass
        holder.kill()
        holder.wait()
        with locked(tmp_path):  # kill -9 released it
            pass
    finally:
        holder.kill()
        holder.stdout.close()


def test_two_studies_started_at_once_one_runs_one_is_refused(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    toml = study_file(
        tmp_path / "s.toml",
        tiny_model_dir,
        write_prompts(tmp_path / "q.jsonl", ("x", "y"), per_category=2),
        per_category=2,
        max_new_tokens=8,
    )
    args = [sys.executable, "-m", "specviz", "study", str(toml), "--out", str(tmp_path / "out")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    both = [
        subprocess.Popen([*args, "--quiet"], env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in both]
    for p in both:
        p.stderr.close()
    assert sorted(code for code, _ in results) == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert "Traceback" not in refused
    assert "in use by another specviz process" in refused or "already holds" in refused
    manifest = json.loads((tmp_path / "out" / "study.json").read_text())
    assert manifest["status"] == "complete"


# -- 5. unfinished runs and studies --------------------------------------------------------------


@pytest.fixture
def unfinished_study(tmp_path: Path) -> Path:
    """A study whose prompt-lookup runs were interrupted and whose manifest lists one more run."""
    study = write_study(tmp_path / "study", default_conditions())
    for run in (study / "runs").glob("prompt-lookup-*"):
        meta = json.loads((run / "run.json").read_text())
        (run / "run.json").write_text(json.dumps(meta | {"complete": False}))
    (study / "study.json").write_text(
        json.dumps({"conditions": [{"run_dirs": ["runs/none-math"]}]})
    )
    return study


def test_unfinished_runs_are_named(unfinished_study: Path) -> None:
    assert unfinished_runs(unfinished_study) == [
        "runs/prompt-lookup-coding (interrupted)",
        "runs/prompt-lookup-uniform-interleaved (interrupted)",
        "runs/prompt-lookup-writing (interrupted)",
        "runs/none-math (not started)",
    ]


def test_report_refuses_an_unfinished_study_before_a_kernel_starts(
    unfinished_study: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import specviz.report.builder as builder

    monkeypatch.setattr(builder, "choose_kernel", _no_kernel)
    out = tmp_path / "r.html"
    status, err = cli(capsys, "report", str(unfinished_study), "--out", str(out), "--quiet")
    assert_one_line_refusal(status, err, "is incomplete: 4 run(s) unfinished")
    assert "--allow-incomplete" in err and "runs/prompt-lookup-coding (interrupted)" in err
    assert not out.exists()


def _no_kernel(*args: object) -> None:
    raise AssertionError("a kernel was started")


def test_export_refuses_an_unfinished_run_unless_allowed(
    unfinished_study: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = unfinished_study / "runs" / "prompt-lookup-coding"
    out = tmp_path / "a.jsonl"
    status, err = cli(capsys, "export-specbench", str(run), "--out", str(out))
    assert_one_line_refusal(status, err, "is an unfinished run (run.json says it is not complete)")
    assert not out.exists()
    assert main(["export-specbench", str(run), "--out", str(out), "--allow-incomplete"]) == 0
    assert "(partial: the run is unfinished)" in capsys.readouterr().out
    assert len(out.read_text().splitlines()) == 3


@pytest.mark.slow
def test_a_report_allowed_on_partial_data_says_so(
    unfinished_study: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from report_fixtures import isolate_jupyter

    isolate_jupyter(monkeypatch, tmp_path / "home")
    out = build_report(
        unfinished_study, tmp_path / "r.html", n_boot=200, progress=False, allow_incomplete=True
    )
    page = out.read_text()
    assert "Partial data:" in page and "4 run(s) of this study are unfinished" in page
    assert "runs/none-math (not started)" in page


# -- 6. tracebacks that must be one-line refusals --------------------------------------------------


RUN_CASES = [
    (["--k", "70000"], f"k must be <= {K_MAX} (got 70000)"),
    (["--batch-size", "70000"], f"batch size must be <= {BATCH_SIZE_MAX}"),
    (["--max-new-tokens", "3000000000"], f"max_new_tokens must be <= {MAX_NEW_TOKENS_MAX}"),
    (["--temperature", "nan"], "temperature must be >= 0 and finite (got nan)"),
    (
        ["--workload", "{tmp}/latin1.jsonl"],
        "latin1.jsonl line 2: not UTF-8 text (byte 0xe9)",
    ),
    (["--workload", "{tmp}/latin1.csv"], "latin1.csv line 2: not UTF-8 text (byte 0xe9)"),
    (["--out", "{tmp}/a-file"], "is a file, not a directory"),
    (["--out", "{tmp}/a-file/run"], "a-file, which is a file"),
    (["--out", "/sys/specviz-test-run"], "cannot write in /sys"),
]


@pytest.mark.parametrize(("args", "fragment"), RUN_CASES, ids=[" ".join(a) for a, _ in RUN_CASES])
def test_bad_run_input_exits_2_before_any_model_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], fragment: str
) -> None:
    if "/sys/" in " ".join(args) and not _unwritable(Path("/sys")):
        pytest.skip("/sys is writable here")
    good = b'{"question_id": "1", "category": "x", "turns": ["hi"]}\n'
    (tmp_path / "latin1.jsonl").write_bytes(good + b'{"question_id": "2", "category": "caf\xe9"}\n')
    (tmp_path / "latin1.csv").write_bytes(b"question_id,category,turns\n1,caf\xe9,hi\n")
    (tmp_path / "a-file").write_text("mine")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "run")]
    before = snapshot(tmp_path)
    status, err = cli(capsys, "run", "--target", NO_MODEL, "--quiet", *args)
    assert_one_line_refusal(status, err, fragment)
    assert snapshot(tmp_path) == before


def _unwritable(path: Path) -> bool:
    probe = path / ".specviz-test-probe"
    try:
        probe.touch()
    except OSError:
        return True
    probe.unlink()
    return False


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only directories")
def test_a_read_only_out_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    locked_dir = tmp_path / "ro"
    locked_dir.mkdir()
    locked_dir.chmod(0o500)
    try:
        status, err = cli(
            capsys, "run", "--target", NO_MODEL, "--out", str(locked_dir / "run"), "--quiet"
        )
    finally:
        locked_dir.chmod(0o700)
    assert_one_line_refusal(status, err, "cannot write in")


STUDY_CASES = [
    ("k = [70000]", f"k: draft lengths must be <= {K_MAX}"),
    (f"repeats = {REPEATS_MAX + 1}", f"repeats: must be <= {REPEATS_MAX}"),
    ("max_new_tokens = 3000000000", f"max_new_tokens: must be <= {MAX_NEW_TOKENS_MAX}"),
]


@pytest.mark.parametrize(("line", "fragment"), STUDY_CASES)
def test_study_numbers_are_bounded_by_their_column_types(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, fragment: str
) -> None:
    toml = tmp_path / "s.toml"
    toml.write_text(f'models = ["{NO_MODEL}"]\n{line}\n[[drafters]]\nkind = "prompt-lookup"\n')
    status, err = cli(capsys, "study", str(toml), "--out", str(tmp_path / "out"))
    assert_one_line_refusal(status, err, fragment)


def test_a_study_file_that_is_not_utf8_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = tmp_path / "s.toml"
    toml.write_bytes(b'name = "caf\xe9"\n')
    status, err = cli(capsys, "study", str(toml), "--out", str(tmp_path / "out"))
    assert_one_line_refusal(status, err, "s.toml: not UTF-8 text")


def test_bounds_match_the_schema_column_types() -> None:
    def most(dtype: pl.DataType) -> int:
        return {pl.Int16: 2**15 - 1, pl.Int32: 2**31 - 1}[type(dtype)]

    assert K_MAX == most(EVENT_SCHEMA["k"]) == most(REQUEST_SCHEMA["k"])
    assert BATCH_SIZE_MAX == most(REQUEST_SCHEMA["batch_size"]) == most(REQUEST_SCHEMA["row"])
    assert most(REQUEST_SCHEMA["new_tokens"]) == MAX_NEW_TOKENS_MAX
    assert most(REQUEST_SCHEMA["repeat"]) == REPEATS_MAX - 1


@pytest.mark.parametrize("table", ["events.parquet", "requests.parquet"])
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_damaged_table_is_named(tmp_path: Path, table: str, damage: str) -> None:
    study = write_study(tmp_path / "study", default_conditions())
    run = study / "runs" / "none-coding"
    path = run / table
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"not parquet" * 50)
    with pytest.raises(RunDirError, match=f"{path} is damaged"):
        export_specbench(run, tmp_path / "a.jsonl")
    with pytest.raises(ReportError, match=f"{path} is damaged"):
        build_report(study, tmp_path / "r.html", progress=False)


def test_resuming_a_run_with_a_damaged_table_names_it(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    args = ["run", "--target", str(tiny_model_dir), "--limit", "2", "--max-new-tokens", "2"]
    assert main([*args, "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    damaged = out / "requests.parquet"
    damaged.write_bytes(damaged.read_bytes()[:100])
    before = snapshot(tmp_path)
    status, err = cli(capsys, *args, "--out", str(out), "--resume", "--quiet")
    assert_one_line_refusal(status, err, f"{damaged} is damaged")
    assert snapshot(tmp_path) == before


def test_report_out_that_cannot_be_written_is_refused_before_a_kernel(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import specviz.report.builder as builder

    monkeypatch.setattr(builder, "choose_kernel", _no_kernel)
    study = write_study(tmp_path / "study", default_conditions())
    (tmp_path / "a-file").write_text("mine")
    out = tmp_path / "a-file" / "r.html"
    status, err = cli(capsys, "report", str(study), "--out", str(out), "--quiet")
    assert_one_line_refusal(status, err, "a-file, which is a file")


# -- 7. clear messages, fast ---------------------------------------------------------------------


def test_report_on_baseline_only_runs_says_nothing_to_compare_before_a_kernel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import specviz.report.builder as builder

    monkeypatch.setattr(builder, "choose_kernel", _no_kernel)
    study = write_study(tmp_path / "study", default_conditions(drafters=("none",)))
    with pytest.raises(ReportError, match=r"holds only baseline runs .*nothing to compare"):
        build_report(study, tmp_path / "r.html", progress=False)


UNREACHABLE_HUB = {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--target", "no-such-org/no-such-model"], "is not in the Hugging Face cache"),
        (["--target", NO_MODEL, "--workload", "hf:no-such-org/no-such-data"], "could not load"),
    ],
)
def test_an_uncached_name_fails_at_once_when_the_hub_is_unreachable(
    tmp_path: Path, args: list[str], fragment: str
) -> None:
    """No retries with back-off (~50 s for a model, ~25 s for a dataset) before the message."""
    start = time.monotonic()
    result = run_cli("run", *args, "--out", str(tmp_path / "r"), env=UNREACHABLE_HUB)
    assert_one_line_refusal(result.returncode, result.stderr, fragment)
    assert "Retrying" not in result.stderr
    assert time.monotonic() - start < 40
