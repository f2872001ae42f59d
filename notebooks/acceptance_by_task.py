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
# # Acceptance and speed by task
#
# Acceptance rate, per-position acceptance, mean accepted length, tokens per second and speedup
# over the autoregressive baseline, for every task category and method (drafter, k-policy, k).
# Every number comes from `specviz.metrics`; the formulas are in `docs/metrics.md`.

# %% tags=["parameters"]
source = "runs/default"  # a run or study directory (`make demo` writes runs/default)
categories = []  # task categories to keep; empty: all
n_boot = 1000  # bootstrap resamples for the intervals

# %%
import polars as pl

from specviz.metrics import metric_intervals, per_position, request_summary, speedup, summary
from specviz.plots import metric_by_category, per_position_curves
from specviz.report import enable_charts, load_runs, publish, with_intervals
from specviz.report.locate import locate_source
from specviz.report.answer import priced_or_none
from specviz.report.numbers import downloads, frame_table

enable_charts()

# %%
data = load_runs(locate_source(source), categories)
by = ["category", "method"]
table = summary(data.events, by=by)
intervals = metric_intervals(
    data.events, by=by, metrics=["acceptance_rate", "mean_accepted_length"], n_boot=n_boot
)
table = with_intervals(table, intervals, by)
publish("acceptance.summary", table.to_dicts())

# %% [markdown]
# ## Acceptance rate
# Accepted drafted tokens over drafted tokens (vLLM's draft acceptance rate). It depends on k:
# drafts after the first rejection count as not accepted.

# %%
metric_by_category(
    table.filter(table["drafted"] > 0),
    "acceptance_rate",
    ci=("acceptance_rate_low", "acceptance_rate_high"),
)

# %% [markdown]
# ## Acceptance by draft position
# Accepted over drafts that reached the position (all earlier drafts accepted): comparable
# across k. The dropdown picks a category.

# %%
positions = per_position(data.events, by=by)
publish("acceptance.per_position", positions.to_dicts())
per_position_curves(positions)

# %% [markdown]
# ## Mean accepted length
# Tokens emitted per verify step, the correction or bonus token included: plain decoding
# scores 1.00 (Spec-Bench's "#mean accepted tokens").

# %%
metric_by_category(
    table,
    "mean_accepted_length",
    ci=("mean_accepted_length_low", "mean_accepted_length_high"),
    reference=1.0,
)

# %% [markdown]
# ## Tokens per second and speedup
# Tokens per second and the speedup over the baseline on the same prompts (ratio of total
# throughputs, bootstrap interval over requests), on modelled seconds: every request's rounds
# priced with the study's cost curve, as in the headline. The diamonds are the wall clock, the
# check (it moves with whatever else the machine ran). Batched runs cannot be priced: their
# charts are wall clock.

# %%
throughput = request_summary(data.requests, by=by)
publish("acceptance.throughput", throughput.to_dicts())
speedups = speedup(data.requests, by=by, n_boot=n_boot)
publish("acceptance.speedup", speedups.to_dicts())
wall = throughput.select(*by, pl.col("tokens_per_s").alias("wall_tokens_per_s"))
wall_speedup = speedups.select(*by, pl.col("speedup_total").alias("speedup_wall"))
answer_priced = priced_or_none(data)
if answer_priced is not None:
    on_modelled = answer_priced.with_columns(pl.col("modelled_s").alias("wall_s"))
    modelled_tps = request_summary(on_modelled, by=by).rename(
        {"tokens_per_s": "modelled_tokens_per_s"}
    )
    modelled_speedup = speedup(answer_priced, by=by, n_boot=n_boot, seconds="modelled_s")
    speed = modelled_speedup.rename({"speedup_total": "speedup_modelled"}).join(
        wall_speedup, on=by, how="left"
    )
    tps_chart = metric_by_category(
        modelled_tps.join(wall, on=by, how="left"),
        "modelled_tokens_per_s",
        check="wall_tokens_per_s",
    )
    speed_chart = metric_by_category(
        speed,
        "speedup_modelled",
        ci=("speedup_total_low", "speedup_total_high"),
        reference=1.0,
        check="speedup_wall",
    )
else:
    tps_chart = metric_by_category(throughput.join(wall, on=by), "wall_tokens_per_s")
    speed_chart = metric_by_category(
        speedups.rename({"speedup_total": "speedup_wall"}),
        "speedup_wall",
        ci=("speedup_total_low", "speedup_total_high"),
        reference=1.0,
    )
tps_chart

# %%
speed_chart

# %% [markdown]
# ## The numbers
# Every category and method (sorted by category, then method); the same table and the
# speedups can be downloaded as CSV (embedded in this page).

# %%
numbers = table.join(
    speedups.select("category", "method", "speedup_total"), on=by, how="left"
).sort(by)
frame_table(
    numbers,
    {
        "category": "category",
        "method": "method",
        "requests": "requests",
        "drafted": "drafted tokens",
        "accepted": "accepted tokens",
        "acceptance_rate": "acceptance rate",
        "alpha": "alpha",
        "mean_accepted_length": "mean accepted length",
        "tokens_per_s": "tokens/s (forward time)",
        "speedup_total": "speedup (wall clock)",
    },
)

# %%
downloads({"categories.csv": (numbers, "every category and method")})

# %% [markdown]
# ## Per-request distributions
# How the requests spread, as NVIDIA AIPerf reports them (per method, task and stream kind):
# acceptance length (tokens per verify step, bonus token included), acceptance rate, tokens per
# second and latency as request-weighted and token-weighted means, percentiles and minimum;
# the share of forward time in drafting, verifying and prefill; and the spec steps by accepted
# drafts. The same numbers are in `specviz summary --json` (`distributions`); the formulas are
# in `docs/metrics.md`.

# %%
from specviz.report.distributions import distributions_answer, distributions_html

per_request = distributions_answer(data)
publish("acceptance.distributions", per_request)
distributions_html(per_request)
