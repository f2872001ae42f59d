"""Every notebook runs under papermill; the numbers it publishes are the metrics functions'.

``run_study`` runs a small real study with the tiny random models (conftest); the analysis
notebooks then run on that study, each in its own kernel, and what they publish is compared
with :mod:`specviz.metrics` called here on the same data.
"""

from __future__ import annotations

import json
from pathlib import Path

import jupytext
import polars as pl
import pytest
from report_fixtures import isolate_jupyter

from specviz import config
from specviz.metrics import (
    degradation,
    label_streams,
    per_position,
    request_summary,
    speedup,
    summary,
)
from specviz.metrics.accounting import decode_clock
from specviz.plots import method_label
from specviz.report import read_published
from specviz.report.builder import PARAMETERS_TAG, REPORT_NOTEBOOKS, default_notebooks_dir
from specviz.report.execute import ExecutionLimits, run_notebook
from specviz.report.kernel import choose_kernel
from specviz.report.parameters import declared_parameters
from specviz.rundir import scan_events, scan_requests

NOTEBOOKS = default_notebooks_dir()
ALL = ("run_study", *REPORT_NOTEBOOKS)
N_BOOT = 200
# a notebook here takes 5-30 s; a lost message fails in minutes (and is retried), not never
LIMITS = ExecutionLimits(cell_s=240, start_s=60, total_s=240)


def execute(name: str, workdir: Path, **parameters: object) -> dict:
    executed = run_notebook(
        jupytext.read(NOTEBOOKS / f"{name}.py"),
        workdir / f"{name}.ipynb",
        name=name,
        parameters=parameters,
        kernel=choose_kernel(),
        cwd=workdir,
        limits=LIMITS,
    )
    return read_published(executed)


def close(a: float | None, b: float | None) -> bool:
    return (a is None and b is None) or (
        a is not None and b is not None and abs(a - b) <= 1e-9 * max(1.0, abs(b))
    )


