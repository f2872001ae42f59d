"""Engine benchmark: specviz's forward against llama.cpp's, and its loop against generate().

Part 1, per-row forward cost (``--rows-only`` runs just this part): one cached forward of 1, 2,
4, 6, 8 rows after a ``--context``-token prefill, one thread, on the embedded
``SmolLM2-135M-Instruct.Q4_1.gguf``, for each ``--row-configs`` entry (``dtype/engine``:
``bfloat16/lean``, ``bfloat16/lean-invariant``, ``q4/lean``, ``bfloat16/transformers``, ...;
``+onednn`` after one: its bf16 linear layers on oneDNN instead of specviz's kernel),
median of ``--row-repeats`` forwards (``--fastest``: the fastest; configurations interleaved in
every repeat; the rows are rolled back after each forward, so every forward sees the same
context), and the same forwards' CPU time (this thread's: less inflated by other processes on a
shared machine; ``row_cpu_ms`` in the JSON). Beside them llama.cpp's ``llama-bench -t 1 -p N -n 0 -d CONTEXT`` on the same file
(the same statistic of its samples), run between the two halves of specviz's repeats; the column is skipped, with a message, when the binary is
absent (``scripts/build-llama-cpp.sh`` builds it; ``--llama-cpp-bin`` points elsewhere). The
JSON line's ``row_targets`` give, per configuration, its one-row forward over llama.cpp's
(issue target: <= 1.5) and its 6-row forward over its own one-row forward (target: <= 1.3).
``--baseline-kernel FILE`` builds another version of ``specviz/lean/bf16_kernels.c`` (for
example ``git show REV:specviz/lean/bf16_kernels.c > FILE``; the same entry points) and times
each ``CONFIG+baseline`` row config on it, interleaved with the others: a before/after of the
kernel side by side in one run. ``--stages`` adds, per configuration on specviz's kernel
library, where a 1-row and a 6-row forward's CPU time goes (``stage_cpu_ms``): the linear layers
by shape, the library's attention, RoPE and RMSNorm, and the rest (torch's operations between
them, Python, ctypes), each a median of ``--row-repeats`` forwards (the library's entry points
timed one by one).

Part 2, against transformers' generate(), side by side in one run:

Same embedded model, same prompts, same token budget, in each dtype of ``--dtypes`` (float32
and bfloat16 by default: the model is loaded once per dtype). Pairs, per dtype:

- specviz autoregressive loop (drafter none)  vs  ``model.generate(do_sample=False)``;
- specviz prompt lookup                       vs  ``model.generate(prompt_lookup_num_tokens=k)``;
- specviz prompt lookup, events recorded      vs  the same with recording off.

Methods are interleaved within each repeat (so drift hits all alike); each figure is the median
tokens/s over repeats, tokens counted as generated tokens, time as wall seconds of generation
(prefill included, file writes excluded). Tokens per CPU second of this process are reported
beside them: on a shared machine they are far less noisy than wall time (``load_average`` in the
JSON says how busy the machine was). The JSON line's ``bf16_vs_float32`` divides bf16 tokens/s
by float32 tokens/s for the baseline loop and for prompt lookup; ``cpu_bf16_flags`` says whether
this CPU computes bf16 natively (``specviz.precision``: without AMX or AVX512-BF16 it is
emulated and slower). Prints a table, then one JSON line.

    .venv/bin/python bench/engine.py [--repeats 3] [--max-new-tokens 96] [--threads 1]
        [--dtypes float32,bfloat16] [--prompts 4] [--rows-only] [--row-repeats 12]
        [--row-configs bfloat16/lean,...] [--context 200] [--llama-cpp-bin DIR] [--fastest]
        [--stages] [--baseline-kernel FILE]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from unittest import mock

import torch

from specviz.config import DrafterConfig, ModelSpec, PolicyConfig, RunConfig
from specviz.forward import forward, new_cache, rollback
from specviz.lean import kernel, lean_of
from specviz.lean.kernel import FLAGS, KERNEL_ENV, KernelLinear, Library, compiler, open_library
from specviz.model_source import cache_root, embedded_gguf
from specviz.models import LoadedModel, ModelCache
from specviz.precision import cpu_bf16_flags
from specviz.runner import Request, run
from specviz.workloads import builtin_prompts
from specviz.workloads.prompt import Prompt

CATEGORIES = ("coding", "extraction", "summarization", "writing")
ROWS = (1, 2, 4, 6, 8)
ROW_CONFIGS = (
    "bfloat16/lean",
    "bfloat16/lean-invariant",
    "bfloat16/lean-invariant+onednn",
    "q4/lean",
    "q4/lean-invariant",
    "bfloat16/transformers",
    "float32/lean",
)
ONEDNN = "+onednn"  # a row config's suffix: bf16 linear layers on oneDNN, not specviz's kernel
BASELINE = "+baseline"  # a row config's suffix: on the kernel built from --baseline-kernel FILE
LLAMA_CPP_BIN = cache_root() / "llama.cpp" / "0.3.36" / "bin"


# -- part 1: per-row forward cost ------------------------------------------------------------


def row_spec(config: str) -> ModelSpec:
    dtype, _, engine = config.removesuffix(ONEDNN).removesuffix(BASELINE).partition("/")
    return ModelSpec("smollm2-135m", device="cpu", dtype=dtype, engine=engine or "auto")


def refuse(message: str) -> None:
    """Bad input: one line on stderr, exit status 2."""
    print(f"bench/engine.py: {message}", file=sys.stderr)
    raise SystemExit(2)


def baseline_library(source: Path) -> Library:
    """The kernel library built from ``source`` (another version of bf16_kernels.c) with the
    engine's flags, opened (the build directory is removed; the loaded library stays)."""
    cc = compiler()
    if not source.is_file():
        refuse(f"--baseline-kernel {source}: no such file")
    if cc is None:
        refuse("--baseline-kernel needs a C compiler (gcc, cc or $CC)")
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "baseline.so"
        done = subprocess.run([cc, *FLAGS, "-o", str(target), str(source)], capture_output=True)
        if done.returncode != 0:
            lines = done.stderr.decode(errors="replace").strip().splitlines()
            refuse(f"--baseline-kernel {source} did not build: {lines[0] if lines else ''}")
        return open_library(target)


