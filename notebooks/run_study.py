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
# # Run a study
#
# Runs every condition of a study file (single-task and multitask mixtures, every drafter,
# policy and k, plus the autoregressive baseline) into a study directory, so that a whole
# pipeline can be driven by papermill:
#
# ```
# jupytext --to ipynb -o - notebooks/run_study.py | papermill - out.ipynb -p study_file studies/default.toml
# ```
#
# An interrupted study resumes where it stopped (`resume = True`).

# %% tags=["parameters"]
study_file = "studies/default.toml"  # the study to run
out_dir = ""  # where to write it; empty: results/<study name>
resume = True  # continue a study directory that already holds some of its runs

# %%
from specviz.report import publish
from specviz.study import default_out_dir, load_study, run_study

study = load_study(study_file)
target = out_dir or str(default_out_dir(study))
outcome = run_study(study, target, resume=resume)
publish(
    "study.outcome",
    {
        "out_dir": str(outcome.out_dir),
        "units_total": outcome.units_total,
        "units_run": outcome.units_run,
        "units_already_done": outcome.units_already_done,
        "complete": outcome.complete,
    },
)
print(f"{outcome.out_dir}: {outcome.units_run} run(s) done now, "
      f"{outcome.units_already_done} already done, complete: {outcome.complete}")
