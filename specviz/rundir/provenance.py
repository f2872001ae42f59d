"""Where a run was decoded, for its ``run.json``: the models as loaded, the hardware, the
library versions and the git commit of specviz (reads loaded models and torch; a run
directory's readers never import it)."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

import specviz

if TYPE_CHECKING:
    import torch

    from specviz.models import LoadedModel


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(specviz.__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def model_info(loaded: LoadedModel) -> dict[str, Any]:
    from specviz.precision import greedy_equality  # torch: only where a model is loaded

    return {
        "name": loaded.spec.name,
        "source": loaded.source,
        "revision": loaded.revision,
        "class": type(loaded.model).__name__,
        "parameters": sum(p.numel() for p in loaded.model.parameters()),
        "embedding_rows": loaded.model.get_input_embeddings().weight.shape[0],
        "tokenizer_size": len(loaded.tokenizer),
        "dtype": str(loaded.dtype).removeprefix("torch."),
        "dtype_reason": loaded.dtype_reason,
        "greedy_equality": greedy_equality(loaded.dtype, loaded.engine),
        "engine": loaded.engine,
        "engine_reason": loaded.engine_reason,
        "device": str(loaded.device),
    }


def hardware(device: torch.device) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def versions() -> dict[str, str]:
    import torch
    import transformers

    return {
        "specviz": specviz.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "polars": pl.__version__,
    }
