"""Runs decoded together (one lane each, rows verified in one batched forward) give each run
exactly the rounds it gets alone: float32, greedy, with stateful drafters and policies."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from engine_helpers import MODELS, PROMPTS, decode

from specviz.batch.decoder import Job, RowTurnEnd, Step, StepPrefill
from specviz.batch.lanes import Lane, LaneDecoder, LaneFree
from specviz.config import DrafterConfig, ModelSpec, PolicyConfig, SamplingConfig
from specviz.cost import CostModel
from specviz.drafter_factory import build_drafter
from specviz.engine import Decoder
from specviz.forward import new_cache
from specviz.policies import build_policy
from specviz.records import Round
from specviz.workloads.prompt import Prompt

MAX_NEW = 24
FIXED_COSTS = CostModel(verify_s=(1.0, 1.05, 1.1, 1.2, 1.3, 1.45), draft_s={"suffix": (0.0,)})
STREAM = [
    *PROMPTS,
    Prompt("again", "extraction", ("Copy this exactly: the dog sat on the log. the dog sat.",)),
    PROMPTS[2],
    Prompt("story", "writing", ("Tell me a story about a cat.",)),
]


@dataclass(frozen=True)
class RunSpec:
    name: str
    drafter: DrafterConfig
    policy: PolicyConfig
    stream: tuple[Prompt, ...]


def run_specs(draft_dir: Path) -> list[RunSpec]:
    stream = tuple(STREAM)
    mixed = tuple(reversed(STREAM))
    suffix = DrafterConfig("suffix")
    return [
        RunSpec("baseline", DrafterConfig(), PolicyConfig(), stream),
        RunSpec("suffix-shared-heuristic", suffix, PolicyConfig("heuristic", 3), stream),
        RunSpec(
            "suffix-cost-aware",
            suffix,
            PolicyConfig("cost-aware", 5, cost_model=FIXED_COSTS),
            mixed,
        ),
        RunSpec(
            "suffix-task-per-task",
            DrafterConfig("suffix", partition="task"),
            PolicyConfig("heuristic-per-task", 4),
            mixed,
        ),
        RunSpec(
            "lookup-constant", DrafterConfig("prompt-lookup"), PolicyConfig("constant", 4), stream
        ),
        RunSpec(
            "model-heuristic",
            DrafterConfig("model", draft=ModelSpec(str(draft_dir))),
            PolicyConfig("heuristic", 2),
            mixed,
        ),
    ]


def shape(rounds: list[Round]) -> list[tuple[object, ...]]:
    """What a round decides: its k, drafts, verdict, emitted tokens, finish and shadow token
    (probabilities are compared apart: a shared forward may differ from a one-row forward in
    the last bits of a logit, docs/batching.md)."""
    return [
        (r.turn, r.index, r.prefill, r.k, r.draft, r.target, r.n_accepted, r.n_emitted, r.finish,
         r.shadow)
        for r in rounds
    ]  # fmt: skip


def probabilities(rounds: list[Round]) -> list[float]:
    return [x for r in rounds for x in (*r.p, r.p_next)]


def target_spec(target_dir: Path, engine: str) -> ModelSpec:
    """The target: float32 on the default engine, or bf16 on lean-invariant."""
    if engine == "lean-invariant":
        return ModelSpec(str(target_dir), device="cpu", dtype="bfloat16", engine=engine)
    return ModelSpec(str(target_dir))


def alone(target_spec: ModelSpec, spec: RunSpec) -> list[list[Round]]:
    """Each request's rounds, the run decoded by the batch-size-1 engine."""
    target = MODELS.get(target_spec)
    cache = new_cache(target.model)
    generator = torch.Generator(device=target.device)
    drafter = build_drafter(spec.drafter, target, cache, SamplingConfig(), generator, MODELS)
    policy = build_policy(spec.policy, drafter=spec.drafter.label)
    decoder = Decoder(target, drafter, policy, SamplingConfig(), MAX_NEW, cache, generator)
    return [decode(decoder, p, seed=i)[1] for i, p in enumerate(spec.stream)]


