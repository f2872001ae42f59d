"""The bf16 linear layers of SmolLM2-135M: specviz's kernel against oneDNN, by rows.

SmolLM2-135M's 211 linear layers as the lean engine fuses them, 121 matrices (30 layers x
q/k/v 576->960, o 576->576, gate/up 576->3072, down 1536->576; the output layer 576->49152),
random bf16 weights of those shapes (~270 MB), called one after another as a forward calls
them, one thread, for 1, 2, 4, 6, 8 rows:

- ``kernel``: specviz's AVX512-BF16 kernel (:mod:`specviz.lean.kernel`, row-invariant);
- ``onednn``: the weight reordered once for oneDNN, ``torch.ops.mkldnn._linear_pointwise``
  (the lean engine's bf16 path without the kernel, :class:`specviz.lean.model.Packed`);
- ``F.linear``: torch's plain bf16 ``F.linear`` on the same weights.

Methods are interleaved in every repeat; figures are ms per pass over all 121 matrices, CPU
time of this thread (wall time beside it in the JSON), median and fastest of ``--repeats``;
``read`` is the floor: a float32 ``sum`` over the same bytes (reading them once).
Also measured: the kernel's build time (a fresh compile into a temporary directory), that a
row of an 8-row product equals its one-row product bit for bit, and the share of outputs equal
to the float32 product rounded to bf16. Prints a table, then one JSON line.

    .venv/bin/python bench/bf16_kernel.py [--repeats 15] [--rows 1,2,4,6,8]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from specviz.lean.kernel import CPUINFO, KernelLinear, Library, compiler, load_kernel

HIDDEN, HEADS, KV_HEADS, HEAD_DIM, MLP, VOCAB, LAYERS = 576, 9, 3, 64, 1536, 49152, 30
LAYER_SHAPES = (  # (out, in)
    ((HEADS + 2 * KV_HEADS) * HEAD_DIM, HIDDEN),
    (HIDDEN, HEADS * HEAD_DIM),
    (2 * MLP, HIDDEN),
    (HIDDEN, MLP),
)
SHAPES = LAYER_SHAPES * LAYERS + ((VOCAB, HIDDEN),)

Method = Callable[[torch.Tensor], torch.Tensor]


def methods(library: Library, weights: list[torch.Tensor]) -> dict[str, list[Method]]:
    """Per method, one callable per matrix."""
    kernel: list[Method] = [KernelLinear.of(library, w, None) for w in weights]
    onednn: list[Method] = []
    plain: list[Method] = []
    for w in weights:
        reordered = torch.ops.mkldnn._reorder_linear_weight(w, 8)
        onednn.append(
            lambda x, p=reordered: torch.ops.mkldnn._linear_pointwise(x, p, None, "none", [], "")
        )
        plain.append(lambda x, w=w: F.linear(x, w))
    read: list[Method] = [lambda x, w=w: w.view(torch.float32).sum() for w in weights]
    return {"kernel": kernel, "onednn": onednn, "F.linear": plain, "read": read}


def one_pass(layers: list[Method], inputs: list[torch.Tensor]) -> tuple[float, float]:
    """(CPU ms, wall ms) of calling every matrix once."""
    cpu, wall = time.thread_time(), time.perf_counter()
    for layer, x in zip(layers, inputs, strict=True):
        layer(x)
    return (time.thread_time() - cpu) * 1e3, (time.perf_counter() - wall) * 1e3


def build_time() -> tuple[float, Library]:
    """Seconds to compile and load the kernel from scratch (a fresh cache directory)."""
    cc = compiler()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        library = load_kernel(CPUINFO, cc, Path(tmp))
        took = time.perf_counter() - start
    if not isinstance(library, Library):
        raise SystemExit(f"the kernel is not available here: {library.reason}")
    return took, library


def exactness(library: Library, generator: torch.Generator) -> dict[str, float]:
    """Row invariance and agreement with float32 on a few of the real shapes."""
    invariant, equal, total = True, 0, 0
    for out_features, in_features in LAYER_SHAPES:
        w = torch.randn(out_features, in_features, generator=generator).to(torch.bfloat16) * 0.05
        layer = KernelLinear.of(library, w, None)
        x = torch.randn(8, in_features, generator=generator).to(torch.bfloat16)
        many = layer(x)
        invariant &= all(torch.equal(layer(x[r : r + 1]), many[r : r + 1]) for r in range(8))
        reference = (x.float() @ w.float().T).to(torch.bfloat16)
        equal += int((many == reference).sum())
        total += many.numel()
    return {"row_invariant": float(invariant), "equal_to_float32_rounded": equal / total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--rows", default="1,2,4,6,8")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows_list = [int(r) for r in args.rows.split(",")]
    compile_s, library = build_time()
    generator = torch.Generator().manual_seed(0)
    weights = [
        (torch.randn(o, i, generator=generator) * 0.05).to(torch.bfloat16) for o, i in SHAPES
    ]
    table = methods(library, weights)
    cpu: dict[str, dict[int, list[float]]] = {m: {r: [] for r in rows_list} for m in table}
    wall: dict[str, dict[int, list[float]]] = {m: {r: [] for r in rows_list} for m in table}
    for rows in rows_list:
        inputs = [torch.randn(rows, i, generator=generator).to(torch.bfloat16) for _, i in SHAPES]
        for layers in table.values():  # warm-up
            one_pass(layers, inputs)
        for _ in range(args.repeats):
            for name, layers in table.items():
                c, w = one_pass(layers, inputs)
                cpu[name][rows].append(c)
                wall[name][rows].append(w)
    median = {m: {r: statistics.median(v) for r, v in by.items()} for m, by in cpu.items()}
    fastest = {m: {r: min(v) for r, v in by.items()} for m, by in cpu.items()}
    checks = exactness(library, generator)
    print(
        f"SmolLM2-135M's {len(SHAPES)} bf16 matrices, one thread, CPU ms per pass "
        f"(median / fastest of {args.repeats}); kernel built in {compile_s:.2f} s"
    )
    print("| method | " + " | ".join(f"{r} row{'s' if r > 1 else ''}" for r in rows_list) + " |")
    print("|---|" + "---|" * len(rows_list))
    for name in table:
        cells = [f"{median[name][r]:.1f} / {fastest[name][r]:.1f}" for r in rows_list]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(
        f"kernel: a row of an 8-row product equals its one-row product: {bool(checks['row_invariant'])}"
    )
    print(
        f"kernel: outputs equal to the float32 product rounded to bf16: {checks['equal_to_float32_rounded']:.4%}"
    )
    print(
        json.dumps(
            {
                "bench": "bf16_kernel",
                "matrices": len(SHAPES),
                "rows": rows_list,
                "cpu_ms_median": median,
                "cpu_ms_fastest": fastest,
                "wall_ms_median": {
                    m: {r: statistics.median(v) for r, v in by.items()} for m, by in wall.items()
                },
                "kernel_vs_onednn_median": {
                    r: median["kernel"][r] / median["onednn"][r] for r in rows_list
                },
                "compile_s": compile_s,
                **checks,
                "load_average": os.getloadavg(),
            }
        )
    )


if __name__ == "__main__":
    main()
