"""A run against an OpenAI-compatible server: the same request stream, sent as chat completions,
written in the run-directory format and marked as server-measured.

``run_endpoint(config, requests, out, endpoint)`` is a session of the run scaffold that
:func:`specviz.runner.run` uses (:mod:`specviz.rundir.scaffold`): one configuration (here a
*label* of what the server runs: its model name is ``config.target.name``, the drafter, policy
and k describe the server's speculation), one workload, a crash-safe directory that
``--resume`` continues. Requests arrive open-loop (Poisson at ``request_rate``, the seed is
the run's) with at most ``concurrency`` in flight; each request's turns go one after another,
every later turn carrying the server's own earlier answers (as in-process runs do).

What lands where:

- ``requests.parquet``: one row per request, from the server's usage and the client's clock:
  ``new_tokens`` (usage), ``ttft_s`` (first content of the first turn), ``wall_s``/``turn_wall_s``
  (first byte sent to the end of each turn's stream), ``drafted``/``accepted`` (the server's
  counts), ``rounds`` (forward passes, *derived*: per turn 1 prefill + the spec steps + the
  tokens no spec step accounts for, one step each), ``latency_s`` (from sending the first turn to
  the end of the last). ``prefill_s``, ``draft_s`` and ``verify_s`` are null: a server does not
  report them.
- ``events.parquet``: only with per-step counts (vLLM ``detailed``): per turn a prefill row and,
  for every spec step, its drafted positions (accepted, verified as verification would have) and
  the target's row; token ids, probabilities and timings are null. Without them it has no rows.
- ``server.parquet`` (this module): per request the server's figures as reported
  (``metrics_source`` vllm | sglang | llama.cpp | null when the server gives none, the acceptance
  histogram, steps, counts), each turn's time to first token and inter-chunk gaps, and the
  errors of attempts that were retried.
- ``run.json``: ``measured_by: "server"`` (part of the run's identity) and ``endpoint`` (URL,
  concurrency, rate, limits; never the API key), ``server_metrics``: what the server reported.
"""

from __future__ import annotations

import asyncio
import math
import platform
import random
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import astuple, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

import specviz
from specviz.chat import conversation
from specviz.config import RunConfig
from specviz.endpoint.client import EndpointConfig, TurnResult, check_models, send_turn
from specviz.endpoint.parse import ServerSpec
from specviz.recorder import (
    UNBATCHED_EVENT_LABELS,
    UNBATCHED_LABELS,
    event_layout,
    request_labels,
    run_labels,
)
from specviz.rundir import (
    EVENT_SCHEMA,
    REQUEST_SCHEMA,
    RUN_FILE,
    EndpointSummary,
    Finished,
    RunDirError,
    RunWriter,
    damaged,
    opened_run,
    read_run_meta,
    record_run,
    run_identity,
    start_run,
    table_files,
    write_json,
)
from specviz.workloads.request import Request, request_seed

SERVER_FILE = "server.parquet"
MEASURED_BY = "server"
SERVER_SCHEMA = pl.Schema(
    {
        "request_id": pl.String,
        "request_index": pl.Int32,
        "metrics_source": pl.String,
        "acceptance_histogram": pl.List(pl.Int64),
        "num_spec_steps": pl.Int64,
        "num_accepted_draft_tokens": pl.Int64,
        "num_draft_tokens": pl.Int64,
        "num_spec_tokens": pl.Int64,
        "turn_ttft_s": pl.List(pl.Float64),
        "turn_itl_s": pl.List(pl.List(pl.Float64)),
        "turn_finish_reason": pl.List(pl.String),
        "retried_errors": pl.List(pl.String),
    }
)
FINISH = {"stop": "eos", "length": "length"}  # OpenAI's finish reasons in the schema's words


@dataclass(frozen=True)
class Conversation:
    """A request's turns as the server answered them, and the retried attempts' errors."""

    request: Request
    turns: tuple[TurnResult, ...]
    latency_s: float
    errors: tuple[str, ...]


class EndpointWriter(RunWriter):
    """A run writer that also keeps ``server.parquet``: one part per request, which
    :func:`run_endpoint` flushes before the scaffold writes the request row that marks it done."""

    TABLES = (*RunWriter.TABLES, (SERVER_FILE, SERVER_SCHEMA, ("request_id",), ("request_index",)))


