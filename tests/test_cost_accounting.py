"""Cost accounting on hand-made rounds: the fitted curve and the modelled seconds, worked by hand;
and a stateless constant-k multitask stream whose modelled gap is composition only, exactly."""

from __future__ import annotations

import polars as pl
import pytest

from specviz.metrics import degradation
from specviz.metrics.accounting import (
    MODELLED,
    CalibrationError,
    decode_clock,
    fit_cost_models,
    load_factors,
    modelled_seconds,
    request_load_factors,
    round_table,
    verified_alone,
    wall_clock_load,
    wall_clocked,
    with_modelled_seconds,
)
from specviz.metrics.degradation import CONFIG
from specviz.metrics.synthetic import (
    Labels,
    RoundSpec,
    events_from_rounds,
    prefill,
    requests_from_rows,
)


def request(
    run_id,
    index,
    prompt,
    category,
    mixture,
    rounds,
    *,
    drafter="model",
    wall=1.0,
    k=2,
    prompt_tokens=10,
):
    labels = Labels(
        run_id=run_id,
        request_id=f"{run_id}-{index}",
        request_index=index,
        prompt_id=prompt,
        category=category,
        mixture=mixture,
        drafter=drafter,
    )
    events = events_from_rounds(rounds, labels)
    emitted = sum(r.accepted + 1 if r.emitted is None else r.emitted for r in rounds)
    row = dict(
        run_id=run_id,
        request_id=labels.request_id,
        request_index=index,
        prompt_id=prompt,
        category=category,
        mixture=mixture,
        drafter=drafter,
        k=0 if drafter == "none" else k,
        new_tokens=emitted,
        wall_s=wall,
        rounds=len(rounds),
        prompt_tokens=prompt_tokens,
        turn_prompt_tokens=[prompt_tokens],
    )
    return events, row


def tables(parts):
    events = pl.concat([e for e, _ in parts])
    return events, requests_from_rows([r for _, r in parts])


# calibration rounds of three requests. cal-0 and cal-2 ran at the median load; cal-1 ran every
# forward exactly twice as slow (machine load), so its load factor is 2 and it is divided out.
# At median load: verify rows 1 at 0.05 s, rows 3 at 0.08 s (rows 2 never seen: 0.065 s by
# interpolation), drafting 2 tokens 0.02 s; prefills of 10, 30 and 50 tokens at 0.1, 0.2 and
# 0.3 s (line: 0.05 s + 0.005 s per token).
def calibration_request(index, slowdown, prompt_tokens, prefill_s):
    rounds = [
        prefill(prefill_s * slowdown),
        RoundSpec(drafted=2, accepted=1, draft_s=0.02 * slowdown, verify_s=0.08 * slowdown),
        RoundSpec(drafted=0, verify_s=0.05 * slowdown),
    ]
    return request("cal", index, f"p{index}", "A", "A", rounds, prompt_tokens=prompt_tokens)


CALIBRATION = [
    calibration_request(0, 1.0, 10, 0.1),
    calibration_request(1, 2.0, 30, 0.2),
    calibration_request(2, 1.0, 50, 0.3),
]


def test_calibration_divides_out_each_requests_load_and_takes_medians_by_rows():
    model = fit_cost_models(*tables(CALIBRATION))["tiny"]
    assert model.verify_s == pytest.approx((0.05, 0.065, 0.08))
    assert model.draft("model", 2) == pytest.approx(0.02)
    assert model.prefill_intercept_s == pytest.approx(0.05)
    assert model.prefill_s_per_token == pytest.approx(0.005)


