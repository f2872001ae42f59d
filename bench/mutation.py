"""Mutation testing of specviz's core modules with mutmut, one module at a time.

For each core module (:data:`MODULES`: its source file and the test files that cover it) the
driver keeps a work directory ``out/mutation/work/NAME`` whose ``pyproject.toml`` tells mutmut
to mutate that one file and to run only those test files (``-m "not slow"``: a test that loads
the embedded model or runs notebooks is too slow to run once per mutant). mutmut copies the
package into ``work/NAME/mutants/``, runs each mutant against the tests that cover the mutated
function (it records which tests reach which function first) and keeps every verdict: a second
run re-tests only the functions whose code changed, so ``make mutation`` after a small change
takes minutes. The work directories are the cache; deleting ``out/mutation`` starts afresh.

Each module runs under ``nice`` with ``--jobs`` workers (2 by default: the machine's cores) and
``--budget-s`` seconds at most (mutmut is stopped after that; what it tested so far is kept and
counted, the rest reported as not checked, and the next run goes on from there).

Output, over every module with cached verdicts (not only those run now): a table per module
(mutants, killed, survived, equivalent, not checked, full, score = killed / (killed + survived
- equivalent)), ``out/mutation/report.md`` (the table, every survivor not judged equivalent with
its diff: a test to write, then the equivalent ones with their reasons, read from
``bench/mutation-equivalent.toml``) and, last, one JSON line.

A module's test list below is mutmut's test selection: changing it resets every verdict of the
module (mutmut 3.8.1 treats it as a new configuration); new tests in a file already listed keep
them (mutmut collects the new tests' coverage, and this driver re-tests the survivors).

    .venv/bin/python bench/mutation.py [--modules verify,policies] [--jobs 2] [--budget-s 1200]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Module:
    """A core module to mutate, the test files that claim to cover it, and the tests among them
    left out (``deselect``: end-to-end statistical runs of half a minute that every mutant of a
    function they reach would rerun; the unit tests of the same files cover those functions)."""

    source: str
    tests: tuple[str, ...]
    deselect: tuple[str, ...] = ()


SVIP = "tests/test_drafters_policies.py::test_sampling_with_svip_stopping_keeps_the_targets_distribution"
MODULES: dict[str, Module] = {
    "policies": Module(
        "specviz/policies.py",
        (
            "tests/test_policy_claims.py",
            "tests/test_policy_build_claims.py",
            "tests/test_policies_task_aware.py",
            "tests/test_drafters_policies.py",
        ),
        (SVIP,),
    ),
    "bootstrap": Module(
        "specviz/metrics/bootstrap.py",
        ("tests/test_metrics_bootstrap.py", "tests/test_interval_claims.py"),
    ),
    "degradation": Module(
        "specviz/metrics/degradation.py",
        (
            "tests/test_metrics_degradation.py",
            "tests/test_interval_claims.py",
            "tests/test_metrics_claims.py",
        ),
    ),
    # the unit-level tests only: the other tests of test_endpoint_client.py and
    # test_llamacpp_endpoint.py start `specviz run` / `summary` against a scripted server, and
    # mutmut's clean run of them alone outlasted what a shared 2-core machine can spare
    "parse": Module(
        "specviz/endpoint/parse.py",
        (
            "tests/test_endpoint_parse_claims.py",
            "tests/test_endpoint_events.py",
            *(
                f"tests/test_endpoint_client.py::{t}"
                for t in (
                    "test_vllm_documented_metrics_are_parsed",
                    "test_vllm_detailed_metrics_carry_per_step_counts",
                    "test_vllm_early_choice_shape_with_keyed_histogram_is_parsed",
                    "test_sglang_fields_are_parsed",
                    "test_a_response_without_figures_has_no_spec",
                )
            ),
            *(
                f"tests/test_llamacpp_endpoint.py::{t}"
                for t in (
                    "test_llamacpp_timings_give_drafted_and_accepted_and_no_steps",
                    "test_llamacpp_timings_without_draft_counts_are_a_request_that_drafted_nothing",
                    "test_llamacpp_accepting_more_than_it_drafted_is_a_protocol_error",
                    "test_two_turns_of_llamacpp_counts_add_and_steps_stay_unknown",
                    "test_the_real_servers_full_and_streamed_answers_are_parsed_alike",
                )
            ),
        ),
    ),
    "expressions": Module(
        "specviz/metrics/expressions.py",
        (
            "tests/test_metrics_summary.py",
            "tests/test_per_position_claims.py",
            "tests/test_metrics_claims.py",
        ),
    ),
    "summary": Module(
        "specviz/metrics/summary.py",
        (
            "tests/test_metrics_summary.py",
            "tests/test_per_position_claims.py",
            "tests/test_metrics_claims.py",
        ),
    ),
    "verify": Module(
        "specviz/verify.py", ("tests/test_verify_sampling.py", "tests/test_verify_claims.py")
    ),
    # runtables and rundir: the claims on hand-made frames only (test_rundir_claims.py, a few
    # seconds); test_runner.py, test_resume_claims.py and test_hostile_outputs.py decode with the
    # tiny model or start the CLI, too slow to run once per mutant on 2 shared cores
    "runtables": Module("specviz/rundir/tables.py", ("tests/test_rundir_claims.py",)),
    "cost": Module("specviz/cost.py", ("tests/test_cost_model.py",)),
    "accounting": Module("specviz/metrics/accounting.py", ("tests/test_cost_accounting.py",)),
    "suffix": Module(
        "specviz/drafters/suffix.py",
        ("tests/test_suffix_drafter.py",),
        (
            "tests/test_suffix_drafter.py::"
            "test_sampling_with_suffix_drafts_keeps_the_targets_distribution",
        ),
    ),
    "outdir": Module(
        "specviz/rundir/outdir.py",
        (
            "tests/test_outdir_claims.py",
            "tests/test_report_out_claims.py",
            "tests/test_hostile_outputs.py",
        ),
    ),
    "rundir": Module("specviz/rundir/read.py", ("tests/test_rundir_claims.py",)),
}

#: each worker computes on one thread: ``--jobs`` workers share the cores, and a CPU-time limit
#: then means the same on a busy machine as on an idle one
ONE_THREAD = {"POLARS_MAX_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}

#: what the fork server imports before forking a worker per mutant: everything slow to import
#: (torch, transformers, altair, nbconvert, polars, specviz). It never *runs* a polars operation:
#: polars starts its thread pool on the first one, and a process forked after that waits
#: forever on its own first one (a false "timeout"). specviz comes from ``mutants/`` (mutmut
#: puts it first on sys.path before the server starts); a mutant is switched on at call time.
PRELOAD = [
    "numpy",
    "torch",
    "scipy.stats",
    "transformers",
    "tokenizers",
    "accelerate",
    "safetensors",
    "huggingface_hub",
    "sympy",
    "pytest",
    "altair",
    "narwhals",
    "nbformat",
    "nbconvert",
    "nbclient",
    "jupyter_client",
    "jupytext",
    "jinja2",
    "httpx",
    "starlette",
    "uvicorn",
    "tqdm",
    "mistune",
    "bleach",
    "tinycss2",
    "bs4",
    "pygments",
    "jsonschema",
    "psutil",
    "yaml",
    "regex",
    "polars",
    "pyarrow",
    "papermill",
    "specviz.metrics",
    "specviz.report.builder",
    "specviz.report.execute",
    "specviz.runner",
    "specviz.cli",
    "specviz.endpoint.client",
]

#: mutmut runs at the lowest priority: the machine is shared, and a run is never urgent
NICE = 19

#: mutmut's exit codes per verdict (mutmut.stats.status_by_exit_code)
KILLED = {1, 3}
SURVIVED = {0}
NO_TESTS = {5, 33}
TIMEOUT = {36, -24, 24, 152, 255}


def pyproject(module: Module) -> str:
    """The work directory's pyproject.toml: mutate ``module.source``, run its tests."""
    tests = ", ".join(json.dumps(t) for t in module.tests)
    deselect = "".join(f', "--deselect", {json.dumps(t)}' for t in module.deselect)
    return f"""[tool.mutmut]
source_paths = ["specviz"]
only_mutate = [{json.dumps(module.source)}]
pytest_add_cli_args = ["-m", "not slow", "-p", "no:cacheprovider", "-q"{deselect}]
pytest_add_cli_args_test_selection = [{tests}]
also_copy = ["data"]
use_git_change_detection = false
# a mutant is stopped (a timeout, counted as killed) after 2 x 3 x (its tests' clean seconds
# + 10): the 10 covers the worker's own imports
timeout_multiplier = 3.0
timeout_constant = 10.0
# each mutant runs in a process forked from a server that imported the tests' dependencies but
# ran nothing: a process forked after polars ran an operation (its thread pool started) waits
# forever on its own first one (a false "timeout")
process_isolation = "forkserver"
forkserver_warmup = "import"
preload_modules_file = "preload.txt"

[tool.pytest.ini_options]
testpaths = ["tests"]
markers = ["slow: loads the embedded model or runs notebooks"]
"""