def read_server_table(run_dir: str | Path) -> pl.DataFrame:
    """``server.parquet`` of a server-measured run (its leftover parts too)."""
    root = Path(run_dir)
    files = table_files(root, SERVER_FILE)
    if not files:
        raise RunDirError(f"{root} holds no {SERVER_FILE}: it is not a server-measured run")
    for f in files:
        try:
            pl.read_parquet_schema(f)
        except Exception as err:  # polars raises several error types for unreadable files
            raise damaged(f, err) from err
    return pl.read_parquet(files).unique("request_id", keep="first").sort("request_index")


def endpoint_identity(config: RunConfig, requests: Sequence[Request]) -> dict[str, Any]:
    """A server-measured run's identity: its configuration, workload and ``measured_by``."""
    return run_identity(config, requests, None) | {"measured_by": MEASURED_BY}


def run_endpoint(
    config: RunConfig,
    requests: Sequence[Request],
    out_dir: Path,
    endpoint: EndpointConfig,
    *,
    resume: bool = False,
    progress: bool = True,
) -> EndpointSummary:
    """Send ``requests`` to ``endpoint``; write ``out_dir``; return totals.

    Refuses, before writing anything, a directory holding another run and an endpoint that cannot
    be reached or does not serve ``config.target.name``. A request whose turn fails after its
    retries stops the run (EndpointError): the requests finished so far are kept, the failed one
    is not written, and ``resume`` continues. A session of the one run scaffold
    (:mod:`specviz.rundir.scaffold`): only ``run.json``, ``server.parquet`` and the sending are
    this module's.
    """
    out_dir = Path(out_dir)
    identity = endpoint_identity(config, requests)
    check = partial(check_models, endpoint, config.target.name)
    with opened_run(out_dir, identity, requests, resume, check):
        meta = _begin(out_dir, identity, config, endpoint, requests)
        writer = EndpointWriter(out_dir)
        labels = run_labels(meta["run_id"], config)

        def send(done: set[str]) -> Iterator[Finished]:
            """Each conversation as it finishes, its server part flushed first; ``run_wall_s``:
            the client's clock since the first request."""
            start = time.perf_counter()
            todo = [r for r in requests if r.id not in done]
            for result in _conversations(config, endpoint, todo):
                server, events, row = conversation_rows(result, config, labels)
                writer.append_part(SERVER_FILE, server, int(row["request_index"][0]))
                yield Finished(events, row, time.perf_counter() - start)

        summary = record_run(
            writer, meta, requests, send, progress, lambda: {"server_metrics": _sources(out_dir)}
        )
    return EndpointSummary(*astuple(summary), meta["server_metrics"])


def _sources(out_dir: Path) -> str | None:
    """What the server reported over the whole run: vllm, sglang, llama.cpp, or None (no
    figures)."""
    sources = read_server_table(out_dir)["metrics_source"].drop_nulls().unique().to_list()
    return ",".join(sorted(sources)) or None


def _begin(
    out_dir: Path,
    identity: dict[str, Any],
    config: RunConfig,
    endpoint: EndpointConfig,
    requests: Sequence[Request],
) -> dict[str, Any]:
    """``run.json`` of a server-measured run (:func:`specviz.rundir.start_run`, the one writer);
    a resumed run keeps its metadata and records the endpoint it resumes against."""
    if (out_dir / RUN_FILE).is_file():
        meta = read_run_meta(out_dir) | {"endpoint": endpoint.to_dict()}
        write_json(out_dir / RUN_FILE, meta)
        return meta
    provenance = {
        "endpoint": endpoint.to_dict(),
        "models": {"target": {"name": config.target.name, "source": endpoint.base}},
        "versions": {"specviz": specviz.__version__, "python": platform.python_version()},
        "hardware": {"platform": platform.platform(), "note": "the client's; see endpoint"},
    }
    return start_run(out_dir, identity, requests, config.seed, provenance)


def arrival_times(n: int, rate: float, seed: int) -> list[float]:
    """Open-loop arrival offsets (seconds): a Poisson process at ``rate`` per second, seeded;
    all zero for an infinite rate (everything arrives at once)."""
    if math.isinf(rate):
        return [0.0] * n
    rng = random.Random(seed)
    t, out = 0.0, []
    for _ in range(n):
        out.append(t)
        t += rng.expovariate(rate)
    return out