def test_a_prefill_growing_with_the_square_of_the_prompt_is_priced_on_its_parabola():
    # prefills of 34 to 1,012 tokens at 0.02 s + 0.4 ms per token + 4 us per token squared (the
    # demo's shape: attention grows with the square of the prompt); a line through them priced
    # a 34-token prompt at 0 and a 1,012-token one 30% low
    lengths = [34, 60, 120, 250, 500, 1012]
    truth = [0.02 + 4e-4 * n + 4e-6 * n * n for n in lengths]
    parts = [
        calibration_request(i, 1.0, n, t)
        for i, (n, t) in enumerate(zip(lengths, truth, strict=True))
    ]
    model = fit_cost_models(*tables(parts))["tiny"]
    assert model.prefill_s_per_token2 == pytest.approx(4e-6)
    for n, t in zip(lengths, truth, strict=True):
        assert model.prefill(n) == pytest.approx(t)
    # the line is kept where the points bend down (noise, not a cost)
    concave = [calibration_request(i, 1.0, n, 0.1 + 0.01 * n - 1e-5 * n * n)
               for i, n in enumerate([10, 100, 200])]  # fmt: skip
    line = fit_cost_models(*tables(concave))["tiny"]
    assert line.prefill_s_per_token2 == 0.0 and line.prefill_s_per_token > 0


def test_modelled_seconds_price_each_round_by_hand_whatever_load_the_request_met():
    events, requests = tables(CALIBRATION)
    models = fit_cost_models(events, requests)
    priced = modelled_seconds(events, requests, models).sort("request_id")
    # prefill(tokens) + (draft 0.02 + T(3) 0.08) + T(1) 0.05; cal-1 ran twice as slow but its
    # rounds are the same, so it costs what they cost at median load
    assert priced["modelled_s"].to_list() == pytest.approx([0.25, 0.35, 0.45])
    assert priced["modelled_draft_s"].to_list() == pytest.approx([0.02, 0.02, 0.02])
    assert priced["modelled_prefill_s"].to_list() == pytest.approx([0.1, 0.2, 0.3])


def co_decoded(parts, rows):
    """``parts`` whose verify rounds were verified in a forward of ``rows`` rows (beside other
    runs' rows: co-decoded), their seconds a share of that shared forward."""
    return [
        (
            events.with_columns(
                pl.when(~pl.col("prefill"))
                .then(rows)
                .otherwise(1)
                .alias("batch_rows")
                .cast(pl.Int16)
            ),
            row,
        )
        for events, row in parts
    ]


def test_co_decoded_rounds_are_priced_like_the_same_rounds_but_never_calibrate():
    # cal-3 has cal-0's rounds but its verify rounds were co-decoded beside two other runs'
    # rows (its prefill is its own forward, as in a real co-decoded run): their seconds (10x
    # slower at some rows, a shared forward) must move neither the curve nor any load factor, and it costs
    # what cal-0 costs
    rounds = [
        prefill(0.1),
        RoundSpec(drafted=2, accepted=1, draft_s=0.5, verify_s=0.9),
        RoundSpec(drafted=0, verify_s=0.5),
    ]
    shared = co_decoded([request("cal", 3, "p3", "A", "A", rounds, prompt_tokens=10)], 3)
    events, requests = tables(CALIBRATION + shared)
    model = fit_cost_models(events, requests)["tiny"]
    assert model.verify_s == pytest.approx((0.05, 0.065, 0.08))
    assert model.draft("model", 2) == pytest.approx(0.02)
    assert model.samples["runs"] == 1 and model.samples["verify_rounds"] == 6
    priced = modelled_seconds(events, requests, {"tiny": model}).sort("request_id")
    assert priced["request_id"].to_list() == ["cal-0", "cal-1", "cal-2", "cal-3"]
    assert priced["modelled_s"].to_list() == pytest.approx([0.25, 0.35, 0.45, 0.25])
    rounds = round_table(events, requests)
    assert rounds.filter(pl.col("request_id") == "cal-3")["batch_rows"].to_list() == [1, 3, 3]
    # its prefill is its own forward: that round alone of cal-3 is verified alone
    alone = verified_alone(rounds).filter(pl.col("request_id") == "cal-3")
    assert alone["prefill"].to_list() == [True]
    factors = request_load_factors(events, requests)
    assert sorted(factors["request_id"].to_list()) == ["cal-0", "cal-1", "cal-2"]
    assert factors.sort("request_id")["load_factor"].to_list() == pytest.approx([1.0, 2.0, 1.0])


