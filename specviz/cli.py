"""The ``specviz`` command line: the only place that parses arguments.

Every subcommand turns its arguments into the package's frozen configs and calls one function.
A user error (any :class:`~specviz.errors.SpecvizError`) prints one line and exits with 2.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import io
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from specviz.config import (
    FLAT_KEYS,
    MAX_NEW_TOKENS,
    N_BOOT,
    POLICIES,
    ConfigError,
    DrafterConfig,
    ModelSpec,
    from_table,
)
from specviz.cost import CostModel, curve_model
from specviz.errors import SpecvizError

if TYPE_CHECKING:
    from specviz.config import RunConfig
    from specviz.endpoint.client import EndpointConfig
    from specviz.workloads.request import Request


def _ints(flag: str) -> Callable[[str], tuple[int, ...]]:
    def parse(text: str) -> tuple[int, ...]:
        try:
            return tuple(int(x) for x in text.split(",") if x.strip())
        except ValueError as err:
            raise argparse.ArgumentTypeError(
                f"{flag} takes comma-separated integers, not {text!r}"
            ) from err

    return parse


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"takes comma-separated numbers, not {text!r}") from err


def _cost_flags(args: argparse.Namespace) -> CostModel | None:
    """``--verify-costs``/``--draft-costs`` as the cost model of the run's drafter."""
    if args.verify_costs is None:
        if args.draft_costs is not None:
            raise ConfigError("--draft-costs needs --verify-costs too (or neither, to calibrate)")
        return None
    label = args.drafter_name or args.drafter
    return curve_model(args.verify_costs, args.draft_costs, label, "--verify-costs")


def _names(text: str) -> tuple[str, ...]:
    return tuple(c.strip() for c in text.split(",") if c.strip())


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="decode a workload with one target/drafter/policy; write a run directory"
    )
    _config_flags(p)
    p.add_argument(
        "--workload",
        help="mt-bench | sharegpt (the packaged file) | sharegpt:PATH (any ShareGPT-format .json "
        "file) | question.jsonl / JSONL / CSV / Parquet file | hf:NAME (default: built-in suite)",
    )
    p.add_argument(
        "--sharegpt-mode",
        default="first-turn",
        help="sharegpt[:PATH]: first-turn (vLLM's convention) | context (earlier turns, with their "
        "recorded replies, as context; the last reply generated)",
    )
    p.add_argument("--sharegpt-seed", type=int, default=0, help="sharegpt[:PATH]: shuffle seed")
    p.add_argument("--limit", type=int, help="use the first N prompts (sharegpt: sample N)")
    p.add_argument(
        "--batch-size", type=int, default=1, help="rows decoded together (1: the batch-1 engine)"
    )
    p.add_argument(
        "--batch-composition",
        default="stream",
        help="stream | single-task | mixed (with --batch-size > 1)",
    )
    p.add_argument("--continuous", action="store_true", help="refill finished rows from the queue")
    p.add_argument("--k-mode", default="batch", help="batch (one k per batch) | row (per-row k)")
    _endpoint_flags(p)
    p.add_argument("--out", required=True, type=Path, help="run directory to write")
    p.add_argument(
        "--resume", action="store_true", help="continue a run directory, skipping finished requests"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_run)


def _config_flags(p: argparse.ArgumentParser) -> None:
    """The flags of one run configuration (target, drafter, policy, sampling), shared by
    ``run`` and ``serve``."""
    p.add_argument("--target", required=True, help="hub id, local dir, .gguf file, or smollm2-135m")
    p.add_argument(
        "--drafter",
        default="none",
        help="none | model | prompt-lookup | layer-skip | component-skip | suffix",
    )
    p.add_argument(
        "--drafter-name",
        help="label for the drafter in events and metrics (default: its kind); give two variants "
        "of one kind distinct names to compare them",
    )
    _drafter_flags(p)
    p.add_argument(
        "--k", type=int, default=5, help="draft length (initial k for heuristic policies)"
    )
    p.add_argument(
        "--policy",
        default="constant",
        help=" | ".join(POLICIES),
    )
    p.add_argument(
        "--verify-costs",
        type=_floats,
        help="cost-aware: cost of one target forward over 1..k+1 tokens, e.g. 59,97,116,84 "
        "(the cost model's verify_s; default: measured before the run, recorded in run.json)",
    )
    p.add_argument(
        "--draft-costs",
        type=_floats,
        help="cost-aware: cost of drafting 1..k tokens, in the unit of --verify-costs (default 0; "
        "needs --verify-costs)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=0.4,
        help="confidence policy: stop below this top prob; svip: stop above this sqrt(entropy)",
    )
    p.add_argument("--max-new-tokens", type=int, default=MAX_NEW_TOKENS, help="per turn")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--dtype", default="auto", help="auto | float32 | bfloat16 | float16 | q4")
    p.add_argument(
        "--engine",
        default="auto",
        help="auto | lean | lean-invariant | transformers (docs/engine.md)",
    )
    p.add_argument(
        "--trust-remote-code", action="store_true", help="allow custom model code from the hub"
    )


