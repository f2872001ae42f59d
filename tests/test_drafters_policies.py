"""Drafter and policy units: prompt lookup proposals, the heuristic schedule, sampling runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from engine_helpers import PROMPTS, decode, make_decoder

from specviz.config import (
    ConfigError,
    DrafterConfig,
    ModelSpec,
    PolicyConfig,
    RunConfig,
    SamplingConfig,
)
from specviz.drafters import PromptLookupDrafter
from specviz.policies import Heuristic, build_policy
from specviz.stopping import ConfidenceBelow, EntropyAbove, entropy


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


def test_svip_policy_stops_drafts_where_the_draft_entropy_is_high(tiny_model_dir, tiny_draft_dir):
    # the tiny draft's sqrt(entropy) lies in 1.9..2.1 nats^0.5: 2.2 never stops, 2.0 often does
    drafter = DrafterConfig("model", draft=ModelSpec(str(tiny_draft_dir)))
    loose = make_decoder(tiny_model_dir, drafter, PolicyConfig("svip", 6, threshold=2.2))
    strict = make_decoder(tiny_model_dir, drafter, PolicyConfig("svip", 6, threshold=2.0))
    loose_rounds = decode(loose, PROMPTS[0])[1]
    drafted_loose = sum(len(r.draft) for r in loose_rounds)
    drafted_strict = sum(len(r.draft) for r in decode(strict, PROMPTS[0])[1])
    assert drafted_loose == sum(min(r.k, len(r.draft)) for r in loose_rounds if not r.prefill)
    assert 0 < drafted_strict < drafted_loose


def test_stop_rules_judge_the_draft_distribution():
    uniform = torch.full((8,), 1 / 8)
    one_hot = torch.zeros(8).index_fill_(0, torch.tensor([3]), 1.0)
    assert entropy(uniform) == pytest.approx(math.log(8))
    assert entropy(one_hot) == 0.0
    assert EntropyAbove(1.0).stops(uniform)  # sqrt(ln 8) = 1.44 > 1
    assert not EntropyAbove(1.5).stops(uniform) and not EntropyAbove(0.01).stops(one_hot)
    assert ConfidenceBelow(0.2).stops(uniform) and not ConfidenceBelow(0.9).stops(one_hot)


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"kind": "svip", "threshold": 0.0}, "svip threshold .* must be > 0"),
        ({"kind": "svip", "threshold": float("inf")}, "svip threshold .* must be > 0"),
        ({"kind": "confidence", "threshold": 1.5}, r"confidence threshold must be in \(0, 1\)"),
    ],
)
def test_bad_stop_thresholds_are_clear_errors(policy, message):
    with pytest.raises(ConfigError, match=message):
        PolicyConfig(**policy)


def test_svip_needs_a_drafter_with_a_distribution():
    with pytest.raises(ConfigError, match="policy 'svip' needs draft probabilities"):
        RunConfig(ModelSpec("x"), DrafterConfig("prompt-lookup"), PolicyConfig("svip"))


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


def test_sampling_with_svip_stopping_keeps_the_targets_distribution(tiny_model_dir, tiny_draft_dir):
    """Drafts that stop where the draft's entropy is high (at a point that varies with the
    sampled drafts) are verified like any other: the first emitted token is distributed as
    the target's p, over fresh drafts each time."""
    from scipy.stats import chisquare

    from specviz.forward import forward, new_cache
    from specviz.sampling import probabilities
    from specviz.verify import verify_sampling

    sampling = SamplingConfig(temperature=1.0)
    drafter_config = DrafterConfig("model", draft=ModelSpec(str(tiny_draft_dir)))
    spec = make_decoder(tiny_model_dir, drafter_config, PolicyConfig("svip", 3, 2.04), sampling)
    assert spec.drafter is not None and spec.policy.stop_rule == EntropyAbove(2.04)
    ctx = torch.tensor(spec.encode_turn(PROMPTS[0], []))
    model = spec.target.model
    with torch.no_grad():
        p = probabilities(forward(model, ctx, new_cache(model), 0)[-1:], sampling)[0]
    top = torch.argsort(p, descending=True)[:5]
    n = 2000
    got = np.zeros(len(top) + 1)
    lengths = set()
    gen = torch.Generator().manual_seed(0)
    spec.generator.manual_seed(1)
    target_rows: dict[tuple[int, ...], torch.Tensor] = {}  # p over [last, x_1..x_gamma]
    for _ in range(n):
        spec.drafter.start(ctx)
        proposal = spec.drafter.propose(ctx, 3, spec.policy.stop_rule)
        lengths.add(len(proposal))
        key = tuple(proposal.tokens.tolist())
        if key not in target_rows:
            with torch.no_grad():
                logits = forward(model, torch.cat([ctx, proposal.tokens]), new_cache(model), 0)
            target_rows[key] = probabilities(logits[len(ctx) - 1 :], sampling)
        rows = target_rows[key]
        x = verify_sampling(
            proposal.tokens, proposal.q_tokens, proposal.q, rows, gen
        ).target_tokens[0]
        hit = (top == x).nonzero()
        got[int(hit[0]) if len(hit) else len(top)] += 1
    assert len(lengths) > 1  # the rule really stopped drafts at different points
    want = torch.cat([p[top], (1 - p[top].sum()).view(1)]).double().numpy()
    assert chisquare(got, want * n / want.sum()).pvalue > 0.01