def test_rounds_without_a_batch_rows_value_count_as_verified_alone():
    # run directories written before co-decoding have no batch_rows column (or a null in it)
    events, requests = tables(CALIBRATION)
    for older in (events.drop("batch_rows"), events.with_columns(pl.lit(None).alias("batch_rows"))):
        rounds = round_table(older, requests)
        assert set(rounds["batch_rows"].to_list()) == {1}
        assert verified_alone(rounds).height == rounds.height
        model = fit_cost_models(older, requests)["tiny"]
        assert model.verify_s == pytest.approx((0.05, 0.065, 0.08))


# rounds of two prompts, identical in every stream (greedy decoding): A0 drafts well, B0 not
ROUNDS = {
    "A0": [
        prefill(0.1),
        RoundSpec(drafted=2, accepted=2, draft_s=0.02, verify_s=0.08),
        RoundSpec(drafted=2, accepted=2, draft_s=0.02, verify_s=0.08),
    ],
    "B0": [
        prefill(0.1),
        RoundSpec(drafted=2, accepted=0, draft_s=0.02, verify_s=0.08),
        RoundSpec(drafted=2, accepted=0, draft_s=0.02, verify_s=0.08),
    ],
}
CATEGORY = {"A0": "A", "B0": "B"}


def study(multitask_prompts, multitask_walls):
    parts = [
        request(f"single-{p}", 0, p, CATEGORY[p], CATEGORY[p], ROUNDS[p], wall=0.5) for p in ROUNDS
    ]
    parts += [
        request("multi", i, p, CATEGORY[p], "mix", ROUNDS[p], wall=w)
        for i, (p, w) in enumerate(zip(multitask_prompts, multitask_walls, strict=True))
    ]
    events, requests = tables(parts)
    return with_modelled_seconds(requests, events, fit_cost_models(events, requests))


def test_constant_k_stream_with_the_same_prompts_has_a_modelled_gap_of_exactly_zero():
    # the wall clock saw the multitask stream 20% slower: noise, since the rounds are identical
    requests = study(["B0", "A0"], [0.6, 0.6])
    modelled = degradation(requests, seconds="modelled_s", n_boot=200).row(0, named=True)
    for part in ("total", "composition", "k_mismatch", "carry_over", "residual"):
        assert modelled[part] == 0.0, part
    wall = degradation(requests, n_boot=200).row(0, named=True)
    assert wall["residual"] == pytest.approx(0.2)


def test_constant_k_stream_with_other_task_shares_reports_composition_only_exactly():
    # A0 twice, B0 once: modelled A0 = 0.1 + 2 x 0.1 = 0.3 s for 7 tokens, B0 = 0.3 s for 3;
    # reference rate = 0.6 s / 10 tokens; stream 17 tokens -> T_ref = 1.02 s, T_M = 0.9 s
    requests = study(["A0", "B0", "A0"], [0.9, 0.1, 0.3])
    row = degradation(requests, seconds="modelled_s", n_boot=200).row(0, named=True)
    assert row["multitask_s"] == pytest.approx(0.9)
    assert row["reference_s"] == pytest.approx(1.02)
    assert row["composition"] == pytest.approx(-0.12)
    assert row["total"] == row["composition"]
    assert (row["k_mismatch"], row["carry_over"], row["residual"]) == (0.0, 0.0, 0.0)


def test_wall_clock_load_is_the_modelled_weighted_load_of_the_stream_over_its_counterparts():
    from specviz.metrics.accounting import wall_clock_load
    from specviz.metrics.synthetic import requests_from_rows

    rows = [dict(run_id=f"s-{c}", mixture=c, category=c, prompt_id=f"{c}{i}", new_tokens=10,
                 wall_s=1.0) for c in "AB" for i in range(2)]  # fmt: skip
    rows += [dict(run_id="m", mixture="mix", category=c, prompt_id=f"{c}{i}", new_tokens=10,
                  wall_s=1.0) for c in "AB" for i in range(2)]  # fmt: skip
    # single-task: modelled 1 s at load 1 and 3 s at load 2 per task -> L_S = (1 + 6) / 4;
    # multitask: every request 2 s at load 2 -> L_M = 2
    modelled = [1.0, 3.0, 1.0, 3.0, 2.0, 2.0, 2.0, 2.0]
    load = [1.0, 2.0, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0]
    priced = requests_from_rows(rows).with_columns(
        pl.Series("modelled_s", modelled), pl.Series("load_factor", load)
    )
    r = wall_clock_load(priced).row(0, named=True)
    assert r["single_task_load"] == pytest.approx(14 / 8)
    assert r["multitask_load"] == pytest.approx(2.0)
    assert r["load_shift"] == pytest.approx(2.0 / (14 / 8) - 1)
    assert (r["min_load"], r["max_load"]) == (1.0, 2.0)