def prepare(work: Path, module: Module) -> None:
    """Link the package, tests and data into ``work`` and write its mutmut configuration."""
    work.mkdir(parents=True, exist_ok=True)
    for name in ("specviz", "tests", "data"):
        link = work / name
        # a cache copied from another checkout links to that checkout: point it at this one
        if link.is_symlink() and link.readlink() != ROOT / name:
            link.unlink()
        if not link.is_symlink():
            link.symlink_to(ROOT / name)
    (work / "preload.txt").write_text("\n".join(PRELOAD) + "\n")
    text = pyproject(module)
    config = work / "pyproject.toml"
    if not config.exists() or config.read_text() != text:
        config.write_text(text)
    # the tests as they are now (mutmut copies tests/ once, into mutants/)
    copied = work / "mutants" / "tests"
    if copied.exists():
        shutil.rmtree(copied)


def run_mutmut(work: Path, jobs: int, budget_s: float) -> tuple[float, bool]:
    """Run mutmut in ``work`` for at most ``budget_s`` seconds: (seconds taken, finished)."""
    env = {**os.environ, "PYTHONPATH": "", "HF_HUB_OFFLINE": "1", **ONE_THREAD}
    mutmut = Path(sys.executable).parent / "mutmut"
    cmd = ["nice", "-n", str(NICE), str(mutmut), "run", "--max-children", str(jobs)]
    start = time.monotonic()
    log = (work / "mutmut.log").open("a")
    proc = subprocess.Popen(
        cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        proc.wait(timeout=budget_s)
        finished = proc.returncode == 0
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # mutmut ends its workers and keeps its verdicts
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        finished = False
    return time.monotonic() - start, finished


def verdicts(work: Path, module: Module) -> dict[str, int | None]:
    """mutmut's exit code per mutant of ``module`` (None: not checked yet)."""
    meta = work / "mutants" / f"{module.source}.meta"
    if not meta.exists():
        return {}
    return json.loads(meta.read_text())["exit_code_by_key"]


def forget(work: Path, module: Module, codes: set[int]) -> dict[str, tuple[int, str]]:
    """Mark the mutants of ``module`` whose verdict is one of ``codes`` as not checked, so the
    next mutmut run tests them again (in the same run as the new mutants); return what was
    forgotten, ``{mutant: (verdict, its function's hash)}``, for :func:`restore`."""
    meta = work / "mutants" / f"{module.source}.meta"
    if not meta.exists():
        return {}
    data = json.loads(meta.read_text())
    hashes = data.get("hash_by_function_name", {})
    forgotten = {
        m: (c, hashes.get(function_of(m), ""))
        for m, c in data["exit_code_by_key"].items()
        if c in codes
    }
    data["exit_code_by_key"] = {
        m: None if m in forgotten else c for m, c in data["exit_code_by_key"].items()
    }
    meta.write_text(json.dumps(data))
    return forgotten


def restore(work: Path, module: Module, forgotten: dict[str, tuple[int, str]]) -> int:
    """Give back its earlier verdict to each mutant :func:`forget` cleared that the run did not
    re-test (stopped by its budget first) and whose function is unchanged (a changed function's
    mutants are new ones under the same names): a run cut short keeps its survivors as survivors
    instead of losing them to "not checked". Returns how many were restored."""
    meta = work / "mutants" / f"{module.source}.meta"
    if not forgotten or not meta.exists():
        return 0
    data = json.loads(meta.read_text())
    hashes = data.get("hash_by_function_name", {})
    codes = data["exit_code_by_key"]
    back = {
        m: c
        for m, (c, h) in forgotten.items()
        if m in codes and codes[m] is None and hashes.get(function_of(m), "") == h
    }
    codes.update(back)
    meta.write_text(json.dumps(data))
    return len(back)


def function_of(mutant: str) -> str:
    """The mangled function name a mutant's verdicts are hashed under in mutmut's meta file
    (``specviz.cost.x__curve_at__mutmut_5`` -> ``x__curve_at``)."""
    return mutant.rsplit(".", 1)[-1].split("__mutmut_")[0]


def diff(work: Path, mutant: str) -> str:
    """The survivor's diff, as ``mutmut show`` prints it."""
    mutmut = Path(sys.executable).parent / "mutmut"
    out = subprocess.run(
        [str(mutmut), "show", mutant],
        cwd=work,
        env={**os.environ, "PYTHONPATH": ""},
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip()


@dataclass(frozen=True)
class Equivalent:
    """A survivor judged equivalent (no test can tell it from the original), in
    :data:`EQUIVALENT_FILE`: the mutant's name, a line its diff adds (``-LINE`` for a mutant that
    only deletes: :func:`changed_lines`; mutmut numbers a function's mutants anew when the
    function changes: a name whose diff no longer changes ``line`` is a different mutant,
    reported unclassified) and why it is equivalent."""

    mutant: str
    line: str
    reason: str


#: the equivalent survivors, per module, with the reason for each (kept beside this driver)
EQUIVALENT_FILE = ROOT / "bench" / "mutation-equivalent.toml"


def load_equivalent(path: Path = EQUIVALENT_FILE) -> dict[str, dict[str, Equivalent]]:
    """``{module: {mutant: Equivalent}}`` from ``path`` (absent: none)."""
    if not path.exists():
        return {}
    data = tomllib.loads(path.read_text())
    return {
        module: {e["mutant"]: Equivalent(e["mutant"], e["line"], e["reason"]) for e in entries}
        for module, entries in data.items()
    }


def added_lines(text: str) -> list[str]:
    """The lines a unified diff adds, stripped."""
    return [
        line[1:].strip()
        for line in text.splitlines()
        if line.startswith("+") and not line.startswith("+++")
    ]


def changed_lines(text: str) -> list[str]:
    """The lines a diff adds; for a mutant that only deletes (an argument dropped on a line of
    its own, such as ``how="left",``), the lines it removes, each as ``-LINE``: an equivalent
    entry's ``line`` names one of these."""
    added = added_lines(text)
    if added:
        return added
    return [
        "-" + line[1:].strip()
        for line in text.splitlines()
        if line.startswith("-") and not line.startswith("---")
    ]


@dataclass(frozen=True)
class Survivor:
    """A surviving mutant, its diff and, when judged equivalent, why (None: a gap, or not yet
    classified)."""

    mutant: str
    diff: str
    equivalent: str | None


def diffs(work: Path, module: Module, mutants: list[str]) -> dict[str, str]:
    """Each mutant's diff, cached in ``work/diffs.json`` under its function's hash (``mutmut
    show`` takes a second or two a mutant)."""
    meta = work / "mutants" / f"{module.source}.meta"
    hashes = json.loads(meta.read_text())["hash_by_function_name"] if meta.exists() else {}
    cache_file = work / "diffs.json"
    cache = json.loads(cache_file.read_text()) if cache_file.exists() else {}
    found = {}
    for m in mutants:
        key = f"{m}@{hashes.get(function_of(m), '')}"
        if key not in cache:
            cache[key] = diff(work, m)
        found[m] = cache[key]
    cache_file.write_text(json.dumps(cache, indent=0))
    return found


def classify(
    work: Path, module: Module, mutants: list[str], known: dict[str, Equivalent]
) -> list[Survivor]:
    """Each survivor with its diff, equivalent when :data:`EQUIVALENT_FILE` says so and its
    diff still adds the line recorded there."""
    found = []
    for m, text in diffs(work, module, mutants).items():
        note = known.get(m)
        same = note is not None and note.line.strip() in changed_lines(text)
        found.append(Survivor(m, text, note.reason if same and note else None))
    return found


def score(codes: dict[str, int | None], equivalent: int = 0) -> dict[str, int | float | None]:
    """Counts of a module's verdicts and its score killed / (killed + survived - equivalent):
    the share of the non-equivalent mutants checked that the tests kill."""
    values = list(codes.values())
    killed = sum(c in KILLED or c in TIMEOUT for c in values)
    survived = sum(c in SURVIVED for c in values)
    gaps = survived - equivalent
    return {
        "mutants": len(values),
        "killed": killed,
        "survived": survived,
        "equivalent": equivalent,
        "no_tests": sum(c in NO_TESTS for c in values),
        "not_checked": sum(c is None for c in values),
        "timeouts": sum(c in TIMEOUT for c in values),
        "score": round(killed / (killed + gaps), 3) if killed + gaps else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", default=",".join(MODULES), help="the modules to run")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--budget-s", type=float, default=1200.0, help="per module")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "mutation")
    parser.add_argument("--report-only", action="store_true", help="report the cached verdicts")
    args = parser.parse_args()
    names = [n for n in args.modules.split(",") if n]
    unknown = [n for n in names if n not in MODULES]
    if unknown:
        parser.error(f"unknown modules {unknown}; choose from {', '.join(MODULES)}")
    seconds: dict[str, float] = {}
    for name in [] if args.report_only else names:
        module, work = MODULES[name], args.out / "work" / name
        prepare(work, module)
        # survivors, timeouts and mutants no test reached in an earlier run face the tests as
        # they are now (mutmut keeps a verdict until the mutated function changes, not when a
        # test is added)
        forgotten = forget(work, module, SURVIVED | TIMEOUT | NO_TESTS)
        seconds[name], finished = run_mutmut(work, args.jobs, args.budget_s)
        # a run cut short keeps the earlier verdicts of those it did not reach
        kept = restore(work, module, forgotten)
        note = "" if finished else " (stopped by its budget or failed: see mutmut.log)"
        note += f" ({kept} earlier verdicts kept: not re-tested)" if kept else ""
        print(f"{name}: ran {seconds[name]:.0f} s{note}", flush=True)
    # the report covers every module with cached verdicts, not only those run now: a run of
    # one module must not drop the others' survivors from out/mutation/report.md
    rows, survivors = tabulate(args.out, load_equivalent(), seconds)
    report(args.out, rows, survivors)
    print(json.dumps(bench_line(rows)))


def tabulate(
    out: Path, known: dict[str, dict[str, Equivalent]], seconds: dict[str, float]
) -> tuple[list[dict], dict[str, list[Survivor]]]:
    """A row per module with cached verdicts (run now or earlier) and its survivors."""
    rows, survivors = [], {}
    for name, module in MODULES.items():
        work = out / "work" / name
        codes = verdicts(work, module)
        if not codes:
            continue
        found = classify(
            work,
            module,
            [m for m, c in sorted(codes.items()) if c in SURVIVED],
            known.get(name, {}),
        )
        equivalent = sum(s.equivalent is not None for s in found)
        full = all(c is not None for c in codes.values())
        rows.append(
            {
                "module": name,
                "seconds": round(seconds.get(name, 0.0)),
                "full": full,
                **score(codes, equivalent),
            }
        )
        survivors[name] = found
    return rows, survivors


def bench_line(rows: list[dict]) -> dict:
    """The JSON line: each module's score and the totals (score over every module)."""
    keys = ("mutants", "killed", "survived", "equivalent", "not_checked")
    total = {k: sum(r[k] for r in rows) for k in keys}
    checked = total["killed"] + total["survived"] - total["equivalent"]
    return {
        "bench": "mutation",
        "tool": "mutmut",
        "modules": {r["module"]: r["score"] for r in rows},
        "full_runs": [r["module"] for r in rows if r["full"]],
        **total,
        "score": round(total["killed"] / checked, 3) if checked else None,
        "seconds": sum(r["seconds"] for r in rows),
    }


def report(out: Path, rows: list[dict], survivors: dict[str, list[Survivor]]) -> None:
    """The table, every survivor not judged equivalent (a gap to close) with its diff, then the
    equivalent ones with their reasons, in ``out/report.md``."""
    head = [
        "module",
        "mutants",
        "killed",
        "survived",
        "equivalent",
        "no_tests",
        "not_checked",
        "full",
        "score",
        "seconds",
    ]
    lines = ["# Mutation testing: survivors", "", "| " + " | ".join(head) + " |"]
    lines.append("|" + "---|" * len(head))
    for r in rows:
        lines.append("| " + " | ".join(str(r[h]) for h in head) + " |")
        print("  ".join(f"{h}={r[h]}" for h in head))
    for name, found in survivors.items():
        gaps = [s for s in found if s.equivalent is None]
        if gaps:
            lines += ["", f"## {name}: not classified as equivalent ({len(gaps)})", ""]
            for s in gaps:
                lines += [f"### {s.mutant}", "", "```diff", s.diff, "```", ""]
        same = [s for s in found if s.equivalent is not None]
        if same:
            lines += ["", f"## {name}: equivalent ({len(same)})", ""]
            lines += [
                f"- `{s.mutant}` `{' / '.join(changed_lines(s.diff))}`: {s.equivalent}"
                for s in same
            ]
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