def load_row_config(config: str, models: ModelCache, baseline: Library | None) -> LoadedModel:
    """``config`` loaded; a ``+onednn`` one with specviz's bf16 kernel turned off
    (``$SPECVIZ_BF16_KERNEL=off``, in a cache of its own), a ``+baseline`` one on ``baseline``
    (in a cache of its own), to time them side by side in one run."""
    if config.endswith(BASELINE):
        if baseline is None:
            refuse(f"row config {config} needs --baseline-kernel FILE")
        with mock.patch.object(kernel, "built_kernel", lambda: baseline):
            return ModelCache().get(row_spec(config))
    if not config.endswith(ONEDNN):
        return models.get(row_spec(config))
    before = os.environ.get(KERNEL_ENV)
    os.environ[KERNEL_ENV] = "off"
    try:
        return ModelCache().get(row_spec(config))
    finally:
        if before is None:
            del os.environ[KERNEL_ENV]
        else:
            os.environ[KERNEL_ENV] = before


@torch.inference_mode()
def timed_rows(
    loaded: LoadedModel, context: int, rows: tuple[int, ...]
) -> dict[int, tuple[float, float]]:
    """(wall, CPU) seconds of one forward of each row count after ``context`` tokens (rolled
    back after); CPU time is this thread's (one torch thread), which another process on the
    same core inflates far less than wall time."""
    ids = torch.arange(context + max(rows)) % 40000 + 100
    cache = new_cache(loaded.model)
    forward(loaded.model, ids[:context], cache, 0, last_only=True)
    out = {}
    for n in rows:
        start, cpu = time.perf_counter(), time.thread_time()
        forward(loaded.model, ids[context : context + n], cache, context)
        out[n] = (time.perf_counter() - start, time.thread_time() - cpu)
        rollback(cache, n)
    return out


