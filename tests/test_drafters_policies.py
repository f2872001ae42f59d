"""Drafter and policy units: prompt lookup proposals, the heuristic schedule, sampling runs."""

from __future__ import annotations

import pytest
import torch
from engine_helpers import PROMPTS, decode, make_decoder

from specviz.config import (
    ConfigError,
    DrafterConfig,
    ModelSpec,
    PolicyConfig,
    SamplingConfig,
)
from specviz.drafters import PromptLookupDrafter
from specviz.policies import Heuristic, build_policy


def ids(*xs: int) -> torch.Tensor:
    return torch.tensor(xs)


def test_prompt_lookup_copies_what_followed_the_most_recent_match():
    drafter = PromptLookupDrafter(max_ngram=2, min_ngram=1)
    # "7 8" occurs at 0 (followed by 1 2) and at 4 (followed by 3 4); the latest wins
    got = drafter.propose(ids(7, 8, 1, 2, 7, 8, 3, 4, 9, 7, 8), 3, None)
    assert got.tokens.tolist() == [3, 4, 9]
    assert got.q is None and got.q_tokens is None


def test_prompt_lookup_falls_back_to_shorter_ngrams_then_to_nothing():
    drafter = PromptLookupDrafter(max_ngram=3, min_ngram=1)
    assert drafter.propose(ids(5, 6, 1, 9, 6), 2, None).tokens.tolist() == [1, 9]
    assert drafter.propose(ids(1, 2, 3, 4), 2, None).tokens.tolist() == []
    strict = PromptLookupDrafter(max_ngram=3, min_ngram=2)
    assert strict.propose(ids(5, 6, 1, 9, 6), 2, None).tokens.tolist() == []


def test_heuristic_adds_two_after_full_acceptance_and_drops_one_otherwise():
    policy = Heuristic(k0=3, persistent=True)
    policy.update(3, 3, 3)
    assert policy.next_k() == 5
    policy.update(5, 5, 2)
    assert policy.next_k() == 4
    for _ in range(10):
        policy.update(policy.next_k(), 1, 0)
    assert policy.next_k() == 1  # never below 1


def test_persistent_heuristic_carries_k_across_requests_and_per_request_resets():
    persistent = build_policy(PolicyConfig("heuristic", 2))
    transient = build_policy(PolicyConfig("heuristic-per-request", 2))
    for policy in (persistent, transient):
        policy.start_request("t")
        policy.update(2, 2, 2)
        policy.start_request("t")
    assert persistent.next_k() == 4
    assert transient.next_k() == 2


def test_confidence_policy_stops_drafts_below_the_threshold(tiny_model_dir, tiny_draft_dir):
    drafter = DrafterConfig("model", draft=ModelSpec(str(tiny_draft_dir)))
    loose = make_decoder(tiny_model_dir, drafter, PolicyConfig("confidence", 6, threshold=0.01))
    strict = make_decoder(tiny_model_dir, drafter, PolicyConfig("confidence", 6, threshold=0.9))
    drafted_loose = sum(len(r.draft) for r in decode(loose, PROMPTS[0])[1])
    drafted_strict = sum(len(r.draft) for r in decode(strict, PROMPTS[0])[1])
    assert drafted_strict < drafted_loose


def test_sampling_runs_are_reproducible_from_the_seed_and_differ_across_seeds(
    tiny_model_dir, tiny_draft_dir
):
    sampling = SamplingConfig(temperature=1.0, top_p=0.9)
    drafter = DrafterConfig("model", draft=ModelSpec(str(tiny_draft_dir)))
    decoder = make_decoder(tiny_model_dir, drafter, PolicyConfig("constant", 3), sampling)
    first, rounds = decode(decoder, PROMPTS[1], seed=1)
    again, _ = decode(decoder, PROMPTS[1], seed=1)
    other, _ = decode(decoder, PROMPTS[1], seed=2)
    assert first == again and first != other
    assert sum(r.n_accepted for r in rounds) > 0


def test_drafter_name_defaults_to_the_kind_and_refuses_confusing_labels():
    assert DrafterConfig("prompt-lookup").label == "prompt-lookup"
    assert DrafterConfig("prompt-lookup", name="prompt-lookup").name is None
    assert DrafterConfig("layer-skip", exit_layer=2, name="exit-2").label == "exit-2"
    with pytest.raises(ConfigError, match="another drafter kind"):
        DrafterConfig("prompt-lookup", name="layer-skip")
    with pytest.raises(ConfigError, match=r"baseline .* takes no name"):
        DrafterConfig("none", name="plain")
    with pytest.raises(ConfigError, match="empty or padded"):
        DrafterConfig("prompt-lookup", name=" ")