def _drafter_flags(p: argparse.ArgumentParser) -> None:
    """One ``--KEY`` flag per key of the drafters' flat view (:data:`specviz.config.FLAT_KEYS`):
    its name, type, default and help come from the option fields; a list takes commas, a model
    its name."""
    for key in FLAT_KEYS:
        flag = "--" + key.name.replace("_", "-")
        parsers = {tuple[int, ...]: _ints(flag), tuple[str, ...]: _names, ModelSpec: str}
        parse = parsers.get(key.hint, key.hint)
        p.add_argument(flag, type=parse, default=key.default, help=key.help)


def _drafter_config(args: argparse.Namespace, spec: Callable[[str], ModelSpec]) -> DrafterConfig:
    """The drafter the flags of :func:`_drafter_flags` describe; a model flag names a model."""
    flat = {key.name: getattr(args, key.name) for key in FLAT_KEYS}
    for key in FLAT_KEYS:
        if key.hint is ModelSpec:
            flat[key.name] = spec(flat[key.name]) if flat[key.name] else None
    return from_table(DrafterConfig, {"kind": args.drafter, "name": args.drafter_name, **flat})


def _is_sharegpt(workload: str | None) -> bool:
    """``--workload sharegpt`` (the packaged file) or ``sharegpt:PATH`` (any ShareGPT file)."""
    return workload is not None and (workload == "sharegpt" or workload.startswith("sharegpt:"))


def _sharegpt_prompts(args: argparse.Namespace) -> list:
    """ShareGPT-format traffic sampled the field's way, lengths counted with the target's
    tokenizer (:func:`specviz.workloads.traffic.target_traffic`)."""
    from specviz.workloads.packaged import ShareGPTSource
    from specviz.workloads.sharegpt import ShareGPTSampling
    from specviz.workloads.traffic import target_traffic

    source = ShareGPTSource.parse(args.workload)
    sampling = ShareGPTSampling(args.limit, args.sharegpt_seed, args.sharegpt_mode)
    data, sample = target_traffic(source, sampling, args.target, args.trust_remote_code)
    print(data.describe(), file=sys.stderr)
    print(f"sampled: {sampling.describe()}", file=sys.stderr)
    return sample.prompts


def _run_config(args: argparse.Namespace) -> RunConfig:
    """The run configuration ``_config_flags`` describe."""
    from specviz.config import PolicyConfig, RunConfig, SamplingConfig

    def spec(name: str) -> ModelSpec:
        return ModelSpec(
            name,
            device=args.device,
            dtype=args.dtype,
            trust_remote_code=args.trust_remote_code,
            engine=args.engine,
        )

    return RunConfig(
        target=spec(args.target),
        drafter=_drafter_config(args, spec),
        policy=PolicyConfig(args.policy, args.k, args.threshold, _cost_flags(args)),
        sampling=SamplingConfig(args.temperature, args.top_p),
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
    )