STAGE_ROWS = (1, 6)  # the one-row forward and the 6-row verify of the targets
REST = "rest (torch, Python, ctypes)"


@contextmanager
def stage_clock(spent: collections.Counter[str]) -> Iterator[None]:
    """While open, every call of the kernel library's entry points adds its CPU time (this
    thread's, ns) to ``spent``, under ``linear OUTxIN``, ``attention``, ``rope`` or ``norm``."""

    def timed(
        method: Callable[..., object], name: Callable[[object], str]
    ) -> Callable[..., object]:
        def run(self: object, *args: object) -> object:
            start = time.thread_time_ns()
            try:
                return method(self, *args)
            finally:
                spent[name(self)] += time.thread_time_ns() - start

        return run

    def shape(f: object) -> str:
        assert isinstance(f, KernelLinear)
        return f"linear {f.out_features}x{f.in_features}"

    targets = [
        (KernelLinear, "__call__", shape),
        (Library, "attend", lambda _: "attention"),
        (Library, "rotate_into", lambda _: "rope"),
        (Library, "rms_norm", lambda _: "norm"),
    ]
    with ExitStack() as stack:
        for cls, attr, name in targets:
            stack.enter_context(mock.patch.object(cls, attr, timed(getattr(cls, attr), name)))
        yield


@torch.inference_mode()
def stage_costs(loaded: LoadedModel, context: int, repeats: int) -> dict[int, dict[str, float]]:
    """Per row count of :data:`STAGE_ROWS`, CPU ms of each stage of one forward after
    ``context`` tokens (median of ``repeats``; :data:`REST`: the forward's time outside them)."""
    ids = torch.arange(context + max(STAGE_ROWS)) % 40000 + 100
    cache = new_cache(loaded.model)
    forward(loaded.model, ids[:context], cache, 0, last_only=True)
    spent: collections.Counter[str] = collections.Counter()
    samples: dict[int, dict[str, list[int]]] = {
        n: collections.defaultdict(list) for n in STAGE_ROWS
    }
    with stage_clock(spent):
        for _ in range(repeats):
            for n in STAGE_ROWS:
                spent.clear()
                start = time.thread_time_ns()
                forward(loaded.model, ids[context : context + n], cache, context)
                total = time.thread_time_ns() - start
                rollback(cache, n)
                for stage, ns in spent.items():
                    samples[n][stage].append(ns)
                samples[n][REST].append(total - sum(spent.values()))
                samples[n]["total"].append(total)
    return {
        n: {stage: statistics.median(v) / 1e6 for stage, v in sorted(by.items())}
        for n, by in samples.items()
    }


def print_stages(config: str, stages: dict[int, dict[str, float]]) -> None:
    one, six = stages[STAGE_ROWS[0]], stages[STAGE_ROWS[1]]
    print(f"where the CPU time of a forward goes, {config} (median ms)")
    print(f"{'stage':32s} {'1 row':>8s} {'6 rows':>8s} {'added':>8s}")
    for stage in [*(k for k in one if k not in (REST, "total")), REST, "total"]:
        print(f"{stage:32s} {one[stage]:8.2f} {six[stage]:8.2f} {six[stage] - one[stage]:8.2f}")


