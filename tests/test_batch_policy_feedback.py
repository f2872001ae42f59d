"""Both decoders give a policy the same feedback: the batch-size-1 engine and the batched
decoder (batch size 1, and per-row policies in a larger batch) follow the contract of
specviz.policies, k = 0 rounds and shadow drafts included."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from engine_helpers import MODELS, PROMPTS
from test_batch_lossless import BATCH_PROMPTS, run_batched

from specviz.batch import BatchConfig, BatchDecoder, build_batch_drafter
from specviz.config import DrafterConfig, ModelSpec, PolicyConfig, SamplingConfig
from specviz.cost import CostModel
from specviz.drafter_factory import build_drafter
from specviz.engine import Decoder
from specviz.forward import new_cache
from specviz.policies import DraftPolicy, build_policy
from specviz.stopping import StopRule

MAX_NEW = 40


@dataclass
class Heard:
    """A policy that logs every call it hears (request starts and round updates)."""

    policy: DraftPolicy
    log: list[tuple[object, ...]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.policy.name

    def start_request(self, task: str) -> None:
        self.log.append(("start", task))
        self.policy.start_request(task)

    def next_k(self) -> int:
        return self.policy.next_k()

    @property
    def stop_rule(self) -> StopRule | None:
        return self.policy.stop_rule

    @property
    def shadows(self) -> bool:
        return self.policy.shadows

    def update(self, k: int, n_drafted: int, n_accepted: int) -> None:
        self.log.append((k, n_drafted, n_accepted))
        self.policy.update(k, n_drafted, n_accepted)


def costs(label: str, draft_s: float) -> CostModel:
    """Verifying is dear and flat; drafting costs ``draft_s`` per token (0: free, it shadows)."""
    return CostModel((1.0, 1.1, 1.2, 1.3, 1.4), {label: tuple(draft_s * n for n in range(5))})


def cases(draft_dir: Path) -> list[tuple[DrafterConfig, PolicyConfig]]:
    lookup, model = (
        DrafterConfig("prompt-lookup"),
        DrafterConfig("model", draft=ModelSpec(str(draft_dir))),
    )
    return [
        (lookup, PolicyConfig("cost-aware", 4, cost_model=costs(lookup.label, 0.0))),  # shadows
        (model, PolicyConfig("cost-aware", 4, cost_model=costs(model.label, 0.3))),  # probes
        (model, PolicyConfig("heuristic", 2)),
    ]


def single_logs(
    target_dir: Path, drafter: DrafterConfig, policy: PolicyConfig, streams: list[list[int]]
) -> list[list[tuple[object, ...]]]:
    """What one batch-size-1 policy hears over each stream of prompts (indexes of PROMPTS)."""
    target = MODELS.get(ModelSpec(str(target_dir)))
    logs = []
    for stream in streams:
        cache, generator = new_cache(target.model), torch.Generator(device=target.device)
        built = build_drafter(drafter, target, cache, SamplingConfig(), generator, MODELS)
        heard = Heard(build_policy(policy, drafter=drafter.label))
        decoder = Decoder(target, built, heard, SamplingConfig(), MAX_NEW, cache, generator)
        for i in stream:
            for _ in decoder.decode(BATCH_PROMPTS[i], seed=i):
                pass
        logs.append(heard.log)
    return logs


def batched_logs(
    target_dir: Path,
    drafter: DrafterConfig,
    policy: PolicyConfig,
    batch: BatchConfig,
    prompts: int,
) -> list[list[tuple[object, ...]]]:
    """What each policy the batched decoder built heard, in the order it built them."""
    target = MODELS.get(ModelSpec(str(target_dir)))
    built = build_batch_drafter(drafter, target, SamplingConfig(), MODELS)
    made: list[Heard] = []

    def new_policy() -> Heard:
        made.append(Heard(build_policy(policy, drafter=drafter.label)))
        return made[-1]

    decoder = BatchDecoder(target, built, new_policy, SamplingConfig(), MAX_NEW, batch)
    run_batched(decoder, BATCH_PROMPTS[:prompts])
    return [h.log for h in made]


@pytest.mark.parametrize("case", range(3))
def test_both_decoders_give_a_policy_the_same_feedback(tiny_model_dir, tiny_draft_dir, case):
    drafter, policy = cases(tiny_draft_dir)[case]
    n = len(PROMPTS)
    want = single_logs(tiny_model_dir, drafter, policy, [list(range(n))])[0]
    assert any(entry[0] == 0 for entry in want) or policy.kind == "heuristic"  # k = 0 heard
    # batch size 1: the batch's policy (built first) hears the run's rounds, per-row too
    _, alone = batched_logs(tiny_model_dir, drafter, policy, BatchConfig(1, k_mode="row"), n)
    assert alone == want
    # per-row policies in a batch of 2: slot 0 hears prompts 0, 2, ..., slot 1 hears 1, 3, ...
    _, *slots = batched_logs(tiny_model_dir, drafter, policy, BatchConfig(2, k_mode="row"), n)
    assert slots == single_logs(
        tiny_model_dir, drafter, policy, [list(range(0, n, 2)), list(range(1, n, 2))]
    )


def test_a_batch_wide_policy_at_batch_size_one_hears_every_round_like_batch_size_one(
    tiny_model_dir, tiny_draft_dir
):
    """k_mode batch: one policy hears each round (its request starts are the batch's)."""
    drafter, policy = (
        DrafterConfig("model", draft=ModelSpec(str(tiny_draft_dir))),
        PolicyConfig("heuristic", 2),
    )
    n = len(PROMPTS)
    want = single_logs(tiny_model_dir, drafter, policy, [list(range(n))])[0]
    (shared,) = batched_logs(tiny_model_dir, drafter, policy, BatchConfig(1, k_mode="batch"), n)
    assert [e for e in shared if e[0] != "start"] == [e for e in want if e[0] != "start"]
