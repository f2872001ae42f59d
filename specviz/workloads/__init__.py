"""Task-labelled workloads, mixtures of tasks, and the request streams studies run."""

from specviz.workloads.loaders import (
    ColumnMapping,
    HFSource,
    builtin_path,
    builtin_prompts,
    load_prompts,
)
from specviz.workloads.mixtures import (
    Mixture,
    MixtureError,
    build_stream,
    compose,
    custom,
    parse_weights,
    single_task,
    sweep,
    uniform,
)
from specviz.workloads.prompt import Prompt, WorkloadError

__all__ = [
    "ColumnMapping",
    "HFSource",
    "Mixture",
    "MixtureError",
    "Prompt",
    "WorkloadError",
    "build_stream",
    "builtin_path",
    "builtin_prompts",
    "compose",
    "custom",
    "load_prompts",
    "parse_weights",
    "single_task",
    "sweep",
    "uniform",
]