def _cmd_run(args: argparse.Namespace) -> int:
    from specviz.threads import apply_threads
    from specviz.workloads import builtin_prompts, load_prompts
    from specviz.workloads.request import Request

    config = _run_config(args)
    if args.limit is not None and args.limit < 1:
        raise SpecvizError(f"--limit must be >= 1 (got {args.limit})")
    if _is_sharegpt(args.workload):
        prompts = _sharegpt_prompts(args)
    else:
        prompts = load_prompts(args.workload) if args.workload else builtin_prompts()
    if args.limit is not None:
        prompts = prompts[: args.limit]
    mixture = Path(args.workload.removeprefix("sharegpt:")).stem if args.workload else "builtin"
    requests = [Request(i, p, mixture) for i, p in enumerate(prompts)]
    apply_threads(1)  # one decoding process: one core left free (specviz.threads)
    batch_flags = args.batch_composition != "stream" or args.continuous or args.k_mode != "batch"
    if args.batch_size == 1 and batch_flags:
        raise SpecvizError("--batch-composition, --continuous and --k-mode need --batch-size > 1")
    batch = None
    if args.batch_size > 1:
        from specviz.batch import BatchConfig

        batch = BatchConfig(args.batch_size, args.batch_composition, args.continuous, args.k_mode)
    if args.endpoint:
        return _run_endpoint(args, config, requests, batch is not None)
    from specviz.runner import run  # loads torch: not needed to talk to a server

    summary = run(
        config, requests, args.out, batch=batch, resume=args.resume, progress=not args.quiet
    )
    rate = f"{summary.accepted / summary.drafted:.3f}" if summary.drafted else "n/a"
    print(
        f"{summary.run_dir}: {summary.requests_done} requests decoded "
        f"({summary.requests_skipped} already done), {summary.new_tokens} tokens, "
        f"{summary.tokens_per_s:.1f} tokens/s, acceptance {rate}"
    )
    return 0


def _endpoint_flags(p: argparse.ArgumentParser, many: bool = False) -> None:
    """Sending the workload to OpenAI-compatible servers instead (docs/serving.md); a study
    takes one per drafter (``many``)."""
    if many:
        p.add_argument(
            "--endpoint",
            action="append",
            help="URL, or NAME=URL per drafter name (baseline=URL for the baseline), repeatable: "
            "send each condition to its OpenAI-compatible server (models: the served names)",
        )
    else:
        p.add_argument(
            "--endpoint",
            help="an OpenAI-compatible server (http://HOST:PORT[/v1]): send the workload as chat "
            "completions and record what the server reports (--target: the served model name)",
        )
    p.add_argument("--concurrency", type=int, default=1, help="--endpoint: requests in flight")
    p.add_argument(
        "--request-rate",
        type=float,
        default=float("inf"),
        help="--endpoint: open-loop arrivals per second (Poisson; default inf: all at once)",
    )
    p.add_argument(
        "--request-timeout",
        type=float,
        default=120.0,
        help="--endpoint: seconds of silence (connect, first byte, or inside a stream) before an "
        "attempt fails",
    )
    p.add_argument("--retries", type=int, default=2, help="--endpoint: retries per turn")


def _named_url(text: str) -> tuple[str, str]:
    """``NAME=URL`` as (NAME, URL); a bare URL as ("", URL)."""
    name, sep, url = text.partition("=")
    if sep and not name.startswith(("http://", "https://")):
        return name, url
    return "", text


def _endpoint(args: argparse.Namespace, url: str) -> EndpointConfig:
    import os

    from specviz.endpoint.client import EndpointConfig

    return EndpointConfig(
        url,
        concurrency=args.concurrency,
        request_rate=args.request_rate,
        connect_timeout_s=min(10.0, args.request_timeout),
        read_timeout_s=args.request_timeout,
        retries=args.retries,
        api_key=os.environ.get("OPENAI_API_KEY"),
    )


def _run_endpoint(
    args: argparse.Namespace, config: RunConfig, requests: list[Request], batched: bool
) -> int:
    from specviz.endpoint.run import run_endpoint

    if batched:
        raise SpecvizError("--endpoint runs are batched by the server: drop --batch-size")
    summary = run_endpoint(
        config,
        requests,
        args.out,
        _endpoint(args, args.endpoint),
        resume=args.resume,
        progress=not args.quiet,
    )
    rate = f"{summary.accepted / summary.drafted:.3f}" if summary.drafted else "n/a"
    print(
        f"{summary.run_dir}: {summary.requests_done} requests sent to {args.endpoint} "
        f"({summary.requests_skipped} already done), {summary.new_tokens} tokens, "
        f"{summary.tokens_per_s:.1f} tokens/s, acceptance {rate} (server-measured)"
    )
    if summary.metrics_source is None and config.drafter.kind != "none":
        print(
            "the server reported no speculative-decoding metrics (vLLM: start it with "
            "--per-request-spec-decode-metrics summary); timings and tokens are recorded"
        )
    return 0


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="serve the engine behind an OpenAI-compatible chat-completions API"
    )
    _config_flags(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--per-request-spec-decode-metrics",
        default="summary",
        help="none | summary | detailed (adds per-step counts), as vLLM's flag",
    )
    p.set_defaults(func=_cmd_serve)


