"""Task-aware policies (heuristic-per-task, cost-aware), their cost curve, and exact resume of
every piece of state that crosses requests (policies and the suffix drafter's memory)."""

from __future__ import annotations

import json

import polars as pl
import pytest
from engine_helpers import drop_requests_from, run_cli

import specviz.calibrate
from specviz.config import ConfigError, DrafterConfig, ModelSpec, PolicyConfig, RunConfig
from specviz.cost import CostModel
from specviz.models import ModelCache
from specviz.policies import (
    MAX_PROBE_BACKOFF_DOUBLINGS,
    CostAware,
    HeuristicPerTask,
    build_policy,
    expected_tokens,
    heard,
)
from specviz.runner import Request, run
from specviz.workloads import builtin_prompts


def test_heuristic_per_task_keeps_one_k_per_task():
    policy = HeuristicPerTask(k0=3)
    policy.start_request("coding")
    policy.update(3, 3, 3)  # all accepted: coding goes to 5
    policy.start_request("writing")
    assert policy.next_k() == 3  # writing starts from k0, untouched by coding
    policy.update(3, 3, 0)
    policy.start_request("coding")
    assert policy.next_k() == 5
    policy.start_request("writing")
    assert policy.next_k() == 2


def curve(verify: list[float], draft: float = 0.0, k_max: int = 4) -> CostModel:
    return CostModel(tuple(verify), {"suffix": tuple(draft * n for n in range(k_max + 1))})


def cost_aware(c: CostModel, k_max: int = 4) -> CostAware:
    return CostAware(k_max, c, "suffix")


def feed(policy: CostAware, k: int, accepted: int, rounds: int) -> None:
    for _ in range(rounds):
        policy.update(k, k, accepted)


def test_cost_aware_picks_the_k_with_most_expected_tokens_per_cost():
    c = curve([1.0, 1.6, 1.9, 1.4, 2.0], draft=0.05)
    policy = cost_aware(c)
    policy.start_request("coding")
    feed(policy, 4, 3, 30)  # about 3 of 4 accepted per round
    alpha = policy.cautious_alpha()
    assert 0.0 < alpha < policy.alpha()  # decisions use the belief's lower quartile
    draft = {k: c.draft("suffix", k) if k else 0.0 for k in range(5)}
    rates = {k: expected_tokens(k, alpha) / (draft[k] + c.verify(k + 1)) for k in range(5)}
    assert policy.next_k() == max(rates, key=rates.get)
    # the dip at 4 verified tokens (as measured on this CPU: 2-3 rows cost more than 4) wins
    assert policy.next_k() == 3


def test_cost_aware_stops_drafting_when_it_does_not_pay_and_probes_again_later():
    policy = cost_aware(curve([1.0, 2.0, 2.5, 3.0, 3.5], draft=0.05))  # not free: it probes
    assert not policy.shadows
    policy.start_request("writing")
    feed(policy, 2, 0, 10)  # nothing accepted
    assert policy.next_k() == 0
    for _ in range(policy.probe_every - 1):
        policy.update(0, 0, 0)
        assert policy.next_k() == 0
    policy.update(0, 0, 0)
    assert policy.next_k() >= 1  # after probe_every idle rounds: one probe
    policy.update(policy.next_k(), 1, 1)  # the probe's one draft was accepted
    belief = policy.beliefs["writing"]
    # the idle count restarts, the back-off stays at none, and the accepted token is heard
    assert (belief.idle_rounds, belief.failed_probes, belief.accepted) == (0, 0, 1.0)
    assert policy.next_k() == 0  # one accepted token after ten rejections: still not worth it
    for _ in range(policy.probe_every - 1):
        policy.update(0, 0, 0)
        assert policy.next_k() == 0
    policy.update(0, 0, 0)
    assert policy.next_k() >= 1  # the next probe comes after probe_every rounds, not doubled


def test_with_a_free_drafter_cost_aware_learns_from_shadow_drafts_and_never_probes():
    policy = cost_aware(curve([1.0, 2.0, 2.2, 2.4, 2.6]))  # drafting is free, verifying is not
    assert policy.shadows
    policy.start_request("writing")
    for _ in range(200):  # shadows that never match: it never drafts, not even to probe
        assert policy.next_k() == 0
        policy.update(0, *heard(0, 0, shadow=7, emitted=8))
    policy.start_request("extraction")
    ks = []
    for _ in range(40):  # shadows that always match: it starts drafting without having paid
        ks.append(policy.next_k())
        if ks[-1] == 0:
            policy.update(0, *heard(0, 0, shadow=7, emitted=7))
        else:
            policy.update(ks[-1], ks[-1], ks[-1])
    assert ks[0] == 0 and ks[-1] == 4
    assert policy.beliefs["writing"].accepted == 0.0