def test_a_fitted_model_names_its_source_load_spread_and_samples():
    model = fit_cost_models(*tables(CALIBRATION), source="study")["tiny"]
    assert model.source == "study: median over 1 runs; request load factors 1.00-2.00x removed"
    assert model.samples == {
        "verify_rounds": 6,
        "draft_rounds": 3,
        "prefill_rounds": 3,
        "runs": 1,
    }


def test_one_prompt_length_gives_a_flat_prefill_cost_and_none_gives_zero():
    same = [calibration_request(i, 1.0, 20, s) for i, s in enumerate((0.1, 0.3, 0.2))]
    model = fit_cost_models(*tables(same))["tiny"]
    assert (model.prefill_intercept_s, model.prefill_s_per_token) == (pytest.approx(0.2), 0.0)
    assert model.prefill_s_per_token2 == 0.0
    events, requests = tables(CALIBRATION)
    unknown = requests.with_columns(
        pl.lit(None, dtype=pl.Int32).alias("prompt_tokens"),
        pl.lit(None, dtype=pl.List(pl.Int32)).alias("turn_prompt_tokens"),
    )
    model = fit_cost_models(events, unknown)["tiny"]
    assert (model.prefill_intercept_s, model.prefill_s_per_token) == (0.0, 0.0)
    assert model.prefill_s_per_token2 == 0.0 and model.prefill(500) == 0.0


def test_two_prompt_lengths_give_a_line_and_three_on_a_parabola_give_the_parabola():
    two = [calibration_request(i, 1.0, n, t) for i, (n, t) in enumerate([(10, 0.1), (30, 0.2)])]
    line = fit_cost_models(*tables(two))["tiny"]
    assert (line.prefill_intercept_s, line.prefill_s_per_token) == (
        pytest.approx(0.05),
        pytest.approx(0.005),
    )
    assert line.prefill_s_per_token2 == 0.0
    three = [
        calibration_request(i, 1.0, n, 0.02 + 4e-4 * n + 4e-6 * n * n)
        for i, n in enumerate([10, 100, 300])
    ]
    curve = fit_cost_models(*tables(three))["tiny"]
    assert curve.prefill_s_per_token2 == pytest.approx(4e-6)
    assert curve.prefill(300) == pytest.approx(0.02 + 4e-4 * 300 + 4e-6 * 300 * 300)


def test_rounds_that_cannot_calibrate_are_refused_naming_why():
    events, requests = tables(CALIBRATION)
    with pytest.raises(CalibrationError) as no_verify:
        fit_cost_models(events.filter(pl.col("prefill")), requests)
    assert str(no_verify.value) == (
        "pooled: median over 1 runs: no verify round to calibrate the verify cost from"
    )
    batched = events.with_columns(pl.lit(2, dtype=pl.Int16).alias("batch_size"))
    with pytest.raises(CalibrationError) as no_round:
        fit_cost_models(batched, requests)
    assert str(no_round.value) == "no unbatched round to calibrate a cost model from"


def test_a_target_without_a_cost_model_is_refused_by_name():
    events, requests = tables(CALIBRATION)
    with pytest.raises(CalibrationError) as caught:
        modelled_seconds(events, requests, {})
    assert str(caught.value) == "no cost model for target 'tiny'"


