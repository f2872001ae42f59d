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
# # Token explorer
#
# One request at a time: every drafted token and every token the target added, coloured by
# what happened to it (accepted, rejected, never verified, correction, bonus), round by round.
# Pick the category and the request with the controls under the chart.

# %% tags=["parameters"]
source = "runs/default"  # a run or study directory (`make demo` writes runs/default)
categories = []  # task categories to keep; empty: all
explorer_run = ""  # run_id to explore; empty: the first multitask run with a drafter
requests_per_category = 5  # requests per category embedded in the chart
decode_tokens = True  # show token text (needs the target's tokenizer), else token ids

# %%
from specviz.metrics import label_streams
from specviz.plots import token_rounds, token_table
from specviz.report import (
    colored_output,
    enable_charts,
    first_requests,
    load_runs,
    output_text,
    publish,
    token_decoder,
    token_legend,
    trajectory_run_id,
)
from specviz.report.locate import locate_source

enable_charts()

# %%
data = load_runs(locate_source(source), categories)
run_id = explorer_run or trajectory_run_id(label_streams(data.requests).collect())
if run_id is None:
    raise ValueError(f"{source}: no run with a drafter to explore")
events = data.events.filter(data.events["run_id"] == run_id)
requests = data.requests.filter(data.requests["run_id"] == run_id)
decode = token_decoder(data.run_meta(run_id)) if decode_tokens else None
tokens = token_table(events, decode)
counts = tokens.group_by("status").len().sort("status")
publish("tokens.run_id", run_id)
publish("tokens.decoded", decode is not None)
publish("tokens.status_counts", dict(counts.iter_rows()))
print(
    f"run {run_id}: {requests.height} requests, {tokens.height} tokens"
    + ("" if decode else " (token ids: the tokenizer could not be loaded)")
)

# %%
token_rounds(tokens, requests_per_category=requests_per_category)

# %% [markdown]
# ## Output text, token by token
# The first request of each category; hover a token for its round and probabilities. Below
# each, its prompt turns (click to open) and the recorded output text.

# %%
from IPython.display import display

display(token_legend())
for request_id in first_requests(requests):
    display(colored_output(tokens, request_id))
    display(output_text(requests, request_id))

# %% tags=["live-only"]
# Live exploration in JupyterLab (removed from the exported report: widgets need a kernel).
import ipywidgets as widgets

picker = widgets.Dropdown(
    options=[
        (f"{r['category']} · {r['request_id']}", r["request_id"])
        for r in requests.select("category", "request_id").iter_rows(named=True)
    ],
    description="Request",
)
view = widgets.Output()


def show(change=None):
    view.clear_output()
    with view:
        display(colored_output(tokens, picker.value))
        display(output_text(requests, picker.value))


picker.observe(show, names="value")
show()
widgets.VBox([picker, view])
