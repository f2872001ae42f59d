# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: specviz (.venv)
#     language: python
#     name: specviz
# ---

# %% [markdown]
# # Single-task vs multitask: where the speed goes
#
# The same prompts served as single-task streams and as multitask mixtures: throughput and
# acceptance side by side, the sweep from one task to the uniform mix, the decomposition of the
# multitask stream's extra time, the draft length k across task switches, and the speedup that
# Leviathan et al.'s model predicts against the one measured.

# %% tags=["parameters"]
source = "runs/default"  # a run or study directory (`make demo` writes runs/default)
categories = []  # task categories to keep; empty: all
n_boot = 1000  # bootstrap resamples for the intervals
trajectory_run = ""  # run_id for the k trajectory; empty: the first multitask run with a drafter

# %%
import polars as pl

from specviz.metrics import (
    degradation,
    label_streams,
    predicted_speedup_curve,
    request_summary,
    speedup,
    theory_vs_measured,
)
from specviz.metrics.accounting import decode_clock
from specviz.plots import (
    degradation_bars,
    k_trajectory,
    mixture_sweep,
    predicted_speedup_by_k,
    single_vs_multitask,
    task_share,
    theory_vs_measurement,
)
from specviz.plots.answer import acceptance_by_stream, decomposition_terms
from specviz.report import (
    decomposable,
    enable_charts,
    load_runs,
    publish,
    stream_labels,
    trajectory_run_id,
)
from specviz.report.answer import priced_requests, study_answer
from specviz.report.first_screen import (
    acceptance_streams,
    answer_html,
    decomposition_long,
    footnote_html,
)
from specviz.report.locate import locate_source
from specviz.report.numbers import downloads

enable_charts()

# %%
data = load_runs(locate_source(source), categories)
requests = stream_labels(label_streams(data.requests).collect())
publish(
    "report.data",
    {
        "runs": len(data.run_dirs),
        "requests": data.requests.height,
        "categories": list(data.categories),
        "methods": list(data.methods),
    },
)

# %% [markdown]
# ## The answer, cost-accounted
# Every request's rounds priced with one cost curve calibrated over the whole study (modelled
# seconds), beside the wall clock; the summary at the top of the report is built from this.
# The per-request and per-stream data of this report can be downloaded here (CSV, embedded).

# %%
answer = study_answer(data, n_boot=n_boot)
publish("answer", answer)
if answer["requests"]:  # unbatched runs: priced by cost accounting
    priced = stream_labels(label_streams(priced_requests(data)).collect())
    per_stream = request_summary(priced, by=["method", "mixture", "stream"]).join(
        priced.group_by("method", "mixture", "stream").agg(pl.col("modelled_s").sum()),
        on=["method", "mixture", "stream"],
    )
    links = downloads(
        {
            "requests.csv": (
                priced.sort("run_id", "request_index"),
                "every request, modelled and wall seconds",
            ),
            "streams.csv": (per_stream.sort("method", "mixture"), "every stream"),
        }
    )
else:
    priced, links = requests, downloads({"requests.csv": (requests, "every request")})
links

# %% [markdown]
# ## The answer in one screen
# The finding, the decomposition of every multitask stream's extra time (modelled, each term
# with its 95% interval; the diamond is the wall-clock total, the check), and acceptance per
# category single-task vs multitask. The report shows these cells first.

# %% tags=["first-screen"]
answer_html(answer)

# %% tags=["first-screen"]
if answer["streams"]:
    first = decomposition_terms(decomposition_long(answer))
else:
    first = "No multitask stream with single-task runs of the same method: nothing to decompose."
first

# %% tags=["first-screen"]
footnote_html(answer)

# %% tags=["first-screen"]
acceptance = acceptance_streams(data, n_boot=n_boot)
publish("collapse.acceptance_streams", acceptance.to_dicts())
acceptance_by_stream(acceptance, method=answer["headline"].get("method"))

