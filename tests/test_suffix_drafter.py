"""The suffix-cache drafter: what it drafts, what it remembers across requests, its bound,
per-task partitions, sampling, and its options."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from engine_helpers import PROMPTS, decode, lossless_rounds, make_decoder, run_cli
from scipy.stats import chisquare

from specviz.config import ConfigError, DrafterConfig, PolicyConfig, RunConfig, SamplingConfig
from specviz.drafters.suffix import SuffixDrafter, SuffixMemory, SuffixTrie, _Node
from specviz.engine import Round
from specviz.forward import forward, new_cache
from specviz.sampling import probabilities
from specviz.verify import verify_sampling
from specviz.workloads import Prompt


def ids(*xs: int) -> torch.Tensor:
    return torch.tensor(xs)


def drafter(
    memory: int = 1000, depth: int = 8, factor: float = 1.0, min_prob: float = 0.1, part="shared"
) -> SuffixDrafter:
    return SuffixDrafter(memory, depth, factor, min_prob, part)


def propose(d: SuffixDrafter, context: list[int], k: int = 8) -> list[int]:
    d.start(torch.tensor(context))
    return d.propose(torch.tensor(context), k, None).tokens.tolist()


def counts(node: _Node) -> dict:
    return {t: (c.count, counts(c)) for t, c in sorted(node.children.items())}


def test_trie_counts_every_substring_up_to_its_depth():
    trie = SuffixTrie(depth=2)
    trie.add([1, 2, 1, 2])
    # substrings of <= 2 tokens: 1 x2, 2 x2, "1 2" x2, "2 1" x1
    assert counts(trie.root) == {1: (2, {2: (2, {})}), 2: (2, {1: (1, {})})}
    assert trie.nodes == 4


def test_drafts_the_continuation_of_the_longest_matching_suffix():
    # "1 2 3" occurred before, followed by 4 5; the match of 3 tokens allows 3 drafts
    assert propose(drafter(), [1, 2, 3, 4, 5, 9, 1, 2, 3]) == [4, 5, 9]
    # with no earlier occurrence of the last token there is nothing to draft
    assert propose(drafter(), [1, 2, 3, 4]) == []


def test_draft_length_follows_match_length_and_stops_when_the_continuation_is_unlikely():
    # last token 7 matched alone (length 1): spec_factor 1 allows one token, 2 allows two
    context = [7, 8, 9, 5, 7]
    assert propose(drafter(factor=1.0), context) == [8]
    assert propose(drafter(factor=2.0), context) == [8, 9]
    # 3 was followed by 4 once and by 6 three times: the most frequent wins, probability 3/4;
    # then "3 6" continues with 1 in one of three: 3/4 * 1/3 = 0.25 < 0.3 stops the draft
    branchy = [3, 4, 0, 3, 6, 1, 3, 6, 2, 3, 6, 8, 3]
    assert propose(drafter(factor=4.0, min_prob=0.3), branchy) == [6]
    assert propose(drafter(factor=4.0, min_prob=0.2), branchy)[:1] == [6]
    assert propose(drafter(factor=4.0, min_prob=0.8), branchy) == []


def test_earlier_requests_outputs_are_drafted_from_in_later_requests():
    d = drafter()
    d.start_request("coding")
    d.start(ids(100))
    d.end_turn([10, 11, 12, 13, 14])
    d.start_request("coding")
    # the new prompt ends in 10 11, which only the memory has seen
    assert propose(d, [50, 51, 10, 11]) == [12, 13]


def test_memory_kept_per_task_never_reads_another_tasks_entries(monkeypatch):
    d = drafter(part="task")
    d.start_request("coding")
    d.end_turn([10, 11, 12, 13, 14])
    asked: list[str] = []
    original = SuffixMemory.trie
    monkeypatch.setattr(
        SuffixMemory, "trie", lambda self, key: asked.append(key) or original(self, key)
    )
    d.start_request("writing")
    assert propose(d, [50, 51, 10, 11]) == []  # coding's output is not writing's memory
    d.end_turn([20, 21, 22])
    d.start_request("coding")
    assert propose(d, [50, 51, 10, 11]) == [12, 13]
    assert asked == ["writing", "coding"]
    assert set(d.memory.tries) == {"coding", "writing"}
    shared = drafter(part="shared")
    shared.start_request("coding")
    shared.end_turn([10, 11, 12, 13, 14])
    shared.start_request("writing")
    assert propose(shared, [50, 51, 10, 11]) == [12, 13]  # one memory for the whole stream


def test_memory_stays_within_its_bound_and_forgets_the_oldest_first():
    memory = SuffixMemory(max_tokens=10, depth=4)
    rng = np.random.default_rng(0)
    for i in range(40):
        memory.add("ab"[i % 2], rng.integers(0, 6, size=int(rng.integers(1, 8))).tolist())
        assert memory.tokens <= 10
        assert memory.tokens == sum(len(seq) for _, seq in memory.entries)
        assert memory.nodes <= memory.tokens * 4
    # the tries hold exactly the kept sequences: evicting leaves no trace of the others
    for key in "ab":
        fresh = SuffixTrie(4)
        for k, seq in memory.entries:
            if k == key:
                fresh.add(seq)
        assert counts(memory.tries[key].root) == counts(fresh.root)
        assert memory.tries[key].nodes == fresh.nodes
    memory.add("a", list(range(25)))  # longer than the bound: its last 10 tokens are kept
    assert [seq for _, seq in memory.entries] == [tuple(range(15, 25))]
    assert memory.tries["b"].nodes == 0


def test_zero_memory_keeps_nothing_across_requests():
    d = drafter(memory=0)
    d.start_request("t")
    d.end_turn([10, 11, 12, 13])
    assert propose(d, [50, 10, 11]) == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"memory_tokens": -1}, "memory_tokens must be >= 0"),
        ({"partition": "user"}, "partition 'user' is not one of shared, task"),
        ({"tree_depth": 1}, "tree_depth must be >= 2"),
        ({"spec_factor": 0.0}, "spec_factor must be > 0"),
        ({"min_token_prob": 1.0}, "min_token_prob must be in [0, 1)"),
    ],
)
def test_bad_suffix_options_are_clear_errors(options, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        DrafterConfig("suffix", **options)


def test_suffix_options_are_refused_for_other_drafters_and_confidence_is_refused():
    with pytest.raises(ConfigError, match="only used with --drafter suffix"):
        DrafterConfig("prompt-lookup", memory_tokens=10)
    with pytest.raises(ConfigError, match="suffix has none"):
        RunConfig(target=None, drafter=DrafterConfig("suffix"), policy=PolicyConfig("confidence"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--memory-tokens", "-5"], "memory_tokens must be >= 0"),
        (["--partition", "user"], "partition 'user' is not one of"),
    ],
)
def test_bad_suffix_options_exit_2_with_a_message(tiny_model_dir, tmp_path, args, message):
    out = tmp_path / "r"
    result = run_cli(
        "run", "--target", str(tiny_model_dir), "--drafter", "suffix", "--out", str(out), *args
    )
    assert result.returncode == 2 and message in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()


def test_suffix_drafter_is_refused_by_batched_runs(tiny_model_dir):
    from specviz.batch.drafters import BatchDrafterError, build_batch_drafter
    from specviz.models import ModelCache

    models = ModelCache()
    target = models.get(RunConfig(target=_spec(tiny_model_dir)).target)
    with pytest.raises(BatchDrafterError, match="'suffix' has no batched version"):
        build_batch_drafter(DrafterConfig("suffix"), target, SamplingConfig(), models)


def _spec(path):
    from specviz.config import ModelSpec

    return ModelSpec(str(path))


def test_greedy_with_cross_request_memory_matches_plain_greedy_and_uses_the_memory(
    tiny_model_dir,
):
    plain = make_decoder(tiny_model_dir)
    spec = make_decoder(tiny_model_dir, DrafterConfig("suffix"), PolicyConfig("constant", 4))
    # the second pass finds the first pass's outputs in memory
    rounds = lossless_rounds(plain, spec, PROMPTS * 2, "suffix")
    assert sum(len(r.draft) for r in rounds) > 0
    assert spec.drafter.memory.tokens > 0  # type: ignore[union-attr]


def test_sampling_with_suffix_drafts_keeps_the_targets_distribution(tiny_model_dir):
    """A verify round of a suffix draft (no q: one-hot verification) on the tiny target emits
    its first token distributed as the target's p at that position."""
    sampling = SamplingConfig(temperature=1.0)
    spec = make_decoder(tiny_model_dir, DrafterConfig("suffix"), sampling=sampling)
    prompt = Prompt("rep", "extraction", ("a b a b a b a b",))
    context = torch.tensor(spec.encode_turn(prompt, []))
    ctx = torch.cat([context, context[-2:-1]])  # the prompt's repeated pattern continues
    d = drafter()
    d.start(ctx)
    proposal = d.propose(ctx, 2, None)
    assert len(proposal) > 0 and proposal.q is None  # the round really drafts, without q
    model = spec.target.model
    feed = torch.cat([ctx, proposal.tokens])
    with torch.no_grad():
        logits = forward(model, feed, new_cache(model), 0)[len(ctx) - 1 :]
    rows = probabilities(logits, sampling)
    p = rows[0]
    top = torch.argsort(p, descending=True)[:5]
    n = 20_000
    got = np.zeros(len(top) + 1)
    gen = torch.Generator().manual_seed(0)
    for _ in range(n):
        x = verify_sampling(proposal.tokens, None, None, rows, gen).target_tokens[0]
        hit = (top == x).nonzero()
        got[int(hit[0]) if len(hit) else len(top)] += 1
    want = torch.cat([p[top], (1 - p[top].sum()).view(1)]).double().numpy() * n
    assert chisquare(got, want * n / want.sum()).pvalue > 0.01