def lane_of(target_spec: ModelSpec, spec: RunSpec) -> Lane:
    target = MODELS.get(target_spec)
    generator = torch.Generator(device=target.device)
    drafter = build_drafter(
        spec.drafter, target, new_cache(target.model), SamplingConfig(), generator, MODELS
    )
    return Lane(drafter, build_policy(spec.policy, drafter=spec.drafter.label), generator)


def together(
    target_spec: ModelSpec, specs: list[RunSpec], lanes: int
) -> tuple[dict[str, list[list[Round]]], int]:
    """Each run's requests' rounds, the runs decoded in ``lanes`` lanes (a lane takes the next
    run when its run is done); and the widest verify step."""
    target = MODELS.get(target_spec)
    decoder = LaneDecoder(target, SamplingConfig(), MAX_NEW, lanes)
    todo = deque(specs)
    current: dict[int, tuple[RunSpec, deque[int]]] = {}
    rounds: dict[str, list[list[Round]]] = {s.name: [[] for _ in s.stream] for s in specs}
    keys: dict[int, tuple[str, int]] = {}
    widest = 0
    for record in decoder.run_lanes():
        if isinstance(record, LaneFree):
            spec, left = current.get(record.slot, (None, deque()))
            lane = None
            if not left and todo:
                spec = todo.popleft()
                left = deque(range(len(spec.stream)))
                lane = lane_of(target_spec, spec)
            if spec is not None and left:
                i = left.popleft()
                key = len(keys)
                keys[key] = (spec.name, i)
                current[record.slot] = (spec, left)
                decoder.assign(record.slot, Job(key, spec.stream[i], i, -1), lane)
        elif isinstance(record, StepPrefill):
            name, i = keys[record.row.key]
            rounds[name][i].append(record.row.round)
        elif isinstance(record, Step):
            widest = max(widest, len(record.rows))
            for row in record.rows:
                name, i = keys[row.key]
                rounds[name][i].append(row.round)
        elif isinstance(record, RowTurnEnd):
            pass
    return rounds, widest


@pytest.mark.parametrize(
    ("engine", "lanes"), [("auto", 3), ("auto", 6), ("lean-invariant", 3), ("lean-invariant", 6)]
)
def test_runs_decoded_together_get_exactly_the_rounds_they_get_alone(
    tiny_model_dir: Path, tiny_draft_dir: Path, engine: str, lanes: int
) -> None:
    target = target_spec(tiny_model_dir, engine)
    specs = run_specs(tiny_draft_dir)
    got, widest = together(target, specs, lanes)
    assert widest == lanes  # rows of several runs really shared forwards
    assert MODELS.get(target).engine == ("lean-invariant" if engine != "auto" else "lean")
    for spec in specs:
        want = alone(target, spec)
        assert [shape(r) for r in got[spec.name]] == [shape(r) for r in want], spec.name
        for mine, theirs in zip(got[spec.name], want, strict=True):
            if engine == "lean-invariant":  # every row bit for bit a one-row forward
                assert probabilities(mine) == probabilities(theirs)
            else:
                assert probabilities(mine) == pytest.approx(
                    probabilities(theirs), rel=1e-4, abs=1e-6
                )


def test_stateful_runs_really_carry_state(tiny_model_dir: Path, tiny_draft_dir: Path) -> None:
    """The comparison above has teeth: the stateful runs' rounds depend on their stream order
    (a reversed stream changes some request's rounds), so a lane that leaked or lost state
    would show."""
    spec = run_specs(tiny_draft_dir)[1]
    target = target_spec(tiny_model_dir, "auto")
    forward = alone(target, spec)
    backward = alone(target, RunSpec(spec.name, spec.drafter, spec.policy, spec.stream[::-1]))
    assert [shape(r) for r in forward] != [shape(r) for r in backward[::-1]]


def test_self_drafters_are_not_laned_and_say_why() -> None:
    from specviz.codecode import why_alone
    from specviz.config import RunConfig

    def config(drafter: DrafterConfig) -> RunConfig:
        return RunConfig(ModelSpec("smollm2-135m"), drafter, PolicyConfig("constant", 3))

    assert why_alone(config(DrafterConfig("suffix"))) is None
    assert why_alone(config(DrafterConfig())) is None
    why = why_alone(config(DrafterConfig("layer-skip", exit_layer=2)))
    assert why is not None and "'layer-skip'" in why and "decode alone" in why