def _cmd_serve(args: argparse.Namespace) -> int:
    from specviz.serve.app import ServeConfig, serve
    from specviz.serve.engine import ServeEngine

    config = _run_config(args)
    options = ServeConfig(
        config.target.name, args.host, args.port, args.per_request_spec_decode_metrics
    )
    serve(ServeEngine(config), options)
    return 0


def _add_study(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("study", help="run every condition of a TOML study file plus its baseline")
    p.add_argument("file", type=Path, help="study file (TOML), e.g. studies/default.toml")
    p.add_argument("--out", type=Path, help="study directory (default: results/<study name>)")
    p.add_argument("--shard", help="run slice i of n (e.g. 1/4) of the study's units")
    p.add_argument(
        "--resume", action="store_true", help="continue, skipping finished units/requests"
    )
    p.add_argument("--executor", default="local", help="local | ray")
    p.add_argument(
        "--plan",
        action="store_true",
        help="print the plan (runs, requests, token budget, estimate, skipped combinations, "
        "and with --prior each multitask term's expected half-width) and exit",
    )
    p.add_argument(
        "--prior",
        type=Path,
        help="a previous study (or a pilot) whose per-task spread sizes the plan: the expected "
        "95%% half-width of each multitask term and the requests that reach [power] target_pct",
    )
    p.add_argument(
        "--yes",
        action="store_true",
        help="start a large study (over 1,000 runs or 5,000,000 budgeted tokens) without asking",
    )
    _endpoint_flags(p, many=True)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_study)