def _conversations(
    config: RunConfig, endpoint: EndpointConfig, todo: Sequence[Request]
) -> Iterator[Conversation]:
    """:func:`_drive`'s conversations, one at a time, to a synchronous reader (the scaffold).
    The event loop runs while the reader waits for the next one: requests in flight do not
    advance while it writes. Leaving early cancels them (closing the loop closes ``_drive``)."""
    with asyncio.Runner() as runner:  # as asyncio.run: Ctrl-C cancels, closing ends the rest
        stream = _drive(config, endpoint, todo)
        while (result := runner.run(_next(stream))) is not None:
            yield result


async def _next(stream: AsyncIterator[Conversation]) -> Conversation | None:
    """The next conversation or None, asked inside the loop (so closing it closes ``stream``)."""
    return await anext(stream, None)


async def _drive(
    config: RunConfig, endpoint: EndpointConfig, todo: Sequence[Request]
) -> AsyncIterator[Conversation]:
    """Send every request at its arrival time, at most ``concurrency`` at once; yield each
    finished conversation (in completion order). The first failure cancels the requests still
    in flight and is raised."""
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(endpoint.concurrency)
    start = loop.time()
    async with endpoint.client() as client:

        async def one(request: Request, at: float) -> Conversation:
            await asyncio.sleep(max(0.0, start + at - loop.time()))
            async with slots:
                return await _converse(client, config, endpoint, request)

        offsets = arrival_times(len(todo), endpoint.request_rate, config.seed)
        tasks = [asyncio.create_task(one(r, at)) for r, at in zip(todo, offsets, strict=True)]
        try:
            for next_done in asyncio.as_completed(tasks):
                yield await next_done
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def _converse(
    client: Any, config: RunConfig, endpoint: EndpointConfig, request: Request
) -> Conversation:
    """Every turn of ``request``, each after the server's answer to the one before."""
    start = time.perf_counter()
    answers: list[str] = []
    turns: list[TurnResult] = []
    errors: list[str] = []
    seed = request_seed(config.seed, request)
    for i in range(len(request.prompt.turns)):
        messages = conversation(request.prompt.turns[: i + 1], answers)
        result = await send_turn(
            client,
            endpoint,
            config.target.name,
            messages,
            config.max_new_tokens,
            config.sampling,
            seed,
            request.prompt.category,
            errors,
        )
        turns.append(result)
        answers.append(result.text)
    return Conversation(request, tuple(turns), time.perf_counter() - start, tuple(errors))


# -- rows ---------------------------------------------------------------------------------


def turn_rounds(turn: TurnResult) -> int | None:
    """Forward passes of one turn, derived from the server's counts: 1 prefill, every spec step,
    and one step for each completion token no spec step accounts for (a spec step adds its
    accepted drafts + 1). Without the number of spec steps (llama.cpp) the same count is
    tokens - accepted (every decode pass adds its accepted drafts + 1, the prefill one token).
    Without speculative figures: one pass per token when the server does not speculate, else
    unknown (None)."""
    tokens = turn.usage.completion_tokens if turn.usage else None
    if tokens is None:
        return None
    if turn.spec is None:
        return tokens
    if turn.spec.steps is None:
        return max(1, tokens - turn.spec.accepted)
    return 1 + turn.spec.steps + max(0, tokens - 1 - turn.spec.steps - turn.spec.accepted)


def _sum(values: Sequence[int | None]) -> int | None:
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def _spec(turns: Sequence[TurnResult]) -> ServerSpec | None:
    specs = [t.spec for t in turns if t.spec is not None]
    if not specs:
        return None
    total = specs[0]
    for more in specs[1:]:
        total = total + more
    return total