def test_batched_requests_are_left_out_of_the_priced_requests():
    events, requests = tables(CALIBRATION)
    models = fit_cost_models(events, requests)
    batched = requests.with_columns(
        pl.when(pl.col("request_id") == "cal-1").then(2).otherwise(None).alias("batch_size")
    )
    priced = with_modelled_seconds(batched, events, models)
    assert priced["request_id"].to_list() == ["cal-0", "cal-2"]
    assert priced["modelled_s"].to_list() == pytest.approx([0.25, 0.45])


def test_a_stream_without_single_task_counterparts_has_no_load_row():
    rows = [dict(run_id="m", mixture="mix", category="A", prompt_id="A0", new_tokens=10,
                 wall_s=1.0)]  # fmt: skip
    priced = requests_from_rows(rows).with_columns(
        pl.Series("modelled_s", [1.0]), pl.Series("load_factor", [1.0])
    )
    assert wall_clock_load(priced).shape == (0, 0)


def test_a_request_id_with_a_slash_keeps_its_load_factor():
    # a Hugging Face dataset's prompt ids may hold "/": the factor's key splits at the first one
    events, requests = tables(CALIBRATION)
    renamed = pl.col("request_id").str.replace("cal-", "hf/set/")
    factors = request_load_factors(
        events.with_columns(renamed), requests.with_columns(renamed)
    ).sort("request_id")
    assert factors.columns == ["run_id", "request_id", "load_factor"]
    assert factors["request_id"].to_list() == ["hf/set/0", "hf/set/1", "hf/set/2"]
    assert factors["load_factor"].to_list() == pytest.approx([1.0, 2.0, 1.0])


def renamed(frame: pl.DataFrame) -> pl.DataFrame:
    """Request ids whose order disagrees with their runs' (r1: z, y; r2: a), rows reversed."""
    ids = {"r1-0": "z", "r1-1": "y", "r2-0": "a"}
    return frame.with_columns(pl.col("request_id").replace(ids)).reverse()


def three_requests():
    parts = [
        request("r1", 0, "A0", "A", "A", ROUNDS["A0"]),
        request("r1", 1, "B0", "B", "B", ROUNDS["B0"]),
    ]
    parts.append(request("r2", 0, "A0", "A", "A", ROUNDS["A0"]))
    events, requests = tables(parts)
    return renamed(events), renamed(requests)


def test_the_round_table_lists_each_runs_requests_rounds_in_order_whatever_order_they_came_in():
    rounds = round_table(*three_requests())
    expected = [
        (run, req, i) for run, req in (("r1", "y"), ("r1", "z"), ("r2", "a")) for i in range(3)
    ]
    assert rounds.select("run_id", "request_id", "round").rows() == expected


def test_modelled_seconds_are_one_row_per_request_in_run_and_request_order_with_each_part():
    events, requests = three_requests()
    priced = modelled_seconds(events, requests, fit_cost_models(events, requests))
    assert priced.columns == ["run_id", "request_id", *MODELLED]
    assert priced.select("run_id", "request_id").rows() == [("r1", "y"), ("r1", "z"), ("r2", "a")]
    # every request: a prefill of 10 tokens (0.1 s) and two rounds drafting 2 (0.02 s) and
    # verifying 3 rows (0.08 s)
    assert priced["modelled_verify_s"].to_list() == pytest.approx([0.16] * 3)
    assert priced["modelled_draft_s"].to_list() == pytest.approx([0.04] * 3)
    assert priced["modelled_s"].to_list() == pytest.approx([0.3] * 3)