def llama_bench(
    bin_dir: Path, rows: tuple[int, ...], context: int, repeats: int, fastest: bool
) -> dict[int, float] | str:
    """llama.cpp's ms per forward of each row count (median of its samples, or the fastest),
    or why not."""
    exe = bin_dir / "llama-bench"
    if not exe.is_file():
        return f"no {exe} (scripts/build-llama-cpp.sh builds it): llama.cpp column skipped"
    cmd = [str(exe), "-m", str(embedded_gguf("smollm2-135m")), "-t", "1", "-n", "0"]
    cmd += ["-p", ",".join(map(str, rows)), "-d", str(context), "-r", str(repeats), "-o", "json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        return f"llama-bench failed ({done.returncode}): {done.stderr.strip()[-300:]}"
    pick = min if fastest else statistics.median
    return {int(t["n_prompt"]): pick(t["samples_ns"]) / 1e6 for t in json.loads(done.stdout)}


def row_costs(args: argparse.Namespace, models: ModelCache) -> dict[str, object]:
    configs = [c.strip() for c in args.row_configs.split(",") if c.strip()]
    baseline = None if args.baseline_kernel is None else baseline_library(args.baseline_kernel)
    loaded = {c: load_row_config(c, models, baseline) for c in configs}
    samples: dict[str, dict[int, list[float]]] = {c: {n: [] for n in ROWS} for c in configs}
    cpu: dict[str, dict[int, list[float]]] = {c: {n: [] for n in ROWS} for c in configs}
    for c in configs:  # warm-up: first-call allocations, cache and RoPE table growth
        timed_rows(loaded[c], args.context, ROWS)
    llama: dict[int, float] | str = "not run"
    for repeat in range(args.row_repeats):
        if repeat == args.row_repeats // 2:
            llama = llama_bench(
                Path(args.llama_cpp_bin), ROWS, args.context, args.row_repeats, args.fastest
            )
        for c in configs:
            for n, (seconds, cpu_s) in timed_rows(loaded[c], args.context, ROWS).items():
                samples[c][n].append(seconds)
                cpu[c][n].append(cpu_s)
    pick = min if args.fastest else statistics.median
    ms = {c: {n: 1000 * pick(v) for n, v in by_n.items()} for c, by_n in samples.items()}
    cpu_ms = {c: {n: 1000 * pick(v) for n, v in by_n.items()} for c, by_n in cpu.items()}
    stat = "fastest" if args.fastest else "median"
    print(f"per-forward ms, {args.context}-token context, 1 thread ({stat} of {args.row_repeats})")
    print(f"{'engine':32s} " + " ".join(f"{f'{n} rows':>8s}" for n in ROWS))
    if isinstance(llama, dict):
        print(f"{'llama.cpp (llama-bench -t 1)':32s} " + " ".join(f"{llama[n]:8.1f}" for n in ROWS))
    else:
        print(llama)
    for c in configs:
        print(f"{'specviz ' + c:32s} " + " ".join(f"{ms[c][n]:8.1f}" for n in ROWS))
    print(f"CPU ms of the same forwards ({stat}; this thread's CPU time)")
    for c in configs:
        print(f"{'specviz ' + c:32s} " + " ".join(f"{cpu_ms[c][n]:8.1f}" for n in ROWS))
    targets = {
        c: {
            "one_row_vs_llama_cpp": ms[c][1] / llama[1] if isinstance(llama, dict) else None,
            "six_rows_vs_one_row": ms[c][6] / ms[c][1],
        }
        for c in configs
    }
    for c, t in targets.items():
        vs = t["one_row_vs_llama_cpp"]
        print(
            f"{c}: one row {'n/a' if vs is None else f'{vs:.2f}x'} llama.cpp's (target <= 1.5), "
            f"6 rows {t['six_rows_vs_one_row']:.2f}x its one row (target <= 1.3)"
        )
    stages = {}
    if args.stages:
        for c in configs:
            lean = lean_of(loaded[c].model)
            if lean is None or lean.kernels is None:
                print(f"{c}: not on specviz's kernel library, no stages")
                continue
            stages[c] = stage_costs(loaded[c], args.context, args.row_repeats)
            print_stages(c, stages[c])
    return {
        "row_ms": ms,
        "row_cpu_ms": cpu_ms,
        "stage_cpu_ms": stages,
        "llama_cpp_row_ms": llama if isinstance(llama, dict) else None,
        "llama_cpp_note": None if isinstance(llama, dict) else llama,
        "row_targets": targets,
        "context": args.context,
        "row_repeats": args.row_repeats,
        "row_statistic": stat,
        "engines": {c: loaded[c].engine_reason or loaded[c].engine for c in configs},
    }


# -- part 2: the decoding loop against transformers' generate() ------------------------------


def pick_prompts() -> list[Prompt]:
    """The first single-turn prompt of each category (copy-heavy and creative alike)."""
    chosen = []
    for category in CATEGORIES:
        chosen.append(
            next(p for p in builtin_prompts() if p.category == category and len(p.turns) == 1)
        )
    return chosen


Rate = tuple[float, float]  # (tokens per wall second, tokens per CPU second of this process)


def specviz_rate(
    config: RunConfig, prompts: list[Prompt], models: ModelCache, record: bool
) -> Rate:
    with tempfile.TemporaryDirectory() as tmp:
        requests = [Request(i, p, "bench") for i, p in enumerate(prompts)]
        cpu = time.process_time()
        summary = run(
            config, requests, Path(tmp) / "run", models=models, progress=False, record_events=record
        )
        cpu = time.process_time() - cpu
    return summary.tokens_per_s, summary.new_tokens / cpu


def generate_rate(
    models: ModelCache, spec: ModelSpec, prompts: list[Prompt], max_new: int, lookup: int | None
) -> Rate:
    loaded = models.get(spec)
    tokens = seconds = cpu = 0.0
    for prompt in prompts:
        ids = loaded.tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt.turns[0]}],
            add_generation_prompt=True,
            return_dict=True,
            return_tensors="pt",
        )["input_ids"]
        extra = {"prompt_lookup_num_tokens": lookup} if lookup else {}
        start, start_cpu = time.perf_counter(), time.process_time()
        with torch.inference_mode():
            out = loaded.model.generate(ids, do_sample=False, max_new_tokens=max_new, **extra)
        seconds += time.perf_counter() - start
        cpu += time.process_time() - start_cpu
        tokens += out.shape[1] - ids.shape[1]
    return tokens / seconds, tokens / cpu


