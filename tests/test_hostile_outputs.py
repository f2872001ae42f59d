"""Hostile outputs (issue #23): nothing a user owns is overwritten, nothing finished is unmarked,
and faults (a full disk, a file-size limit, a closed pipe) end in one line with nothing
half-written. Real files, real device nodes made here, a real tmpfs, a real RLIMIT_FSIZE, real
pipes."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from engine_helpers import run_cli
from refusals import assert_one_line_refusal, cli
from report_fixtures import SyntheticRun, default_conditions, write_run, write_study

from specviz.cli import main
from specviz.rundir import (
    ADDED_SINCE,
    EVENT_SCHEMA,
    REQUEST_SCHEMA,
    SCHEMA_VERSION,
    is_lock_file,
    scan_events,
    scan_requests,
)
from specviz.rundir import read as rundir
from specviz.study import parse_study, run_study
from specviz.study.spec import slug


def snapshot(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` (lock files left out: they stay by design)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink() and not is_lock_file(p)
    }


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A finished synthetic run directory (schema of this version)."""
    return write_run(
        tmp_path / "run", SyntheticRun("pl", "prompt-lookup", "coding", ("coding",), 2)
    )


def _no_kernel(*args: object) -> None:
    raise AssertionError("a kernel was started")


# -- 1. output paths ---------------------------------------------------------------------------