def test_each_turns_rounds_carry_that_turns_prompt_length_and_the_requests_where_it_has_none():
    # a three-turn request whose turn list names two turns, and a request without a turn list
    rounds = [
        prefill(0.1, turn=0),
        RoundSpec(drafted=0, verify_s=0.05, turn=0),
        prefill(0.2, turn=1),
        RoundSpec(drafted=0, verify_s=0.05, turn=1),
        prefill(0.3, turn=2),
    ]
    turns = request("t", 0, "p0", "A", "A", rounds, prompt_tokens=50)
    turns[1]["turn_prompt_tokens"] = [10, 30]
    single = request("t", 1, "p1", "A", "A", [prefill(0.1)], prompt_tokens=70)
    single[1]["turn_prompt_tokens"] = None
    events, requests = tables([turns, single])
    table = round_table(events, requests)
    assert table["prompt_tokens"].to_list() == [10, 10, 30, 30, 50, 70]
    # older run directories: no turn list at all, and only the columns the table needs
    older = requests.select("run_id", "request_id", "prompt_tokens")
    assert round_table(events, older)["prompt_tokens"].to_list() == [50] * 5 + [70]
    # each prefill priced at its turn's length on the line 0.05 s + 0.005 s per token
    model = fit_cost_models(*tables(CALIBRATION))["tiny"]
    priced = modelled_seconds(events, requests, {"tiny": model})
    assert priced["modelled_prefill_s"].to_list() == pytest.approx([0.1 + 0.2 + 0.3, 0.4])


def test_rounds_of_a_request_without_a_request_row_are_kept_with_an_unknown_prompt_length():
    events, requests = tables(CALIBRATION)
    table = round_table(events, requests.filter(pl.col("request_id") != "cal-1"))
    assert table.filter(pl.col("request_id") == "cal-1")["prompt_tokens"].to_list() == [None] * 3


def test_a_prefill_of_unknown_prompt_length_is_priced_at_the_lines_intercept_and_its_rounds_all_priced():
    events, requests = tables(CALIBRATION)
    model = fit_cost_models(events, requests)["tiny"]  # prefill: 0.05 s + 0.005 s per token
    unknown = requests.with_columns(
        pl.lit(None, dtype=pl.Int32).alias("prompt_tokens"),
        pl.lit(None, dtype=pl.List(pl.Int32)).alias("turn_prompt_tokens"),
    )
    priced = modelled_seconds(events, unknown, {"tiny": model})
    assert priced["modelled_prefill_s"].to_list() == pytest.approx([0.05] * 3)
    assert priced["modelled_s"].to_list() == pytest.approx([0.05 + 0.02 + 0.08 + 0.05] * 3)


def test_rounds_with_a_null_batch_size_count_as_unbatched():
    events, requests = tables(CALIBRATION)
    older = events.with_columns(pl.lit(None, dtype=pl.Int16).alias("batch_size"))
    assert round_table(older, requests).height == round_table(events, requests).height == 9


def test_requests_without_a_batch_size_column_are_all_priced_and_one_without_rounds_kept():
    events, requests = tables(CALIBRATION)
    models = fit_cost_models(events, requests)
    older = requests.drop("batch_size")
    priced = with_modelled_seconds(older, events.filter(pl.col("request_id") != "cal-2"), models)
    assert priced["request_id"].to_list() == ["cal-0", "cal-1", "cal-2"]
    assert priced["modelled_s"].to_list() == pytest.approx([0.25, 0.35, None])


def test_drafting_seconds_are_divided_by_the_requests_load_before_their_median():
    # ng-3 is the only request of drafter "ngram" and ran twice as slow: 0.06 s of drafting is
    # 0.03 s at the median load; cal-4 keeps the median request's load at 1
    ngram = [
        prefill(0.2),
        RoundSpec(drafted=2, accepted=1, draft_s=0.06, verify_s=0.16),
        RoundSpec(drafted=0, verify_s=0.1),
    ]
    parts = [
        *CALIBRATION,
        request("cal", 3, "p3", "A", "A", ngram, drafter="ngram", prompt_tokens=30),
        calibration_request(4, 1.0, 10, 0.1),
    ]
    model = fit_cost_models(*tables(parts))["tiny"]
    assert model.draft("ngram", 2) == pytest.approx(0.03)
    assert model.draft("model", 2) == pytest.approx(0.02)


