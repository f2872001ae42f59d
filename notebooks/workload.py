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
# # The workload
#
# What the streams are made of, so the multitask stream can be judged before the numbers built
# on it: the data sets and their versions, how prompts were sampled, prompt and output lengths
# per category, the task shares measured on real traffic beside published ones, and how well the
# labeller that measured them labels prompts it was not fitted on (`docs/workloads.md`).

# %% tags=["parameters"]
source = "runs/default"  # a run or study directory (`make demo` writes runs/default)
categories = []  # task categories to keep; empty: all

# %%
from IPython.display import display

from specviz.report import load_runs, publish
from specviz.report.locate import locate_source
from specviz.report.numbers import frame_table
from specviz.report.workload import (
    confusion_frame,
    data_sets,
    length_distribution,
    published_table,
    recorded_lengths,
    shares_table,
    traffic_ids,
)
from specviz.workloads.labeller import labeller_accuracy  # held out: never on its training data

data = load_runs(locate_source(source), categories)
manifest = data.manifest

# %% [markdown]
# ## Data sets and sampling

# %%
frame_table(data_sets(manifest), {"data set": "data set", "prompts": "prompts", "how": "how"})

# %% [markdown]
# ## Prompt and output lengths per category
# Tokens of the first turn with the chat template, and new tokens over all turns, of the
# baseline's requests (each prompt once; outputs are capped by the study's max_new_tokens).
# For the real-traffic sample, the recorded lengths: the recorded reply is the output length
# vLLM's benchmark asks for.

# %%
lengths = length_distribution(data.requests, traffic_ids(manifest))
publish("workload.lengths", lengths.to_dicts())
display(frame_table(lengths, {c: c for c in lengths.columns}))
if traffic_ids(manifest):
    recorded = recorded_lengths(manifest)
    display(frame_table(recorded, {c: c for c in recorded.columns}))

# %% [markdown]
# ## Task shares: measured on ShareGPT, beside published shares
# Each MT-Bench category's share of the 17,395 ShareGPT conversations with a human turn, as the
# labeller labels their first human turn, with 95% Wilson intervals (sampling noise only: the
# labeller's errors below are larger). `other`: prompts the labeller does not place. Published
# shares use other labels (the last column says how they differ).

# %%
display(frame_table(shares_table(), {c: c for c in shares_table().columns}))
published = published_table()
frame_table(published, {c: c for c in published.columns})

# %% [markdown]
# ## The labeller's held-out accuracy
# Rows are true labels, columns the labeller's; it abstains (`other`) rather than forcing a
# category, so most errors sit in the `other` column.

# %%
for name, confusion in labeller_accuracy():
    print(f"{name}: accuracy {confusion.accuracy:.3f} ({confusion.total} prompts)")
    matrix = confusion_frame(confusion)
    display(frame_table(matrix, {c: c for c in matrix.columns}))