@pytest.mark.parametrize("name", ALL)
def test_notebook_is_jupytext_with_one_parameters_cell(name: str) -> None:
    nb = jupytext.read(NOTEBOOKS / f"{name}.py")
    tagged = [c for c in nb.cells if PARAMETERS_TAG in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    assert nb.metadata["kernelspec"]["name"] == "specviz"
    # every parameter has a literal default, so its type can be checked before a kernel starts
    assert None not in declared_parameters(nb).values()


@pytest.mark.parametrize("name", ALL)
def test_notebook_defaults_are_the_named_defaults(name: str) -> None:
    # a parameters cell must hold literals (papermill injects over them), so the notebooks
    # repeat config.N_BOOT / config.MAX_NEW_TOKENS; this keeps them equal
    declared = declared_parameters(jupytext.read(NOTEBOOKS / f"{name}.py"))
    named = {"n_boot": config.N_BOOT, "max_new_tokens": config.MAX_NEW_TOKENS}
    assert {p: declared[p] for p in named if p in declared} == {
        p: v for p, v in named.items() if p in declared
    }


@pytest.fixture(scope="module")
def study(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """Run ``run_study`` on 2 categories x 1 prompt, single-task and uniform mixtures,
    baseline and prompt lookup: 6 real runs of the tiny random model."""
    root = tmp_path_factory.mktemp("nbstudy")
    prompts = root / "questions.jsonl"
    rows = [
        {"question_id": f"{c}-0", "category": c, "turns": [f"{c}: repeat repeat repeat repeat"]}
        for c in ("coding", "writing")
    ]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    study_file = root / "tiny.toml"
    study_file.write_text(
        "\n".join(
            [
                'name = "tiny"',
                f"models = [{json.dumps(str(tiny_model_dir))}]",
                'policies = ["constant"]',
                "k = [3]",
                "max_new_tokens = 12",
                "[workload]",
                f"source = {json.dumps(str(prompts))}",
                "per_category = 1",
                "[mixtures]",
                'uniform = ["interleaved"]',
                "[[drafters]]",
                'kind = "prompt-lookup"',
                "[options]",
                'device = "cpu"',
            ]
        )
        + "\n"
    )
    with pytest.MonkeyPatch.context() as mp:
        isolate_jupyter(mp, root / "home")
        out = root / "study"
        published = execute("run_study", root, study_file=str(study_file), out_dir=str(out))
    return out, published


@pytest.mark.slow
def test_run_study_runs_every_condition(study: tuple[Path, dict]) -> None:
    out, published = study
    outcome = published["study.outcome"]
    assert outcome["complete"] is True
    assert outcome["units_run"] == outcome["units_total"] == 6
    assert Path(outcome["out_dir"]) == out


@pytest.fixture(scope="module")
def tables(study: tuple[Path, dict]) -> tuple[pl.DataFrame, pl.DataFrame]:
    out, _ = study
    requests = scan_requests(out).collect().with_columns(method_label())
    methods = requests.select("run_id", "method").unique("run_id")
    return scan_events(out).collect().join(methods, on="run_id"), requests


@pytest.fixture(scope="module")
def run_analysis(study: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory):
    out, _ = study
    home = tmp_path_factory.mktemp("nbhome")

    def run(name: str, **parameters: object) -> dict:
        with pytest.MonkeyPatch.context() as mp:
            isolate_jupyter(mp, home)
            return execute(name, home, source=str(out), **parameters)

    return run


@pytest.mark.slow
def test_acceptance_by_task_publishes_the_metrics(run_analysis, tables) -> None:
    events, requests = tables
    published = run_analysis("acceptance_by_task", n_boot=N_BOOT)
    by = ["category", "method"]
    expected = summary(events, by=by)
    got = pl.DataFrame(published["acceptance.summary"]).sort(by)
    assert got["category"].to_list() == expected["category"].to_list()
    for column in ("acceptance_rate", "alpha", "mean_accepted_length", "tokens_per_s", "accepted"):
        assert all(map(close, got[column].to_list(), expected[column].to_list())), column
    positions = per_position(events, by=by)
    got_pos = pl.DataFrame(published["acceptance.per_position"]).sort([*by, "position"])
    assert (
        got_pos["conditional_acceptance"].to_list() == positions["conditional_acceptance"].to_list()
    )
    speed = speedup(requests, by=by, n_boot=N_BOOT)
    got_speed = pl.DataFrame(published["acceptance.speedup"]).sort(by)
    assert all(map(close, got_speed["speedup_total"].to_list(), speed["speedup_total"].to_list()))
    assert all(
        map(close, got_speed["speedup_total_low"].to_list(), speed["speedup_total_low"].to_list())
    )
    throughput = request_summary(requests, by=by)
    got_tp = pl.DataFrame(published["acceptance.throughput"]).sort(by)
    assert all(map(close, got_tp["tokens_per_s"].to_list(), throughput["tokens_per_s"].to_list()))


@pytest.mark.slow
def test_workload_notebook_publishes_lengths_per_category(run_analysis, tables) -> None:
    from specviz.report.workload import length_distribution

    _, requests = tables
    published = run_analysis("workload")
    expected = length_distribution(requests, set())
    got = pl.DataFrame(published["workload.lengths"])
    assert got["category"].to_list() == expected["category"].to_list() == ["coding", "writing"]
    assert got["output median"].to_list() == expected["output median"].to_list()


@pytest.mark.slow
def test_mixture_collapse_publishes_the_degradation(run_analysis, tables) -> None:
    _, requests = tables
    published = run_analysis("mixture_collapse", n_boot=N_BOOT)
    labelled = label_streams(decode_clock(requests)).collect()  # decode seconds, as the summary
    expected = degradation(labelled, n_boot=N_BOOT).sort("drafter")
    got = pl.DataFrame(published["collapse.degradation"]).sort("drafter")
    assert got.height == expected.height >= 1
    for column in (
        "multitask_s",
        "reference_s",
        "total",
        "composition",
        "k_mismatch",
        "residual",
        "total_low",
        "total_high",
    ):
        assert all(map(close, got[column].to_list(), expected[column].to_list())), column
    streams = pl.DataFrame(published["collapse.streams"])
    assert set(streams["stream"]) == {"single-task", "multitask"}
    data = published["report.data"]
    assert data["requests"] == requests.height and data["categories"] == ["coding", "writing"]


@pytest.mark.slow
def test_token_explorer_counts_agree_with_the_metrics(run_analysis, tables) -> None:
    events, _ = tables
    published = run_analysis("token_explorer")
    run = events.filter(pl.col("run_id") == published["tokens.run_id"])
    assert run["drafter"][0] == "prompt-lookup" and run["category"].n_unique() == 2
    counts = published["tokens.status_counts"]
    metrics = summary(run)
    assert counts.get("accepted", 0) == metrics["accepted"][0]
    drafted = sum(counts.get(s, 0) for s in ("accepted", "rejected", "unverified"))
    assert drafted == metrics["drafted"][0]
    assert published["tokens.decoded"] is True  # the tiny model's tokenizer is local


@pytest.mark.slow
@pytest.mark.parametrize("name", REPORT_NOTEBOOKS)
def test_notebook_runs_on_the_demo_results_with_its_default_parameters(
    name: str, study: tuple[Path, dict], tmp_path: Path
) -> None:
    """As in JupyterLab after `make demo`: the kernel runs in notebooks/, the demo's study is
    runs/default at the repository root, and no parameter is set."""
    out, _ = study
    repo = tmp_path / "repo"
    (repo / "notebooks").mkdir(parents=True)
    (repo / "runs").mkdir()
    (repo / "runs" / "default").symlink_to(out, target_is_directory=True)
    with pytest.MonkeyPatch.context() as mp:
        isolate_jupyter(mp, tmp_path / "home")
        executed = run_notebook(
            jupytext.read(NOTEBOOKS / f"{name}.py"),
            tmp_path / f"{name}.ipynb",
            name=name,
            parameters={},
            kernel=choose_kernel(),
            cwd=repo / "notebooks",
            limits=LIMITS,
        )
    published = read_published(executed)
    assert published  # it ran to the end and published its numbers
    requests = scan_requests(out).collect()
    if name == "mixture_collapse":
        assert published["report.data"]["requests"] == requests.height
    if name == "token_explorer":
        assert published["tokens.run_id"] in set(requests["run_id"])


@pytest.mark.parametrize("name", ALL)
def test_notebook_kernel_name_is_the_one_the_makefile_registers(name: str) -> None:
    """JupyterLab shows the display name the Makefile gives the kernel; the notebooks and the
    docs say the same."""
    import re

    root = Path(__file__).resolve().parents[1]
    makefile = (root / "Makefile").read_text()
    shown = re.search(r'--name specviz --display-name "([^"]+)"', makefile)
    assert shown
    nb = jupytext.read(root / "notebooks" / f"{name}.py")
    assert nb.metadata["kernelspec"]["display_name"] == shown.group(1)
    assert f'--display-name "{shown.group(1)}"' in (root / "docs" / "reports.md").read_text()