def test_a_draft_curve_starts_at_zero_tokens_flat_below_its_first_measured_count():
    rounds = [
        prefill(0.1),
        RoundSpec(drafted=1, accepted=1, draft_s=0.01, verify_s=0.065),
        RoundSpec(drafted=3, accepted=1, draft_s=0.03, verify_s=0.08),
    ]
    model = fit_cost_models(*tables([request("d", 0, "p0", "A", "A", rounds)]))["tiny"]
    assert model.draft_s["model"] == pytest.approx((0.01, 0.01, 0.02, 0.03))


def test_the_baseline_never_gets_a_draft_curve_even_with_drafting_seconds_recorded():
    rounds = [prefill(0.1), RoundSpec(drafted=0, draft_s=0.01, verify_s=0.05)]
    parts = [*CALIBRATION, request("b", 0, "p9", "A", "A", rounds, drafter="none")]
    events, requests = tables(parts)
    model = fit_cost_models(events, requests)["tiny"]
    assert set(model.draft_s) == {"model"}
    priced = modelled_seconds(events, requests, {"tiny": model})
    assert priced.filter(pl.col("run_id") == "b")["modelled_draft_s"].to_list() == [0.0]


def test_a_request_that_ended_at_its_prefill_calibrates_the_prefill_at_its_own_seconds():
    # it has no verify round, so no load factor: its prefill counts as run at the median load.
    # Prefills (10, 0.1), (30, 0.2) and its (50, 0.4) lie on one parabola
    parts = [calibration_request(0, 1.0, 10, 0.1), calibration_request(2, 1.0, 30, 0.2)]
    parts.append(request("cal", 5, "p5", "A", "A", [prefill(0.4)], prompt_tokens=50))
    model = fit_cost_models(*tables(parts))["tiny"]
    assert model.prefill_s_per_token2 == pytest.approx(1.25e-4)
    assert [model.prefill(n) for n in (10, 30, 50)] == pytest.approx([0.1, 0.2, 0.4])


def test_prefill_rounds_calibrate_whatever_else_they_leave_unrecorded():
    events, requests = tables(CALIBRATION)
    unrecorded = events.with_columns(
        pl.when(pl.col("prefill")).then(None).otherwise(pl.col("draft_s")).alias("draft_s")
    )
    model = fit_cost_models(unrecorded, requests)["tiny"]
    assert (model.prefill_intercept_s, model.prefill_s_per_token) == (
        pytest.approx(0.05),
        pytest.approx(0.005),
    )


def test_rounds_without_a_positive_verify_time_give_no_load_factor_and_say_so():
    events, requests = tables(CALIBRATION)
    zero = events.with_columns(
        pl.when(pl.col("prefill")).then(pl.col("verify_s")).otherwise(0.0).alias("verify_s")
    )
    model = fit_cost_models(zero, requests, source="s")["tiny"]
    assert model.source == "s: median over 1 runs; request load factors n/a removed"


def test_a_verify_round_timed_at_zero_seconds_moves_no_load_factor():
    events, requests = tables(CALIBRATION)
    zero = events.with_columns(
        pl.when((pl.col("request_id") == "cal-0") & (pl.col("round") == 2))
        .then(0.0)
        .otherwise(pl.col("verify_s"))
        .alias("verify_s")
    )
    factors = request_load_factors(zero, requests).sort("request_id")
    assert factors["load_factor"].to_list() == pytest.approx([1.0, 2.0, 1.0])


def test_load_factors_of_requests_that_verified_different_row_counts_are_joined_through_shared_rows():
    # a verified 1 and 2 rows at load 1, b 2 and 3 rows at load 2, c 3 rows at load 1: only the
    # rows they share tie their loads together (a median polish)
    truth = {1: 0.05, 2: 0.065, 3: 0.08}
    design = {"a": (1.0, (1, 2)), "b": (2.0, (2, 3)), "c": (1.0, (3,))}
    rows = [("run", r, n, truth[n] * f) for r, (f, ns) in design.items() for n in ns]
    verify = pl.DataFrame(rows, schema=["run_id", "request_id", "rows", "verify_s"], orient="row")
    factors = load_factors(verify)
    assert factors == pytest.approx({"run/a": 1.0, "run/b": 2.0, "run/c": 1.0}, rel=1e-3)


