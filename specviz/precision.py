"""Which floating-point type a model runs in, and why.

``dtype = "auto"`` resolves to:

- bfloat16 on CUDA (the field's setting);
- bfloat16 on a CPU that computes it natively: its ``/proc/cpuinfo`` flags list ``amx_bf16``
  (Intel AMX) or ``avx512_bf16`` (AVX512-BF16). Measured on an AMX CPU (SmolLM2-135M, one
  thread, 200-token context): one cached forward 49 ms in bf16 against 87 ms in float32, and a
  4-row verify 55 ms against 114, so speculation pays where float32 made it a slowdown;
- float32 on any other CPU: without those instructions bf16 is emulated, and slower.

The CPU is detected, not guessed: a CPU whose flags cannot be read counts as without bf16.
``--dtype`` overrides the choice; ``--dtype q4`` runs a GGUF's own 4-bit weights with bf16
activations on the lean engine (:mod:`specviz.lean.q4`, docs/engine.md). ``run.json`` records the dtype and the reason
(``models.target.dtype_reason``). In reduced precision greedy speculative output may part from
plain greedy output at a near-tie (docs/metrics.md, "Losslessness by dtype").
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # CPU flags of native bfloat16 arithmetic
CPUINFO_ENV = "SPECVIZ_CPUINFO"  # the file the detection reads instead of /proc/cpuinfo (tests)


@dataclass(frozen=True)
class DtypeChoice:
    """The dtype a model loads in and one line saying why."""

    dtype: torch.dtype
    reason: str


def bf16_flags(cpuinfo: str) -> tuple[str, ...]:
    """The native-bf16 flags (:data:`BF16_FLAGS`) on the first ``flags`` line of ``cpuinfo``."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            present = set(value.split())
            return tuple(f for f in BF16_FLAGS if f in present)
    return ()


def cpu_bf16_flags() -> tuple[str, ...]:
    """This CPU's native-bf16 flags; empty when it has none or ``/proc/cpuinfo`` is unreadable.

    ``$SPECVIZ_CPUINFO`` names another file to read: the test suite points it at a CPU without
    bf16 so that its exact-equality tests run in float32 on every machine (and its subprocesses
    inherit that), and tests fake a bf16 CPU with it."""
    try:
        return bf16_flags(Path(os.environ.get(CPUINFO_ENV, "/proc/cpuinfo")).read_text())
    except OSError:
        return ()


def choose_dtype(requested: str, device: torch.device) -> DtypeChoice:
    """The dtype for ``requested`` (``auto`` or a torch dtype name) on ``device``."""
    if requested == "q4":
        return DtypeChoice(
            torch.bfloat16,
            "--dtype q4: the GGUF's Q4_1 weights in torch's int4 kernel, bf16 activations "
            "(specviz.lean.q4)",
        )
    if requested != "auto":
        return DtypeChoice(getattr(torch, requested), f"--dtype {requested}")
    if device.type == "cuda":
        return DtypeChoice(torch.bfloat16, "auto: bfloat16 on CUDA")
    flags = cpu_bf16_flags()
    if flags:
        return DtypeChoice(torch.bfloat16, f"auto: the CPU has native bf16 ({', '.join(flags)})")
    return DtypeChoice(
        torch.float32, f"auto: float32, the CPU lacks native bf16 ({' / '.join(BF16_FLAGS)})"
    )


def greedy_equality(dtype: torch.dtype, engine: str = "transformers") -> str:
    """What greedy speculation promises against plain greedy in ``dtype`` on ``engine`` (run.json
    records it; docs/metrics.md, "Losslessness by dtype"; docs/engine.md)."""
    if engine == "lean-invariant":
        return "exact: token for token (each row computed as in a one-row forward; tested)"
    if dtype in (torch.float32, torch.float64):
        return "exact: token for token (kernel rounding ~1e-7 of a logit; tested)"
    return (
        "up to near-ties: a (k+1)-row verify may resolve a near-tie other than a 1-row forward; "
        "compare with the baseline (specviz.metrics.greedy_divergence), or use "
        "--engine lean-invariant"
    )