# %% [markdown]
# ## Throughput and acceptance, single-task vs multitask
# Tokens per second and acceptance from the request table, pooled over each kind of stream (a
# stream is single-task when all its requests share one category). Tokens per second are
# modelled (every request's rounds priced with the study's cost curve, as in the headline);
# the diamonds are the wall clock, the check: it moves with whatever else the machine ran.

# %%
by_stream = ["method", "stream"]
streams = request_summary(requests, by=by_stream).with_columns(
    pl.col("tokens_per_s").alias("wall_tokens_per_s")
)
if answer["requests"]:  # the same tokens / seconds, on modelled seconds
    on_modelled = priced.with_columns(pl.col("modelled_s").alias("wall_s"))
    modelled_tps = request_summary(on_modelled, by=by_stream).select(
        *by_stream, pl.col("tokens_per_s").alias("modelled_tokens_per_s")
    )
    streams = streams.join(modelled_tps, on=by_stream, how="left")
    speed_chart = single_vs_multitask(
        streams, "modelled_tokens_per_s", check="wall_tokens_per_s"
    )
else:
    speed_chart = single_vs_multitask(streams, "wall_tokens_per_s")
publish("collapse.streams", streams.to_dicts())
speed_chart

# %%
single_vs_multitask(streams.filter(streams["acceptance_rate"].is_not_null()), "acceptance_rate")

# %% [markdown]
# ## From one task to the uniform mix
# Speedup over the baseline of every mixture, against the share of its largest task
# (1.0: a single task; 1/n: the uniform mix of n tasks), on modelled seconds (wall clock when
# the runs are batched and cannot be priced).

# %%
clock = "modelled_s" if answer["requests"] else "wall_s"
by_mixture = speedup(priced, by=["mixture", "method"], n_boot=n_boot, seconds=clock)
sweep = by_mixture.join(task_share(data.requests), on="mixture", how="left")
publish("collapse.sweep", sweep.to_dicts())
mixture_sweep(sweep, "speedup_total", clock="modelled" if answer["requests"] else "wall clock")

# %% [markdown]
# ## Why the multitask stream is slower
# The multitask stream's extra seconds against the single-task runs of the same method, split
# into composition, tuning (a badly chosen global k, not a multitask cost), k mismatch, carry-over
# and residual (definitions in `docs/metrics.md`),
# in modelled decode seconds (prefill forwards excluded, as in the summary; the wall-clock
# decomposition is in the summary table as the check).

# %%
if decomposable(requests):
    parts = stream_labels(degradation(decode_clock(requests), n_boot=n_boot))
    publish("collapse.degradation", parts.to_dicts())
    if answer["requests"]:
        decoding = decode_clock(priced)
        modelled = stream_labels(degradation(decoding, n_boot=n_boot, seconds="modelled_s"))
        publish("collapse.degradation_modelled", modelled.to_dicts())
        chart = degradation_bars(modelled)
    else:
        chart = degradation_bars(parts)
else:
    publish("collapse.degradation", [])
    chart = "No multitask stream with single-task runs of the same method: nothing to decompose."
chart

# %% [markdown]
# ## The draft length k across task switches
# Per request (top, drag to select) and per verify round (bottom). A policy whose state
# persists across requests carries the k it learned on one task into the next.

# %%
run_id = trajectory_run or trajectory_run_id(requests)
k_trajectory(data.events.filter(data.events["run_id"] == run_id)) if run_id else "No run drafts."

# %% [markdown]
# ## Theory vs measurement
# The decode speedup predicted from each group's measured alpha, draft cost and verify cost
# against the one measured; then the prediction at every k, with a slider.

# %%
theory = stream_labels(theory_vs_measured(data.events, by=["drafter", "policy", "k", "category"]))
publish("collapse.theory", theory.to_dicts())
theory_vs_measurement(theory)

# %%
curve = predicted_speedup_curve(data.events, by=["drafter", "category"], ks=range(1, 11))
predicted_speedup_by_k(curve, measured_k=sorted(set(data.requests["k"].to_list()) - {0}))