def test_export_refuses_a_file_specviz_did_not_write_unless_forced(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    precious = tmp_path / "P"
    precious.write_text("precious\n")
    status, err = cli(capsys, "export-specbench", str(run_dir), "--out", str(precious))
    assert_one_line_refusal(status, err, "exists and specviz did not write it: pass --force")
    assert precious.read_text() == "precious\n"
    assert main(["export-specbench", str(run_dir), "--out", str(precious), "--force"]) == 0
    assert len(precious.read_text().splitlines()) == 2
    # its own export it replaces without --force
    assert main(["export-specbench", str(run_dir), "--out", str(precious)]) == 0


def test_report_refuses_a_file_specviz_did_not_write_before_a_kernel(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import specviz.report.builder as builder

    monkeypatch.setattr(builder, "choose_kernel", _no_kernel)
    study = write_study(tmp_path / "study", default_conditions())
    precious = tmp_path / "P"
    precious.write_text("precious\n")
    status, err = cli(capsys, "report", str(study), "--out", str(precious), "--quiet")
    assert_one_line_refusal(status, err, "exists and specviz did not write it: pass --force")
    assert precious.read_text() == "precious\n"


def test_a_report_specviz_wrote_is_recognised_as_its_own() -> None:
    from specviz.report.builder import is_specviz_report

    template = Path("specviz/report/templates/specviz/index.html.j2").read_text()
    assert '<meta name="generator" content="specviz ' in template
    assert is_specviz_report(b'<html><head><meta name="generator" content="specviz 0.1.0">')
    assert not is_specviz_report(b"precious\n")


def _mknod(path: Path, kind: int, major: int, minor: int) -> Path:
    try:
        os.mknod(path, kind | 0o666, os.makedev(major, minor))
    except PermissionError:
        pytest.skip("cannot make device nodes here (not root)")
    return path


def test_export_writes_through_a_character_device_and_keeps_the_node(
    run_dir: Path, tmp_path: Path
) -> None:
    null = _mknod(tmp_path / "N", stat.S_IFCHR, 1, 3)  # /dev/null's numbers
    assert main(["export-specbench", str(run_dir), "--out", str(null)]) == 0
    assert stat.S_ISCHR(null.stat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["N", "run"]  # no temporary left


def test_export_to_a_full_device_is_one_line_and_keeps_the_node(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    full = _mknod(tmp_path / "F", stat.S_IFCHR, 1, 7)  # /dev/full's numbers
    status, err = cli(capsys, "export-specbench", str(run_dir), "--out", str(full))
    assert_one_line_refusal(status, err, "No space left on device")
    assert stat.S_ISCHR(full.stat().st_mode)


def test_export_refuses_a_block_device_node(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    block = _mknod(tmp_path / "B", stat.S_IFBLK, 7, 0)
    status, err = cli(capsys, "export-specbench", str(run_dir), "--out", str(block), "--force")
    assert_one_line_refusal(status, err, "is a block device, not a file")
    assert stat.S_ISBLK(block.stat(follow_symlinks=False).st_mode)


def test_export_writes_through_a_pipe(run_dir: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    assert main(["export-specbench", str(run_dir), "--out", str(fifo)]) == 0
    reader.join(timeout=30)
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert len(received[0].decode().splitlines()) == 2


def test_export_through_a_link_to_stdout_writes_stdout_and_keeps_the_link(
    run_dir: Path, tmp_path: Path
) -> None:
    link = tmp_path / "L"
    link.symlink_to("/proc/self/fd/1")
    result = run_cli("export-specbench", str(run_dir), "--out", str(link))
    assert result.returncode == 0, result.stderr
    assert link.is_symlink() and os.readlink(link) == "/proc/self/fd/1"
    answers = [json.loads(line) for line in result.stdout.splitlines()]  # nothing but answers
    assert len(answers) == 2 and "2 answers in Spec-Bench format" in result.stderr


def test_export_through_a_link_replaces_the_target_not_the_link(
    run_dir: Path, tmp_path: Path
) -> None:
    target = tmp_path / "answers.jsonl"
    assert main(["export-specbench", str(run_dir), "--out", str(target)]) == 0
    link = tmp_path / "latest.jsonl"
    link.symlink_to(target.name)
    assert main(["export-specbench", str(run_dir), "--out", str(link)]) == 0
    assert link.is_symlink() and os.readlink(link) == target.name
    assert len(target.read_text().splitlines()) == 2


# -- 2. a failed resume leaves a finished run finished -------------------------------------------


def _run_args(model: Path) -> list[str]:
    return ["run", "--target", str(model), "--limit", "2", "--max-new-tokens", "2", "--quiet"]


@pytest.fixture(scope="session")
def tiny_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished two-request run of the tiny model (copy it before changing it)."""
    out = tmp_path_factory.mktemp("tiny-run") / "run"
    assert main([*_run_args(tiny_model_dir), "--out", str(out)]) == 0
    return out


def _copy(run: Path, to: Path) -> Path:
    shutil.copytree(run, to, ignore=shutil.ignore_patterns(".specviz.lock"))
    return to


def _complete(run: Path) -> bool:
    return json.loads((run / "run.json").read_text())["complete"]


def test_a_resume_refused_for_a_damaged_table_changes_nothing(
    tiny_run: Path, tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _copy(tiny_run, tmp_path / "copy")
    requests = run / "requests.parquet"
    pl.read_parquet(requests).drop("turn_prompt_tokens").write_parquet(requests)
    before = snapshot(tmp_path)
    status, err = cli(capsys, *_run_args(tiny_model_dir), "--out", str(run), "--resume")
    assert_one_line_refusal(status, err, "missing columns: turn_prompt_tokens")
    assert snapshot(tmp_path) == before
    assert _complete(run)


# -- 4. faults end in one line; 5. leftovers are cleaned up -------------------------------------


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB tmpfs mounted for the test (skipped where mounting is not allowed)."""
    mount = tmp_path / "fs"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(fs: Path) -> Path:
    """Fill ``fs`` to the last byte with one file (delete it to free the space)."""
    filler = fs / "filler"
    with filler.open("wb", buffering=0) as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * 4096)
    return filler


def _tmp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith((".tmp", ".partial"))]


def test_a_resume_on_a_full_disk_is_one_line_and_keeps_the_run_finished(
    tiny_run: Path,
    tiny_model_dir: Path,
    small_fs: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = _copy(tiny_run, small_fs / "run")
    _fill(small_fs)
    before = snapshot(run)
    status, err = cli(capsys, *_run_args(tiny_model_dir), "--out", str(run), "--resume")
    assert_one_line_refusal(status, err, "No space left on device")
    assert snapshot(run) == before and _complete(run)
    assert _tmp_files(small_fs) == []


def test_a_full_disk_while_writing_run_json_leaves_nothing_behind(
    tiny_model_dir: Path, small_fs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = small_fs / "run"
    filler = _fill(small_fs)
    status, err = cli(capsys, *_run_args(tiny_model_dir), "--out", str(out))
    assert_one_line_refusal(status, err, "No space left on device")
    assert "run.json" in err
    assert not out.exists()  # the directory it made is gone with its lock
    filler.unlink()
    assert main([*_run_args(tiny_model_dir), "--out", str(out)]) == 0
    assert _complete(out)


def test_a_file_size_limit_while_writing_events_is_one_line_and_resumable(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """``ulimit -f 12``: the first request's part files fit, a larger one does not."""
    out = tmp_path / "run"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (12 * 1024, 12 * 1024))

    result = subprocess.run(
        [sys.executable, "-m", "specviz", *_run_args(tiny_model_dir), "--out", str(out)],
        capture_output=True,
        text=True,
        preexec_fn=limit,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=300,
    )
    assert_one_line_refusal(result.returncode, result.stderr, "File too large")
    assert "ulimit -f" in result.stderr
    assert _tmp_files(tmp_path) == [] and not _complete(out)
    assert main([*_run_args(tiny_model_dir), "--out", str(out), "--resume"]) == 0
    assert _complete(out)


def test_leftover_temporaries_of_a_crash_neither_block_nor_stay(
    tiny_run: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """What ``kill -9`` mid-write leaves: ``.run.json.PID.tmp`` (empty) in a fresh directory,
    ``.requests-*.parquet.PID.tmp`` in a run's parts."""
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / ".run.json.999999.tmp").write_bytes(b"")
    assert main([*_run_args(tiny_model_dir), "--out", str(fresh)]) == 0
    assert _complete(fresh) and _tmp_files(fresh) == []

    run = _copy(tiny_run, tmp_path / "copy")
    (run / "parts" / ".requests-000001.parquet.999999.tmp").write_bytes(b"PAR1")
    (run / ".events.parquet.999999.tmp").write_bytes(b"PAR1")
    assert main([*_run_args(tiny_model_dir), "--out", str(run), "--resume"]) == 0
    assert _tmp_files(run) == []


def _summary(source: Path, stdout: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "specviz", "summary", str(source), "--json", "--n-boot", "100"],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=300,
    )


def test_summary_into_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    """``specviz summary DIR --json | true``: the reader is gone before the answer is written."""
    study = write_study(tmp_path / "study", default_conditions())
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = _summary(study, write_end)
    finally:
        os.close(write_end)
    assert result.returncode == 128 + signal.SIGPIPE, result.stderr
    assert result.stderr == ""


def test_summary_into_a_full_device_is_one_line(tmp_path: Path) -> None:
    """``specviz summary DIR --json > /dev/full`` (a node with /dev/full's numbers, made here)."""
    study = write_study(tmp_path / "study", default_conditions())
    full = _mknod(tmp_path / "full", stat.S_IFCHR, 1, 7)
    with full.open("w") as handle:
        result = _summary(study, handle)
    assert_one_line_refusal(result.returncode, result.stderr, "No space left on device")


@pytest.mark.parametrize("factor", ["nan", "inf", "-inf"])
def test_a_spec_factor_that_is_not_finite_is_refused_before_a_model_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], factor: str
) -> None:
    out = tmp_path / "run"
    args = ["run", "--target", "no-such-org/no-such-model", "--drafter", "suffix"]
    status, err = cli(capsys, *args, f"--spec-factor={factor}", "--out", str(out), "--quiet")
    assert_one_line_refusal(status, err, "spec_factor must be > 0 and finite")
    assert not out.exists()


# -- 7. earlier schemas still open -----------------------------------------------------------------

PAST_SCHEMAS = Path(__file__).parent / "data"


def test_a_run_directory_of_every_past_schema_is_checked_in() -> None:
    """A schema bump must add ``tests/data/schema-N`` written by the version it replaces."""
    for version in range(1, SCHEMA_VERSION):
        meta = json.loads((PAST_SCHEMAS / f"schema-{version}" / "run.json").read_text())
        assert meta["schema_version"] == version and meta["complete"]


@pytest.mark.parametrize("version", sorted(ADDED_SINCE))
def test_an_earlier_schema_opens_with_its_new_columns_null_and_says_so_once(
    version: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = tmp_path / "study"
    for name in ("a", "b"):  # two runs of the old version: one note
        shutil.copytree(PAST_SCHEMAS / f"schema-{version}", study / "runs" / name)
    rundir._NOTED.discard(version)
    status = main(["summary", str(study), "--json", "--n-boot", "100"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert json.loads(out)["unfinished"] == []
    assert err.count("note:") == 1 and f"schema {version}" in err, err
    write_run(study / "runs" / "now", SyntheticRun("now", "none", "coding", ("coding",), 2))
    requests = scan_requests(study).collect()  # old and current runs in one scan
    events = scan_events(study).collect()
    assert requests.schema == REQUEST_SCHEMA and events.schema == EVENT_SCHEMA
    assert requests.height == 6 and events.height > 0
    old = ~pl.col("run_id").str.starts_with("now")
    for table, frame in (("requests", requests), ("events", events)):
        for column in ADDED_SINCE[version][table]:
            assert frame.filter(old)[column].null_count() == frame.filter(old).height
    assert requests.filter(~old)["turn_prompt_tokens"].null_count() == 0
    answers = tmp_path / "a.jsonl"
    assert main(["export-specbench", str(study / "runs" / "a"), "--out", str(answers)]) == 0
    assert len(answers.read_text().splitlines()) == 2


def test_a_schema_it_cannot_read_is_refused_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, err = cli(capsys, "summary", str(PAST_SCHEMAS / "schema-1"))
    assert_one_line_refusal(status, err, "has schema_version 1; this specviz reads versions 2")


def test_resuming_an_earlier_schema_run_is_refused_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _copy(PAST_SCHEMAS / "schema-3", tmp_path / "run")
    meta = json.loads((run / "run.json").read_text())
    args = ["run", "--target", meta["config"]["target"]["name"], "--drafter", "prompt-lookup"]
    args += ["--k", "3", "--limit", "2", "--max-new-tokens", "4", "--quiet"]
    before = snapshot(tmp_path)
    status, err = cli(capsys, *args, "--out", str(run), "--resume")
    assert_one_line_refusal(status, err, "holds a run of schema 3: this specviz reads it")
    assert snapshot(tmp_path) == before


# -- 3. non-Latin names ----------------------------------------------------------------------------


def test_non_latin_names_slug_apart_and_readable() -> None:
    assert slug("数学").startswith("ShuXue-") and slug("物理").startswith("WuLi-")
    assert slug("数学") != slug("树学")  # one transliteration, two names
    assert slug("café") != slug("cafe") == "cafe"
    assert all(slug(n).isascii() and "/" not in slug(n) for n in ("数学", "العربية", "../数"))


def test_a_study_of_non_latin_categories_runs_each_apart(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    prompts = tmp_path / "q.jsonl"
    rows = [{"question_id": f"q{i}", "category": c, "turns": ["hi"]} for i, c in enumerate("数物")]
    rows = [r | {"category": {"数": "数学", "物": "物理"}[r["category"]]} for r in rows]
    prompts.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    study = parse_study(
        {
            "models": [str(tiny_model_dir)],
            "max_new_tokens": 2,
            "workload": {"source": str(prompts), "per_category": 1},
            "mixtures": {"uniform": []},
            "options": {"device": "cpu"},
        },
        "multilingual.toml",
    )
    out = tmp_path / "out"
    assert run_study(study, out, progress=False).complete
    names = sorted(p.parent.name for p in out.rglob("run.json"))
    assert any("ShuXue-" in n for n in names) and any("WuLi-" in n for n in names), names
    categories = scan_requests(out).select("category").unique().collect()["category"]
    assert {"数学", "物理"} <= set(categories.to_list())


# -- 6. silent or unclear --------------------------------------------------------------------------


def _study_toml(path: Path, model: Path, prompts: Path, extra: str = "") -> Path:
    path.write_text(
        f"""name = "planned"
models = [{json.dumps(str(model))}]
max_new_tokens = 2
{extra}
[workload]
source = {json.dumps(str(prompts))}
per_category = 1
[options]
device = "cpu"
"""
    )
    return path


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    path = tmp_path / "q.jsonl"
    path.write_text(
        "".join(
            json.dumps({"question_id": f"q{c}", "category": c, "turns": ["hi", "more"]}) + "\n"
            for c in ("a", "b")
        )
    )
    return path


def test_study_plan_prints_runs_requests_and_tokens_and_runs_nothing(
    tiny_model_dir: Path, tmp_path: Path, prompts: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = _study_toml(tmp_path / "s.toml", tiny_model_dir, prompts)
    out = tmp_path / "out"
    assert main(["study", str(toml), "--out", str(out), "--plan"]) == 0
    text = capsys.readouterr().out
    # baseline over single-task a, b and the default mixture of both: 3 runs, 4 requests,
    # 2 turns x 2 tokens each
    assert "plan: 3 runs, 4 requests, at most 16 new tokens" in text, text
    assert "estimate: none" in text
    assert not out.exists()


def test_study_plan_estimates_from_the_calibrated_curve(
    tiny_model_dir: Path, tmp_path: Path, prompts: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from specviz.cost import CostModel

    toml = _study_toml(tmp_path / "s.toml", tiny_model_dir, prompts)
    out = tmp_path / "out"
    out.mkdir()
    curve = {"targets": {str(tiny_model_dir): CostModel(verify_s=(30.0,)).to_dict()}}
    (out / "cost_model.json").write_text(json.dumps(curve))
    assert main(["study", str(toml), "--out", str(out), "--plan"]) == 0
    assert "estimate: at most about 8 min 00 s" in capsys.readouterr().out  # 16 x 30 s


def test_a_large_study_needs_yes_to_start(
    tiny_model_dir: Path, tmp_path: Path, prompts: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    k = list(range(1, 401))  # x 3 mixtures: 1,203 runs with the baseline
    extra = f'k = {k}\n[[drafters]]\nkind = "prompt-lookup"'
    toml = _study_toml(tmp_path / "s.toml", tiny_model_dir, prompts, extra)
    out = tmp_path / "out"
    status, err = cli(capsys, "study", str(toml), "--out", str(out))
    assert_one_line_refusal(status, err, "plans 1,203 runs")
    assert "pass --yes to start it" in err
    assert not out.exists()


def test_a_cost_model_with_an_unknown_key_is_refused(
    tiny_model_dir: Path, tmp_path: Path, prompts: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    costs = "{ verify_s = [1, 2, 3], draft_s = { prompt-lookup = [0, 0] }, bogus = 1 }"
    extra = f'k = [2]\npolicies = [{{ kind = "cost-aware", cost_model = {costs} }}]'
    toml = _study_toml(tmp_path / "s.toml", tiny_model_dir, prompts, extra)
    status, err = cli(capsys, "study", str(toml), "--out", str(tmp_path / "out"), "--plan")
    assert_one_line_refusal(status, err, "unknown key 'bogus'")


def test_draft_costs_for_another_drafter_label_show_as_skipped_in_the_plan(
    tiny_model_dir: Path, tmp_path: Path, prompts: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    costs = "{ verify_s = [1, 2, 3], draft_s = { suffix = [0, 0] } }"
    extra = f'k = [2]\npolicies = [{{ kind = "cost-aware", cost_model = {costs} }}]\n'
    extra += '[[drafters]]\nkind = "prompt-lookup"'
    toml = _study_toml(tmp_path / "s.toml", tiny_model_dir, prompts, extra)
    assert main(["study", str(toml), "--out", str(tmp_path / "out"), "--plan"]) == 0
    text = capsys.readouterr().out
    assert "skipped: prompt-lookup/cost-aware/k2:" in text
    assert "no draft_s for drafter 'prompt-lookup'" in text


def test_report_out_under_a_file_names_the_path_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import specviz.report.builder as builder

    monkeypatch.setattr(builder, "choose_kernel", _no_kernel)
    (tmp_path / "precious.txt").write_text("precious\n")
    out = tmp_path / "precious.txt" / "x.html"
    status, err = cli(capsys, "report", str(PAST_SCHEMAS / "schema-3"), "--out", str(out))
    assert_one_line_refusal(status, err, f"--out {out} lies under {tmp_path / 'precious.txt'}")


def test_policy_help_lists_every_policy(capsys: pytest.CaptureFixture[str]) -> None:
    from specviz.config import POLICIES

    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(p in text for p in POLICIES) and "svip" in text


def test_verify_costs_must_be_finite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["run", "--target", "no-such-org/no-such-model", "--drafter", "prompt-lookup"]
    args += ["--policy", "cost-aware", "--k", "2", "--verify-costs", "inf,inf,inf"]
    status, err = cli(capsys, *args, "--out", str(tmp_path / "run"), "--quiet")
    assert_one_line_refusal(status, err, "costs must be finite seconds >= 0 (got inf)")


def test_summary_of_one_run_warns_of_a_negative_prefill_slope(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The schema-3 run: three prefills, and a line through them that falls."""
    assert main(["summary", str(PAST_SCHEMAS / "schema-3"), "--all", "--n-boot", "100"]) == 0
    text = capsys.readouterr().out
    assert "ms per prompt token (warning: negative slope, 3 prefill rounds are too few" in text