def conversation_rows(
    result: Conversation, config: RunConfig, labels: dict[str, Any]
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """The server, events and request rows of one finished conversation."""
    shared = request_labels(result.request, labels | UNBATCHED_LABELS)
    turns = result.turns
    spec = _spec(turns)
    new_tokens = [t.usage.completion_tokens if t.usage else None for t in turns]
    prompt_tokens = [t.usage.prompt_tokens if t.usage else None for t in turns]
    rounds = [turn_rounds(t) for t in turns] if config.drafter.kind == "none" or spec else None
    if config.drafter.kind == "none" and spec is None:
        drafted, accepted = 0, 0
    else:
        drafted = spec.drafted if spec else None
        accepted = spec.accepted if spec else None
    row = {
        **shared,
        "k": config.k_label,
        "drafter_kind": config.drafter.kind,
        "draft": config.drafter.draft.name if config.drafter.draft else None,
        "temperature": config.sampling.temperature,
        "n_turns": len(turns),
        "prompt_tokens": prompt_tokens[0],
        "new_tokens": _sum(new_tokens),
        "rounds": _sum(rounds) if rounds else None,
        "drafted": drafted,
        "accepted": accepted,
        "wall_s": sum(t.wall_s for t in turns),
        "ttft_s": turns[0].ttft_s,
        "prefill_s": None,
        "draft_s": None,
        "verify_s": None,
        "finish_reason": FINISH.get(turns[-1].finish_reason or "", turns[-1].finish_reason),
        "prompt_turns": list(result.request.prompt.turns),
        "output_text": "\n\n".join(t.text for t in turns),
        "output_turns": [t.text for t in turns],
        "turn_new_tokens": new_tokens,
        "turn_wall_s": [t.wall_s for t in turns],
        "turn_rounds": rounds,
        "turn_prompt_tokens": prompt_tokens,
        "latency_s": result.latency_s,
    }
    server = {
        "request_id": shared["request_id"],
        "request_index": shared["request_index"],
        "metrics_source": spec.source if spec else None,
        # no histogram reported (llama.cpp): null, not an empty one
        "acceptance_histogram": list(spec.histogram) if spec and spec.histogram else None,
        "num_spec_steps": spec.steps if spec else None,
        "num_accepted_draft_tokens": spec.accepted if spec else None,
        "num_draft_tokens": spec.drafted if spec else None,
        "num_spec_tokens": spec.spec_tokens if spec else None,
        "turn_ttft_s": [t.ttft_s for t in turns],
        "turn_itl_s": [list(t.itl_s) for t in turns],
        "turn_finish_reason": [t.finish_reason for t in turns],
        "retried_errors": list(result.errors),
    }
    steps = step_events(turns, config)
    data: dict[str, list[Any]] = {name: [None] * steps.height for name in EVENT_SCHEMA.names()}
    data |= {k: [v] * steps.height for k, v in (shared | UNBATCHED_EVENT_LABELS).items()}
    data |= steps.to_dict(as_series=False)
    return (
        pl.DataFrame([server], schema=SERVER_SCHEMA),
        pl.DataFrame(data, schema=EVENT_SCHEMA, strict=False),
        pl.DataFrame([row], schema=REQUEST_SCHEMA, strict=False),
    )


def step_events(turns: Sequence[TurnResult], config: RunConfig) -> pl.DataFrame:
    """Event rows from per-step counts (vLLM ``detailed``), laid out by
    :func:`~specviz.recorder.event_layout`: per turn a prefill round (nothing drafted, the
    target's one token), then one round per spec step with its drafted and accepted counts,
    emitting the accepted drafts and the target's token. ``k`` is the larger of the policy's k
    and the step's drafted count (a server may draft more than the run's label says). A server
    measures no round's seconds: ``draft_s`` and ``verify_s`` are null. No rows unless every
    turn has per-step counts (a request's rows hold all its rounds or none)."""
    rounds: list[tuple[int, bool, int, int, int]] = []  # turn, prefill, k, drafted, accepted
    for turn_no, turn in enumerate(turns):
        spec = turn.spec
        if spec is None or spec.per_step_accepted is None or spec.per_step_drafted is None:
            rounds = []
            break
        rounds.append((turn_no, True, 0, 0, 0))
        for a, d in zip(spec.per_step_accepted, spec.per_step_drafted, strict=True):
            rounds.append((turn_no, False, max(config.policy.k, d), d, a))
    turn_no, prefill, k, n_drafted, n_accepted = np.array(rounds, dtype=np.int64).reshape(-1, 5).T
    return event_layout(
        turn=turn_no,
        round_index=np.arange(turn_no.size),
        prefill=prefill,
        k=k,
        n_drafted=n_drafted,
        n_accepted=n_accepted,
        n_emitted=n_accepted + 1,  # the accepted drafts and the target's token
        draft_s=None,
        verify_s=None,
    )