def test_rounds_record_no_draft_probabilities_for_suffix_drafts(tiny_model_dir):
    spec = make_decoder(tiny_model_dir, DrafterConfig("suffix"), PolicyConfig("constant", 4))
    _, rounds = decode(spec, PROMPTS[0])
    drafted = [r for r in rounds if isinstance(r, Round) and r.draft]
    assert drafted and all(r.q_tokens is None for r in drafted)


def test_the_longest_matching_suffix_is_found_at_every_length_up_to_depth_minus_one():
    # "1 2" (2 tokens, even) matched, not only "2": two drafts, 9 then 1
    assert propose(drafter(), [1, 2, 9, 1, 2]) == [9, 1]
    # depth 3: "1 2" (depth - 1 tokens) continued by 5 beats "2", continued more often by 6
    assert propose(drafter(depth=3), [1, 2, 5, 3, 2, 6, 3, 2, 6, 1, 2]) == [5]
    # depth 3: a match of one token when no longer one has a continuation
    assert propose(drafter(depth=3), [7, 8, 9, 5, 7]) == [8]


def test_a_draft_is_at_most_k_tokens_however_long_the_match():
    assert propose(drafter(), [1, 2, 3, 4, 5, 9, 1, 2, 3], k=2) == [4, 5]


def test_a_memory_draft_less_likely_than_one_token_beats_no_local_match():
    d = drafter()
    d.start_request("t")
    d.end_turn([10, 11, 12])
    d.end_turn([10, 11, 13])
    # memory: "10 11" went on with 12 once and 13 once (score 0.5); the context has no match
    assert propose(d, [50, 10, 11]) == [12]