def dtype_methods(
    dtype: str, args: argparse.Namespace, prompts: list[Prompt], models: ModelCache
) -> dict[str, Callable[[], Rate]]:
    """The five measured methods of one dtype, keyed ``dtype: method``."""
    spec = ModelSpec("smollm2-135m", device="cpu", dtype=dtype)
    models.get(spec)
    ar = RunConfig(spec, max_new_tokens=args.max_new_tokens)
    pl = RunConfig(
        spec,
        DrafterConfig("prompt-lookup"),
        PolicyConfig("constant", args.k),
        max_new_tokens=args.max_new_tokens,
    )
    methods: dict[str, Callable[[], Rate]] = {
        "specviz autoregressive": lambda: specviz_rate(ar, prompts, models, record=True),
        "transformers generate greedy": lambda: generate_rate(
            models, spec, prompts, args.max_new_tokens, None
        ),
        "specviz prompt-lookup": lambda: specviz_rate(pl, prompts, models, record=True),
        "transformers prompt-lookup": lambda: generate_rate(
            models, spec, prompts, args.max_new_tokens, args.k
        ),
        "specviz prompt-lookup, recording off": lambda: specviz_rate(
            pl, prompts, models, record=False
        ),
    }
    return {f"{dtype}: {name}": measure for name, measure in methods.items()}


