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
# # Measured by a server: acceptance and speed by task
#
# A study sent to an OpenAI-compatible server (`specviz run/study --endpoint`). Acceptance
# comes from the server's per-request counts (vLLM's or SGLang's fields), time to first token,
# chunk gaps and tokens per second from the client's clock; each figure and table says which.
# What needs per-round events is not computed (`docs/serving.md`).

# %% tags=["parameters"]
source = "runs/default"  # a server-measured run or study directory
categories = []  # task categories to keep; empty: all
n_boot = 1000  # bootstrap resamples for the speedup intervals (when a baseline was served)

# %%
import polars as pl
from IPython.display import display

from specviz.metrics import per_position, speedup
from specviz.metrics.speedup import BASELINE, missing_baseline
from specviz.plots import metric_by_category, per_position_curves
from specviz.report import enable_charts, publish
from specviz.report.first_screen import ANSWER_ID
from specviz.report.locate import locate_source
from specviz.report.numbers import downloads, frame_table
from specviz.report.served import (
    ACCEPTANCE_SOURCE,
    CLOCK_SOURCE,
    answer_html,
    headline,
    load_served,
    measured_marker,
    missing_metrics_note,
    note_html,
    per_position_note,
    served_rows,
)

enable_charts()

# %%
data = load_served(locate_source(source), categories)
found = headline(data)
rows = served_rows(data)
publish("served.answer", found | {"metrics_sources": list(data.metrics_sources)})
publish("served.rows", rows.to_dicts())
# one bar per method and stream in the per-category charts
by_stream = rows.with_columns(pl.format("{} · {}", "method", "stream").alias("method"))
acceptance_known = rows["mean_acceptance_length"].is_not_null().any()
# llama.cpp counts drafted and accepted tokens but not spec steps: the acceptance rate only
rate_known = rows["acceptance_rate"].is_not_null().any()

# %% tags=["first-screen"]
answer_html(data, found, ANSWER_ID)

# %% tags=["first-screen"]
if acceptance_known:
    display(measured_marker(ACCEPTANCE_SOURCE + " (vLLM's mean acceptance length)"))
    chart = metric_by_category(
        by_stream,
        "mean_acceptance_length",
        reference=1.0,
        heading="Mean acceptance length (1 + accepted / spec steps), single-task vs multitask",
    )
elif rate_known:
    display(measured_marker(ACCEPTANCE_SOURCE + " (no spec steps reported: acceptance rate)"))
    chart = metric_by_category(
        by_stream.filter(pl.col("acceptance_rate").is_not_null()),
        "acceptance_rate",
        heading="Acceptance rate (accepted / drafted), single-task vs multitask",
    )
else:
    chart = note_html(missing_metrics_note(data) or "")
chart

# %% [markdown]
# ## Acceptance rate
# Accepted draft tokens over drafted tokens, as the server counted them (vLLM's draft
# acceptance rate).

# %%
note = missing_metrics_note(data)
if note:
    display(note_html(note))
if rate_known:
    display(measured_marker(ACCEPTANCE_SOURCE))
    display(metric_by_category(by_stream.filter(pl.col("acceptance_rate").is_not_null()),
                               "acceptance_rate", heading="Acceptance rate by category"))

# %% [markdown]
# ## Acceptance by draft position
# Accepted over drafts that reached the position, from the server's per-step counts (vLLM
# `detailed`); a histogram of accepted drafts per step cannot give it when drafts vary in
# length.

# %%
why = per_position_note(data)
if why is None:
    positions = per_position(
        data.events.join(
            data.requests.select("run_id", "request_id", "stream"), on=["run_id", "request_id"]
        ).with_columns(pl.format("{} · {}", "method", "stream").alias("method")),
        by=["category", "method"],
    )
    publish("served.per_position", positions.to_dicts())
    display(measured_marker("per-position acceptance: the server's per-step counts (detailed)"))
    display(per_position_curves(positions))
else:
    display(note_html(why))

# %% [markdown]
# ## Tokens per second and time to first token
# On the client's clock: each request's wall time from sending it to the end of its stream,
# queueing behind other requests and the server's batch included. They describe this
# deployment at this load; compare streams sent at the same concurrency and request rate.

# %%
display(measured_marker(CLOCK_SOURCE))
display(metric_by_category(by_stream, "tokens_per_s", heading="Tokens per second (client's clock)"))
metric_by_category(
    by_stream, "ttft_s_median", heading="Median time to first token, seconds (client's clock)"
)

# %%
served_baseline = (data.requests["drafter"] == BASELINE).any()
drafted = (data.requests["drafter"] != BASELINE).any()
if served_baseline and drafted and missing_baseline(data.requests).height == 0:
    speedups = speedup(data.requests, by=["category", "method"], n_boot=n_boot)
    publish("served.speedup", speedups.to_dicts())
    display(measured_marker(CLOCK_SOURCE + " (the baseline server's requests, same prompts)"))
    display(
        metric_by_category(
            speedups,
            "speedup_total",
            ci=("speedup_total_low", "speedup_total_high"),
            reference=1.0,
            heading="Speedup over the baseline server (client's clock)",
        )
    )
else:
    display(note_html("No speedup: no baseline server (--endpoint baseline=URL) answered the "
                      "same prompts."))

# %% [markdown]
# ## The numbers
# Every method, category and stream; the requests, with the server's figures beside them, can
# be downloaded as CSV (embedded in this page).

# %%
display(measured_marker(ACCEPTANCE_SOURCE, CLOCK_SOURCE))
display(
    frame_table(
        rows,
        {
            "method": "method",
            "category": "category",
            "stream": "stream",
            "requests": "requests",
            "acceptance_rate": "acceptance rate (server)",
            "mean_acceptance_length": "mean acceptance length (server)",
            "ttft_s_median": "median TTFT s (client)",
            "itl_s_median": "median chunk gap s (client)",
            "tokens_per_s": "tokens/s (client)",
        },
    )
)
downloads(
    {
        "requests.csv": (data.requests.sort("run_id", "request_index"), "every request"),
        "served.csv": (rows, "every method, category and stream"),
    }
)

# %% [markdown]
# ## Per-request distributions
# How the requests spread, as NVIDIA AIPerf reports them, from the server's per-request counts
# (acceptance length in vLLM's convention, 1 + accepted / spec steps) and the client's clock
# (tokens per second, latency). A server reports no draft or verify times, so there is no time
# split.

# %%
from specviz.metrics.distributions import server_distributions
from specviz.report.distributions import distributions_html

per_request = server_distributions(data.requests)
publish("served.distributions", per_request)
display(measured_marker(ACCEPTANCE_SOURCE, CLOCK_SOURCE))
distributions_html(per_request)