def load_rows(config_rows):
    """A priced request table: (run_id, mixture, category, drafter, k, modelled_s, load)."""
    rows = [
        dict(run_id=run, mixture=mix, category=c, prompt_id=f"{c}{i}", drafter=d, k=k,
             new_tokens=10, wall_s=1.0)
        for i, (run, mix, c, d, k, _, _) in enumerate(config_rows)
    ]  # fmt: skip
    return requests_from_rows(rows).with_columns(
        pl.Series("modelled_s", [r[5] for r in config_rows]),
        pl.Series("load_factor", [r[6] for r in config_rows]),
    )


def test_a_streams_load_is_compared_with_its_tasks_single_task_runs_at_every_k_of_its_drafter():
    priced = load_rows(
        [
            # a stream of drafter "other" first: it has no single-task counterparts
            ("o", "mix", "A", "other", 2, 1.0, 3.0),
            ("o", "mix", "B", "other", 2, 1.0, 3.0),
            ("m", "mix", "A", "model", 2, 1.0, 2.0),
            ("m", "mix", "B", "model", 2, 1.0, 2.0),
            # its counterparts at k 1 and 3: L_S = (1 x 1 + 1 x 2) / 2
            ("s-A", "A", "A", "model", 1, 1.0, 1.0),
            ("s-B", "B", "B", "model", 3, 1.0, 2.0),
            # not counterparts: another drafter, another task
            ("s-n", "A", "A", "ngram", 2, 1.0, 9.0),
            ("s-C", "C", "C", "model", 2, 1.0, 9.0),
        ]
    )
    table = wall_clock_load(priced)
    assert table.columns == [
        *CONFIG,
        "mixture",
        "multitask_load",
        "single_task_load",
        "load_shift",
        "min_load",
        "max_load",
    ]
    row = table.row(0, named=True)
    assert table.height == 1 and (row["drafter"], row["k"], row["mixture"]) == ("model", 2, "mix")
    assert (row["multitask_load"], row["single_task_load"]) == pytest.approx((2.0, 1.5))
    assert (row["min_load"], row["max_load"]) == (1.0, 2.0)


def test_a_stream_with_one_single_task_counterpart_has_its_load_row():
    priced = load_rows(
        [
            ("m", "mix", "A", "model", 2, 1.0, 2.0),
            ("m", "mix", "B", "model", 2, 1.0, 2.0),
            ("s-A", "A", "A", "model", 2, 1.0, 1.0),
        ]
    )
    assert wall_clock_load(priced)["load_shift"].to_list() == pytest.approx([1.0])


def test_requests_of_co_decoded_runs_are_left_out_of_the_wall_clock_figures():
    _, requests = tables([*CALIBRATION, request("other", 0, "p9", "A", "A", ROUNDS["A0"])])
    metas = [{"run_id": "cal", "co_decoded": True}, {"run_id": "other"}]
    assert wall_clocked(requests, metas)["run_id"].to_list() == ["other"]
    assert wall_clocked(requests, [{"run_id": "cal", "co_decoded": False}]).equals(requests)
    assert wall_clocked(requests, []).equals(requests)


def test_the_decode_clock_takes_each_requests_prefill_out_of_both_clocks_and_nothing_else():
    requests = pl.DataFrame(
        {
            "request_id": ["a", "b"],
            "modelled_s": [3.0, 5.0],
            "modelled_prefill_s": [1.0, 0.5],
            "wall_s": [4.0, 6.0],
            "prefill_s": [1.5, 0.25],
        }
    )
    decoding = decode_clock(requests)
    assert decoding.columns == requests.columns
    assert decoding["modelled_s"].to_list() == [2.0, 4.5]
    assert decoding["wall_s"].to_list() == [2.5, 5.75]
    kept = ["request_id", "modelled_prefill_s", "prefill_s"]
    assert decoding.select(kept).equals(requests.select(kept))
    # a request table that was never priced (batched runs) has its wall clock only
    unpriced = decode_clock(requests.drop("modelled_s", "modelled_prefill_s"))
    assert unpriced["wall_s"].to_list() == [2.5, 5.75]