def ratios(m: dict[str, float], dtype: str) -> dict[str, float]:
    def at(name: str) -> float:
        return m[f"{dtype}: {name}"]

    return {
        "ar_vs_transformers": at("specviz autoregressive") / at("transformers generate greedy"),
        "prompt_lookup_vs_transformers": at("specviz prompt-lookup")
        / at("transformers prompt-lookup"),
        "prompt_lookup_vs_ar": at("specviz prompt-lookup") / at("specviz autoregressive"),
        "recording_overhead": 1
        - at("specviz prompt-lookup") / at("specviz prompt-lookup, recording off"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 decodes as fast as 2 here)"
    )
    parser.add_argument("--dtypes", default="float32,bfloat16", help="comma-separated")
    parser.add_argument("--prompts", type=int, default=len(CATEGORIES), help="first N prompts")
    parser.add_argument("--rows-only", action="store_true", help="part 1 only")
    parser.add_argument("--skip-rows", action="store_true", help="part 2 only")
    parser.add_argument("--row-repeats", type=int, default=12)
    parser.add_argument("--row-configs", default=",".join(ROW_CONFIGS), help="dtype/engine,...")
    parser.add_argument("--context", type=int, default=200)
    parser.add_argument(
        "--fastest",
        action="store_true",
        help="per-row costs: the fastest of the repeats instead of the median (both engines; "
        "closer to an idle machine's figure when other work shares the cores)",
    )
    parser.add_argument("--llama-cpp-bin", default=str(LLAMA_CPP_BIN))
    parser.add_argument(
        "--baseline-kernel",
        type=Path,
        help="another version of specviz/lean/bf16_kernels.c, timed as CONFIG+baseline row configs",
    )
    parser.add_argument(
        "--stages",
        action="store_true",
        help="per-row costs: also where a 1- and a 6-row forward's CPU time goes, by stage",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    models = ModelCache()
    rows = {} if args.skip_rows else row_costs(args, models)
    if args.rows_only:
        result = {
            **rows,
            "threads": args.threads,
            "cpu_bf16_flags": list(cpu_bf16_flags()),
            "load_average": os.getloadavg()[0],
        }
        print(json.dumps(result))
        return
    prompts = pick_prompts()[: args.prompts]
    methods: dict[str, Callable[[], Rate]] = {}
    for dtype in dtypes:
        methods |= dtype_methods(dtype, args, prompts, models)
    for dtype in dtypes:  # warm-up: first-call allocations, lazy imports
        methods[f"{dtype}: specviz autoregressive"]()
    rates: dict[str, list[Rate]] = {name: [] for name in methods}
    for _ in range(args.repeats):
        for name, measure in methods.items():
            rates[name].append(measure())
    wall = {name: statistics.median(r[0] for r in values) for name, values in rates.items()}
    cpu = {name: statistics.median(r[1] for r in values) for name, values in rates.items()}
    print(f"{'method':50s} {'tokens/s':>9s} {'tokens/cpu-s':>13s}  tokens/s of each repeat")
    for name, values in rates.items():
        each = ", ".join(f"{v[0]:.2f}" for v in values)
        print(f"{name:50s} {wall[name]:9.2f} {cpu[name]:13.2f}  {each}")
    result: dict[str, object] = {
        **rows,
        "by_dtype": {d: {**ratios(wall, d), "cpu_time_ratios": ratios(cpu, d)} for d in dtypes},
        "tokens_per_s": wall,
        "tokens_per_cpu_s": cpu,
        "prompts": [p.id for p in prompts],
        "max_new_tokens": args.max_new_tokens,
        "repeats": args.repeats,
        "threads": args.threads,
        "cpu_bf16_flags": list(cpu_bf16_flags()),
        "load_average": os.getloadavg()[0],
    }
    if {"float32", "bfloat16"} <= set(dtypes):
        for key, m in (("bf16_vs_float32", wall), ("bf16_vs_float32_cpu", cpu)):
            result[key] = {
                method: m[f"bfloat16: {method}"] / m[f"float32: {method}"]
                for method in ("specviz autoregressive", "specviz prompt-lookup")
            }
    for d in dtypes:
        r = ratios(wall, d)
        print(
            f"{d} (wall): AR vs generate {r['ar_vs_transformers']:.3f}, prompt lookup vs "
            f"generate's {r['prompt_lookup_vs_transformers']:.3f}, prompt lookup vs AR "
            f"{r['prompt_lookup_vs_ar']:.3f}, recording overhead {r['recording_overhead']:.2%}"
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