def test_the_most_frequent_continuation_wins_and_a_tie_goes_to_the_smaller_token():
    # 3 went on with 9 once and with 6 three times: 6, though 9 is the larger token
    branchy = [3, 9, 0, 3, 6, 1, 3, 6, 2, 3, 6, 8, 3]
    assert propose(drafter(factor=4.0, min_prob=0.3), branchy) == [6]
    d = drafter()
    d.start_request("t")
    d.end_turn([10, 11, 13])
    d.end_turn([10, 11, 12])
    assert propose(d, [50, 10, 11]) == [12]  # 12 and 13 once each: the smaller


def test_a_continuation_exactly_at_the_minimum_probability_is_drafted():
    d = drafter(min_prob=0.5)
    d.start_request("t")
    d.end_turn([10, 11, 12])
    d.end_turn([10, 11, 13])
    assert propose(d, [50, 10, 11]) == [12]  # probability 1/2, not below 0.5


def test_a_local_match_too_short_to_draft_scores_nothing_against_the_memory():
    # spec_factor 0.5: the local match "11" (one token) allows no draft; the memory's "10 11"
    # (two tokens) allows one, at probability 1/2
    d = drafter(factor=0.5)
    d.start_request("t")
    d.end_turn([10, 11, 12])
    d.end_turn([10, 11, 13])
    assert propose(d, [11, 50, 10, 11]) == [12]


def test_a_drafts_score_sums_its_tokens_probabilities():
    # local: 6 at 1/2, then 7 at 1/2 x 1: score 1.0; memory: 9 at 3/4, score 0.75. The local
    # draft wins on the sum, though its last token is less likely than the memory's
    d = drafter(factor=2.0)
    d.start_request("t")
    for turn in ([5, 9], [5, 9], [5, 9], [5, 6]):
        d.end_turn(turn)
    assert propose(d, [5, 6, 7, 5]) == [6, 7]


def test_the_requests_own_draft_wins_a_tie_with_the_memorys():
    # local: "5" went on with 6 once (1/2); memory: "5" went on with 8 once and 9 once (1/2)
    d = drafter()
    d.start_request("t")
    d.end_turn([5, 8])
    d.end_turn([5, 9])
    assert propose(d, [5, 6, 7, 5], k=1) == [6]