def test_a_policy_hears_a_shadow_round_as_one_draft_matched_or_not():
    assert heard(3, 2, None, 5) == (3, 2)  # a drafted round: its own counts
    assert heard(0, 0, 9, 9) == (1, 1)
    assert heard(0, 0, 9, 5) == (1, 0)
    assert heard(0, 0, None, 5) == (0, 0)  # no shadow: nothing heard


def test_cost_aware_keeps_acceptance_per_task_and_drafts_fully_when_verifying_is_flat():
    policy = cost_aware(curve([1.0] * 5))
    policy.start_request("coding")
    feed(policy, 4, 4, 10)
    policy.start_request("writing")
    feed(policy, 4, 0, 10)
    assert policy.beliefs["writing"].accepted == 0
    policy.start_request("coding")
    assert policy.alpha() > 0.9
    assert policy.next_k() == 4  # a flat cost: more drafts never cost more


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (
            {"kind": "cost-aware", "k": 4, "cost_model": {"verify_s": (1.0, 1.0)}},
            "needs cost_model verify_s for 1..5 rows",
        ),
        ({"kind": "cost-aware", "k": 1, "cost_model": {"verify_s": (1.0, 0.0)}}, "must be > 0"),
        (
            {"kind": "constant", "cost_model": {"verify_s": (1.0,) * 6}},
            "only used with policy cost-aware",
        ),
        ({"kind": "cost-aware", "cost_model": {"verify_s": ()}}, "verify_s: the curve is empty"),
    ],
)
def test_bad_cost_curves_are_clear_errors(policy, message):
    with pytest.raises(ConfigError, match=message):
        PolicyConfig(**policy)


def test_cost_aware_refuses_a_cost_model_without_its_drafters_curve():
    costs = CostModel((1.0,) * 6, {"model": (0.0,) * 6})
    with pytest.raises(ConfigError, match="no draft_s for drafter 'suffix'"):
        RunConfig(
            ModelSpec("x"), DrafterConfig("suffix"), PolicyConfig("cost-aware", 5, 0.4, costs)
        )


def test_cost_aware_refuses_to_guess_what_a_self_drafter_costs():
    with pytest.raises(ConfigError, match="cannot measure what drafter 'layer-skip' costs"):
        RunConfig(
            ModelSpec("x"), DrafterConfig("layer-skip", exit_layer=1), PolicyConfig("cost-aware")
        )