def _cmd_study(args: argparse.Namespace) -> int:
    from specviz.study import StudyError, default_out_dir, load_study, parse_shard, run_study
    from specviz.study.planning import plan_text, power_plan, power_text, study_plan
    from specviz.study.units import plan_study, shard_units

    study = load_study(args.file)
    out = args.out or default_out_dir(study)
    shard = parse_shard(args.shard) if args.shard else None
    plan = plan_study(study)
    counts = study_plan(plan, shard_units(plan.units, shard), out)
    power = power_plan(plan.units, study.power, args.prior)  # the whole study: every shard's
    print(plan_text(counts), flush=True)
    print(power_text(power), flush=True)
    if args.plan:
        return 0
    if counts.large and not args.yes:
        raise StudyError(
            f"{args.file} plans {counts.runs:,} runs and up to {counts.token_budget:,} new "
            "tokens: pass --yes to start it (or --plan to print the plan only)"
        )
    endpoints = None
    if args.endpoint:
        endpoints = {name: _endpoint(args, url) for name, url in map(_named_url, args.endpoint)}
    outcome = run_study(
        study,
        out,
        shard=shard,
        resume=args.resume,
        executor=args.executor,
        progress=not args.quiet,
        plan=plan,
        endpoints=endpoints,
    )
    state = "complete" if outcome.complete else "incomplete (other shards pending)"
    print(
        f"{outcome.out_dir}: {outcome.units_run} units run, {outcome.units_already_done} already "
        f"done, {outcome.units_in_shard}/{outcome.units_total} in this shard; study {state}"
    )
    return 0


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="execute the notebooks and write one offline HTML report; "
        "with two directories, a comparison of the two side by side",
    )
    p.add_argument(
        "source",
        type=Path,
        nargs="+",
        help="a run or study directory; or two (A B) to compare them on the same axes",
    )
    p.add_argument(
        "--out",
        required=True,
        type=Path,
        help="HTML file to write (new, a report specviz wrote, a character device or a pipe)",
    )
    _force(p)
    p.add_argument(
        "--category", action="append", default=[], help="only this task category (repeatable)"
    )
    p.add_argument("--kernel", help="Jupyter kernel name (default: specviz, else this interpreter)")
    p.add_argument("--n-boot", type=int, default=N_BOOT, help="bootstrap resamples per interval")
    p.add_argument(
        "--cell-timeout", type=int, default=600, help="seconds one notebook cell may run"
    )
    p.add_argument(
        "--timeout",
        type=int,
        default=1800,
        help="seconds the whole report execution may take, kernel start included; "
        "a stalled kernel is killed and retried once",
    )
    _allow_incomplete(p, "report an unfinished run or study (the page says its data is partial)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_report)


def _server_measured(source: Path) -> bool:
    from specviz.endpoint.summary import is_server_measured
    from specviz.rundir import find_run_dirs

    find_run_dirs(source)  # a missing or empty source is named by the command's own check
    return is_server_measured(source)


def _cmd_report(args: argparse.Namespace) -> int:
    from specviz.report import build_report
    from specviz.report.execute import ExecutionLimits
    from specviz.threads import export_threads

    export_threads(1)  # the kernel inherits it (specviz.threads)
    if len(args.source) > 1:
        for source in args.source:
            if _server_measured(source):
                raise SpecvizError(
                    f"{source} is server-measured (specviz run/study --endpoint): a comparison "
                    "is built on per-round events; report each directory on its own"
                )
        from specviz.report.compare import build_comparison

        path = build_comparison(
            args.source,
            args.out,
            categories=args.category,
            n_boot=args.n_boot,
            progress=not args.quiet,
            allow_incomplete=args.allow_incomplete,
            force=args.force,
        )
        print(path, file=_status_stream(args.out))
        return 0
    path = build_report(
        args.source[0],
        args.out,
        categories=args.category,
        kernel=args.kernel,
        n_boot=args.n_boot,
        limits=ExecutionLimits(cell_s=args.cell_timeout, total_s=args.timeout),
        progress=not args.quiet,
        allow_incomplete=args.allow_incomplete,
        force=args.force,
    )
    print(path, file=_status_stream(args.out))
    return 0


def _status_stream(out: Path) -> TextIO:
    """Where a command says what it wrote: stderr when ``out`` is a device or pipe (it may be
    stdout itself, whose content must stay the file's), else stdout."""
    from specviz.rundir import writes_through

    return sys.stderr if writes_through(out) else sys.stdout


def _force(p: argparse.ArgumentParser) -> None:
    """The one flag that lets a command replace an existing file specviz did not write."""
    p.add_argument(
        "--force",
        action="store_true",
        help="replace --out even if it is an existing file specviz did not write",
    )


def _allow_incomplete(p: argparse.ArgumentParser, what: str) -> None:
    """The one flag that lets a command read unfinished runs (``what``: what it then does)."""
    p.add_argument("--allow-incomplete", action="store_true", help=what)


def _add_summary(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "summary", help="the headline and decomposition of a study or run directory (no report)"
    )
    p.add_argument("source", type=Path, help="a run or study directory")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument(
        "--all",
        action="store_true",
        help="print every term and table (default: one screen: the headline, its regime, the "
        "resolved terms, the best configuration per stream and what is unresolved)",
    )
    p.add_argument("--n-boot", type=int, default=N_BOOT, help="bootstrap resamples per interval")
    _allow_incomplete(
        p, "summarise the finished requests of unfinished runs (the output says it is partial)"
    )
    p.set_defaults(func=_cmd_summary)


def _cmd_summary(args: argparse.Namespace) -> int:
    import json

    from specviz.report.answer import study_answer
    from specviz.report.data import load_runs
    from specviz.report.summary import answer_text, screen_text
    from specviz.rundir import refuse_unfinished

    if args.n_boot < 100:
        raise SpecvizError(f"--n-boot must be >= 100 for stable intervals (got {args.n_boot})")
    unfinished = refuse_unfinished(args.source, args.allow_incomplete)
    if _server_measured(args.source):
        from specviz.endpoint.summary import server_summary, summary_text

        summary = server_summary(args.source) | {"unfinished": unfinished}
        print(json.dumps(summary) if args.json else summary_text(summary))
        return 0
    answer = study_answer(load_runs(args.source, require_baseline=False), n_boot=args.n_boot)
    answer["unfinished"] = unfinished
    if args.json:
        print(json.dumps(answer))
    else:
        if unfinished:
            print(f"Partial data: {len(unfinished)} run(s) unfinished ({', '.join(unfinished)}).")
        print(answer_text(answer) if args.all else screen_text(answer))
    return 0


def _add_export_specbench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export-specbench", help="write a run in Spec-Bench's answer format (JSONL)")
    p.add_argument("run_dir", type=Path, help="a run directory")
    p.add_argument(
        "--out",
        required=True,
        type=Path,
        help="JSONL file to write (new, an export specviz wrote, a character device or a pipe)",
    )
    _force(p)
    _allow_incomplete(p, "export the finished requests of an unfinished run")
    p.set_defaults(func=_cmd_export_specbench)


def _cmd_export_specbench(args: argparse.Namespace) -> int:
    from specviz.rundir import unfinished_runs
    from specviz.specbench import export_specbench

    n = export_specbench(
        args.run_dir, args.out, allow_incomplete=args.allow_incomplete, force=args.force
    )
    partial = " (partial: the run is unfinished)" if unfinished_runs(args.run_dir) else ""
    print(f"{args.out}: {n} answers in Spec-Bench format{partial}", file=_status_stream(args.out))
    return 0


def _add_traffic_shares(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "traffic-shares",
        help="label every ShareGPT conversation with an MT-Bench category; write the shares",
    )
    p.add_argument(
        "--workload",
        default="sharegpt",
        help="sharegpt (the packaged file, default) | sharegpt:PATH (any ShareGPT-format file)",
    )
    p.add_argument("--out", required=True, type=Path, help="JSON file to write")
    p.set_defaults(func=_cmd_traffic_shares)


def _cmd_traffic_shares(args: argparse.Namespace) -> int:
    import json

    from specviz.workloads.packaged import ShareGPTSource
    from specviz.workloads.sharegpt import read_conversations
    from specviz.workloads.traffic import measure_shares

    source = ShareGPTSource.parse(args.workload)
    data = read_conversations(source.file(), progress=True)
    print(data.describe(), file=sys.stderr)
    shares = measure_shares(data, source.version())
    args.out.write_text(json.dumps(shares.to_dict(), indent=2) + "\n")
    for s in shares.shares:
        print(f"{s.label:12s} {s.share:6.1%}  [{s.low:.1%}, {s.high:.1%}]  ({s.count})")
    print(f"{args.out}: shares of {shares.labelled:,} conversations")
    return 0


def _add_reprice(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reprice",
        help="price a study's recorded rounds with another engine's cost curve (llama-bench)",
    )
    p.add_argument("source", type=Path, help="a study or run directory (in-process, greedy)")
    p.add_argument(
        "--cost-curve",
        required=True,
        type=Path,
        help="llama-bench output (-o json, jsonl or md), e.g. llama-bench -o json -t 1 "
        "-p 1,2,3,4,5,6,7,8 -n 0 -d 200 -m MODEL.gguf",
    )
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of text")
    p.add_argument("--n-boot", type=int, default=N_BOOT, help="bootstrap resamples per interval")
    p.set_defaults(func=_cmd_reprice)


def _cmd_reprice(args: argparse.Namespace) -> int:
    import json

    from specviz.llama_bench import priced_speedups, priced_text

    if args.n_boot < 100:
        raise SpecvizError(f"--n-boot must be >= 100 for stable intervals (got {args.n_boot})")
    if _server_measured(args.source):
        raise SpecvizError(
            f"{args.source} is server-measured: it has no per-round events to price (reprice an "
            "in-process study)"
        )
    table = priced_speedups(args.source, args.cost_curve, args.n_boot)
    print(json.dumps(table.to_dicts()) if args.json else priced_text(table, args.cost_curve))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="specviz", description="Instrumented speculative decoding, single-task vs multitask."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_run,
    _add_serve,
    _add_study,
    _add_report,
    _add_summary,
    _add_export_specbench,
    _add_traffic_shares,
    _add_reprice,
]


# write errors of the machine, never of specviz: a full disk, a quota, a file-size limit
_OUTPUT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush of what a closed pipe or full
    disk refused neither fails again nor prints a second message."""
    with contextlib.suppress(OSError, ValueError, AttributeError, io.UnsupportedOperation):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = int(args.func(args))
        sys.stdout.flush()  # a closed pipe or a full disk shows here, not at exit
        return status
    except BrokenPipeError:
        _silence_stdout()
        return 128 + signal.SIGPIPE  # what a shell reports for a command a closed pipe stopped
    except SpecvizError as err:
        print(f"specviz {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.errno not in _OUTPUT_ERRNOS:
            raise
        _silence_stdout()
        print(
            f"specviz {args.command}: error: cannot write output ({err.strerror}): free some "
            "space, raise the limit, or write elsewhere",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(
            f"specviz {args.command}: interrupted; finished requests are saved (--resume continues)",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