def test_bad_policy_option_on_the_command_line_exits_2(tiny_model_dir, tmp_path):
    out = tmp_path / "r"
    result = run_cli(
        "run", "--target", str(tiny_model_dir), "--drafter", "suffix", "--policy", "cost-aware",
        "--k", "3", "--verify-costs", "1,2", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 2 and "needs cost_model verify_s for 1..4 rows" in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()


def test_calibration_measures_one_cost_per_verified_length(tiny_model_dir):
    config = RunConfig(
        ModelSpec(str(tiny_model_dir)), DrafterConfig("suffix"), PolicyConfig("cost-aware", 3)
    )
    measured = specviz.calibrate.calibrate(config, ModelCache())
    assert len(measured.verify_s) == 4 and min(measured.verify_s) > 0
    assert measured.draft_s == {"suffix": (0.0, 0.0, 0.0, 0.0)}


def test_calibration_times_the_lengths_round_robin(tiny_model_dir, monkeypatch):
    """1, 2, 3, 4, 1, 2, 3, 4, ...: a change of load moves every length alike."""
    timed = []
    real = specviz.calibrate.forward

    def spy(model, ids, cache, start, **kw):
        if start == specviz.calibrate.CONTEXT:
            timed.append(len(ids))
        return real(model, ids, cache, start, **kw)

    monkeypatch.setattr(specviz.calibrate, "forward", spy)
    model = ModelCache().get(ModelSpec(str(tiny_model_dir))).model
    curve = specviz.calibrate.verify_curve(model, 4, repeats=3)
    assert timed == [1, 2, 3, 4] * 3 and len(curve) == 4


def requests(n: int) -> list[Request]:
    """A stream that alternates tasks, so per-task state matters."""
    by_task: dict[str, list] = {}
    for p in builtin_prompts():
        by_task.setdefault(p.category, []).append(p)
    a, b = sorted(by_task)[:2]
    mixed = [by_task[a if i % 2 == 0 else b][i // 2] for i in range(n)]
    return [Request(i, p, "mixed") for i, p in enumerate(mixed)]


def interrupt_and_resume(config: RunConfig, tmp_path, keep: int = 3) -> tuple[pl.DataFrame, ...]:
    run(config, requests(6), tmp_path / "whole", progress=False)
    partial = tmp_path / "partial"
    run(config, requests(6), partial, progress=False)
    drop_requests_from(partial, keep)
    run(config, requests(6), partial, resume=True, progress=False)
    cols = ["request_id", "round", "position", "k", "draft_token", "target_token", "accepted"]
    cols.append("shadow_token")
    # a round's correction row shares its position with a rejected draft: order them by kind
    order = ["request_id", "round", "position", "kind"]

    def read(run_dir):
        return pl.read_parquet(run_dir / "events.parquet").sort(order).select(cols)

    return read(tmp_path / "whole"), read(partial)


@pytest.mark.parametrize(
    ("drafter", "policy"),
    [
        (DrafterConfig("suffix", partition="task", memory_tokens=200), PolicyConfig("constant", 4)),
        (DrafterConfig("suffix"), PolicyConfig("heuristic-per-task", 1)),
        (
            DrafterConfig("prompt-lookup"),
            PolicyConfig(
                "cost-aware",
                4,
                cost_model=CostModel((1.0, 1.7, 1.9, 1.3, 1.4), {"prompt-lookup": (0.0,)}),
            ),
        ),
    ],
    ids=["suffix-memory", "heuristic-per-task", "cost-aware"],
)
def test_resumed_run_equals_uninterrupted_run_with_state_across_requests(
    tiny_model_dir, tmp_path, drafter, policy
):
    config = RunConfig(ModelSpec(str(tiny_model_dir)), drafter, policy, max_new_tokens=24)
    whole, resumed = interrupt_and_resume(config, tmp_path)
    assert whole.equals(resumed)
    late = whole.filter(pl.col("request_id").str.slice(3, 5).cast(pl.Int32) >= 3)
    assert late["draft_token"].drop_nulls().len() > 0  # the resumed part really drafted
    if policy.kind == "cost-aware":  # and its policy learned from shadow drafts before it
        assert whole["shadow_token"].drop_nulls().len() > 0


def test_resume_without_rebuilding_the_memory_would_differ(tiny_model_dir, tmp_path, monkeypatch):
    """The memory matters in this stream: skipping its rebuild changes the resumed drafts."""
    import specviz.runner

    config = RunConfig(
        ModelSpec(str(tiny_model_dir)), DrafterConfig("suffix"), PolicyConfig("constant", 4),
        max_new_tokens=24,
    )  # fmt: skip
    monkeypatch.setattr(specviz.runner, "restore_memory", lambda *args: None)
    whole, resumed = interrupt_and_resume(config, tmp_path)
    assert not whole.equals(resumed)


def rerun_without_calibrating(monkeypatch, config: RunConfig, out) -> None:
    """Drop the run's tables and resume it, failing if the run measures its cost curve again."""

    def refuse(*args):
        raise AssertionError("a resumed run must reuse the recorded cost model, not measure again")

    monkeypatch.setattr(specviz.calibrate, "calibrate", refuse)
    (out / "requests.parquet").unlink()
    (out / "events.parquet").unlink()
    run(config, requests(2), out, resume=True, progress=False)


def calibrated_run(tiny_model_dir, tmp_path) -> tuple[RunConfig, object]:
    """A finished cost-aware suffix run that calibrated its own cost model."""
    config = RunConfig(
        ModelSpec(str(tiny_model_dir)), DrafterConfig("suffix"), PolicyConfig("cost-aware", 3),
        max_new_tokens=8,
    )  # fmt: skip
    out = tmp_path / "run"
    run(config, requests(2), out, progress=False)
    return config, out


def test_calibrated_curve_is_recorded_and_reused_on_resume(tiny_model_dir, tmp_path, monkeypatch):
    config, out = calibrated_run(tiny_model_dir, tmp_path)
    recorded = json.loads((out / "run.json").read_text())["cost_model"]
    assert len(recorded["verify_s"]) == 4 and len(recorded["draft_s"]["suffix"]) == 4

    rerun_without_calibrating(monkeypatch, config, out)
    assert json.loads((out / "run.json").read_text())["cost_model"] == recorded


def test_task_aware_policies_are_refused_by_batched_runs(tiny_model_dir, tmp_path):
    from specviz.batch import BatchConfig
    from specviz.batch.config import BatchConfigError

    config = RunConfig(
        ModelSpec(str(tiny_model_dir)), DrafterConfig("prompt-lookup"),
        PolicyConfig("heuristic-per-task", 2),
    )  # fmt: skip
    with pytest.raises(BatchConfigError, match="no batched version"):
        run(config, requests(2), tmp_path / "b", batch=BatchConfig(2), progress=False)
    assert not (tmp_path / "b").exists()


def test_build_policy_wires_the_config_curve():
    costs = CostModel((1.0, 5.0, 9.0), {"suffix": (0.0,)})
    policy = build_policy(PolicyConfig("cost-aware", 2, cost_model=costs), drafter="suffix")
    assert isinstance(policy, CostAware) and policy.next_k() == 0


def test_cost_aware_probes_ever_less_often_where_drafting_never_pays():
    policy = cost_aware(curve([1.0, 2.0, 2.5, 3.0, 3.5], draft=0.05))
    policy.start_request("writing")
    assert probe_gaps(policy, 4) == [16, 32, 64, 128]


def test_cost_aware_probe_backoff_stops_growing_at_its_named_cap():
    policy = CostAware(4, curve([1.0, 2.0, 2.5, 3.0, 3.5], draft=0.05), "suffix", probe_every=1)
    policy.start_request("writing")
    gaps = probe_gaps(policy, MAX_PROBE_BACKOFF_DOUBLINGS + 3)
    cap = 2**MAX_PROBE_BACKOFF_DOUBLINGS
    assert gaps == [2**i for i in range(MAX_PROBE_BACKOFF_DOUBLINGS)] + [cap] * 3


def probe_gaps(policy: CostAware, n: int) -> list[int]:
    """The rounds without a draft before each of the first ``n`` probes, every probe failing."""
    gaps, idle = [], 0
    for _ in range(100_000):  # bounded: a policy that never probes fails the test, not hangs it
        if len(gaps) == n:
            break
        k = policy.next_k()
        if k > 0:
            gaps.append(idle)
            idle = 0
            policy.update(k, k, 0)  # every probe fails
        else:
            idle += 1
            policy.update(0, 0, 0)
    return gaps


def test_a_run_config_recorded_with_the_old_cost_lists_reads_as_one_cost_model():
    data = RunConfig(ModelSpec("x"), DrafterConfig("suffix")).to_dict()
    data["policy"] = {"kind": "cost-aware", "k": 2, "verify_costs": [1.0, 2.0, 3.0]}
    data["policy"]["draft_costs"] = [0.5, 0.7]
    costs = RunConfig.from_dict(data).policy.cost_model
    assert costs is not None and costs.verify(3) == 3.0 and costs.draft("suffix", 2) == 0.7
    assert costs.draft("suffix", 1) == 0.5


def test_a_run_recorded_with_the_old_cost_curve_resumes_with_it(
    tiny_model_dir, tmp_path, monkeypatch
):
    config, out = calibrated_run(tiny_model_dir, tmp_path)
    meta = json.loads((out / "run.json").read_text())
    del meta["cost_model"]
    meta["cost_curve"] = {"verify": [1.0, 1.0, 1.0, 1.0], "draft": [0.0, 0.0, 0.0]}
    (out / "run.json").write_text(json.dumps(meta))

    rerun_without_calibrating(monkeypatch, config, out)
    ks = pl.read_parquet(out / "events.parquet")["k"].drop_nulls().unique().to_list()
    assert 3 in ks and not {1, 2} & set(ks)  # a flat verify curve: drafting the most pays


def test_replaying_the_log_rebuilds_the_live_cost_aware_policy_exactly(
    tiny_model_dir, tmp_path, monkeypatch
):
    """Shadow drafts included: the beliefs replayed from the event log are the live ones."""
    import specviz.runner
    from specviz.replay import restore_policy

    live = []
    build = specviz.runner._policy
    monkeypatch.setattr(specviz.runner, "_policy", lambda *a: live.append(build(*a)) or live[-1])
    costs = CostModel((1.0, 1.3, 1.6, 1.9, 2.2), {"prompt-lookup": (0.0,)})
    config = RunConfig(
        ModelSpec(str(tiny_model_dir)), DrafterConfig("prompt-lookup"),
        PolicyConfig("cost-aware", 4, cost_model=costs), max_new_tokens=24,
    )  # fmt: skip
    out = tmp_path / "run"
    run(config, requests(3), out, progress=False)
    shadows = pl.read_parquet(out / "events.parquet")["shadow_token"].drop_nulls()
    assert shadows.len() > 0  # the policy did learn from shadow drafts

    replayed = build_policy(config.policy, drafter="prompt-lookup")
    ids = pl.read_parquet(out / "requests.parquet")["request_id"].to_list()
    restore_policy(out, replayed, set(ids))
    assert isinstance(replayed, CostAware) and replayed.beliefs == live[0].beliefs
