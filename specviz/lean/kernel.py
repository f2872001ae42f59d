"""specviz's own bf16 GEMM for a few rows: ``y = x W^T (+ b)`` on AVX512-BF16, row-invariant;
and, in the same C library, what a bf16 lean forward does between its GEMMs, one row at a time.

The kernel (``bf16_kernels.c`` beside this file) accumulates each output of each row in one
fp32 accumulator, one ``_mm512_dpbf16_ps`` per 32 inputs in a fixed order, reduces it in a
fixed order and rounds once to bf16, whatever the number of rows: a row gets the same bits in
a 1-row product as in an 8-row one, by construction (no padding to a fixed row count), and
each chunk of weights is loaded once for up to 6 rows, so a 6-row verify reads the weights
once as a one-row forward does. Measured on an AMD EPYC with avx512_bf16, one thread
(``bench/bf16_kernel.py``, SmolLM2-135M's 211 linear layers as 121 fused matrices): see
docs/engine.md.

The library also computes a lean forward's RMSNorm (:meth:`Library.rms_norm`), RoPE with the
cache writes (:meth:`Library.rotate_into`) and row-by-row attention (:meth:`Library.attend`),
each row alone: one C call each where torch took ~6 calls of ~2-12 us, with the bits of the
torch operations they replace on the tested shapes (RoPE, RMSNorm), or within one bf16 rounding
of them (attention's exp). Measured: a one-row SmolLM2 forward went from ~19 to ~16 ms of CPU
time with them (one thread, the machine shared).

How it is built, and why: plain C compiled once with the system's C compiler
(``$CC``, else ``gcc``, else ``cc``) into ``<specviz cache>/kernels/<hash of source and
flags>.so`` and called through ``ctypes`` on tensors' ``data_ptr()``. It includes no torch
header, so it builds in about a second and needs nothing but a C compiler;
``torch.utils.cpp_extension`` would compile against torch's C++ headers (tens of seconds, a
C++ toolchain matching torch's ABI) for a function that needs none of them.

It degrades cleanly: on a CPU without avx512_bf16 (read from the real ``/proc/cpuinfo``, never
from ``$SPECVIZ_CPUINFO``, which only steers the dtype choice: executing these instructions
where they do not exist would kill the process), without a compiler, or when the build or
the load fails, :func:`linear_kernel` returns an :class:`Unavailable` with the reason, and the
lean engine keeps oneDNN's packed GEMM and torch's operations (:func:`specviz.lean.model.packed`),
naming the reason
in ``run.json``'s ``engine_reason``.

The kernel runs on one thread: the engine uses it only where torch runs on one thread (the
default on a machine of 2 cores, ``specviz.threads``); with more threads oneDNN's GEMM, which
splits the work between them, is kept.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from specviz.lean.cache import LayerKV
from specviz.model_source import cache_root

SOURCE = Path(__file__).with_name("bf16_kernels.c")
FLAGS = (
    "-O3",
    "-ffp-contract=off",
    "-mavx512f",
    "-mavx512bw",
    "-mavx512vl",
    "-mavx512bf16",
    "-shared",
    "-fPIC",
)
CPU_FLAGS = ("avx512f", "avx512bw", "avx512vl", "avx512_bf16")  # what the kernel executes
CPUINFO = Path("/proc/cpuinfo")
BUILD_TIMEOUT_S = 120
CHUNK = 32  # inputs per _mm512_dpbf16_ps
KERNEL_ENV = "SPECVIZ_BF16_KERNEL"  # "off": the lean engine keeps oneDNN


@dataclass(frozen=True)
class Unavailable:
    """Why the kernel cannot run here (one line)."""

    reason: str


@dataclass(frozen=True)
class Library:
    """The built kernels: the linear layer's and attention's entry points, and the packed
    layout's block size."""

    path: Path
    function: ctypes._CFuncPtr
    attention: ctypes._CFuncPtr
    norm: ctypes._CFuncPtr
    rope: ctypes._CFuncPtr
    block: int

    def rotate_into(
        self,
        qkv: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        q_out: torch.Tensor,
        kv: LayerKV,
        heads: int,
    ) -> None:
        """RoPE of ``qkv``'s rows ((rows, (heads + 2 kv_heads) dim) bf16, unit stride along a
        row) with ``cos``/``sin`` (rows, dim) bf16: the rotated queries into ``q_out``
        (heads, rows, dim) bf16, the rotated keys and the values appended to ``kv``; bit for bit
        what :func:`specviz.lean.model.rotate` computes (each product and sum a bf16 one)."""
        rows = qkv.shape[0]
        kv_heads, _, dim = kv.key_buffer.shape
        if qkv.stride(1) != 1 or not (cos.is_contiguous() and sin.is_contiguous()):
            raise ValueError("rotate_into needs unit-stride rows and contiguous cos/sin")
        if q_out.stride(2) != 1 or q_out.stride(1) != dim:
            raise ValueError("rotate_into writes queries of unit-stride rows")
        start = kv.length
        kv.reserve(start + rows)
        self.rope(
            qkv.data_ptr(),
            qkv.stride(0),
            rows,
            heads,
            kv_heads,
            dim,
            cos.data_ptr(),
            sin.data_ptr(),
            q_out.data_ptr(),
            q_out.stride(0),
            kv.key_buffer.data_ptr(),
            kv.value_buffer.data_ptr(),
            kv.capacity,
            start,
        )
        kv.length = start + rows

    def rms_norm(self, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        """transformers' RMSNorm of the rows of ``x`` (rows, n) bf16 with a bf16 ``weight``,
        each row alone (row-invariant); (rows, n) bf16."""
        x = x.contiguous()
        rows, n = x.shape
        out = torch.empty_like(x)
        self.norm(x.data_ptr(), rows, n, weight.data_ptr(), eps, out.data_ptr())
        return out

    def attend(
        self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, length: int
    ) -> torch.Tensor:
        """Causal attention of ``q`` ``(heads, rows, dim)`` bf16, the last ``rows`` positions of
        a cache whose first ``length`` positions are valid in ``keys``/``values``
        ``(kv_heads, capacity, dim)`` float32: row ``j`` over positions ``[0, length - rows + j]``,
        each row alone (row-invariant); ``(rows, heads * dim)`` bf16."""
        heads, rows, dim = q.shape
        kv_heads, capacity, _ = keys.shape
        out = torch.empty(rows, heads * dim, dtype=torch.bfloat16, device=q.device)
        if rows == 0:
            return out
        if q.stride(2) != 1 or not keys.is_contiguous() or not values.is_contiguous():
            raise ValueError("attend needs unit-stride query rows and contiguous caches")
        status = self.attention(
            q.data_ptr(),
            q.stride(0),
            q.stride(1),
            rows,
            heads,
            kv_heads,
            dim,
            keys.data_ptr(),
            values.data_ptr(),
            capacity,
            length - rows + 1,
            dim**-0.5,
            out.data_ptr(),
        )
        if status != 0:
            raise ValueError(f"the attention kernel refused a head size of {dim} (at most 256)")
        return out

    def run(
        self,
        x: torch.Tensor,
        packed: torch.Tensor,
        out_features: int,
        bias: torch.Tensor | None,
    ) -> torch.Tensor:
        """``x`` (rows, in) bf16 contiguous times the packed weight; (rows, out) bf16."""
        rows, inputs = x.shape
        y = torch.empty(rows, out_features, dtype=torch.bfloat16, device=x.device)
        if rows:
            self.function(
                x.data_ptr(),
                rows,
                inputs,
                packed.data_ptr(),
                out_features,
                None if bias is None else bias.data_ptr(),
                y.data_ptr(),
            )
        return y


def cpu_flags(cpuinfo: Path) -> set[str]:
    """The flags on the first ``flags`` line of ``cpuinfo`` (empty when unreadable)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


def compiler() -> str | None:
    """``$CC`` when set (even to a missing program: then there is none), else gcc, else cc."""
    given = os.environ.get("CC")
    if given:
        return shutil.which(given)
    return shutil.which("gcc") or shutil.which("cc")


def library_path(cache: Path) -> Path:
    """Where the build of this source with these flags is kept."""
    key = hashlib.sha256(SOURCE.read_bytes() + " ".join(FLAGS).encode()).hexdigest()[:16]
    return cache / "kernels" / f"bf16_kernels-{key}.so"


def build(cc: str, target: Path) -> str | None:
    """Compile the kernel into ``target`` (written whole, then renamed, so concurrent builds
    never load a half-written file); the compiler's complaint, or None."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
    except OSError as err:  # a read-only cache, a full disk: a reason, not a crash
        return str(err)
    try:
        done = subprocess.run(
            [cc, *FLAGS, "-o", tmp, str(SOURCE)],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
        )
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            return lines[0] if lines else f"exit status {done.returncode}"
        os.replace(tmp, target)
        return None
    except (OSError, subprocess.TimeoutExpired) as err:
        return str(err)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


_P, _I, _F = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float
#: each entry point of bf16_kernels.c, in :class:`Library`'s order: (restype, argtypes)
_SIGNATURES: dict[str, tuple[type | None, tuple[type, ...]]] = {
    "specviz_linear_bf16": (None, (_P, _I, _I, _P, _I, _P, _P)),
    "specviz_attend_bf16": (ctypes.c_int, (_P, *[_I] * 6, _P, _P, _I, _I, _F, _P)),
    "specviz_rms_norm_bf16": (None, (_P, _I, _I, _P, _F, _P)),
    "specviz_rope_bf16": (None, (_P, *[_I] * 5, _P, _P, _P, _I, _P, _P, _I, _I)),
}


def _bound(lib: ctypes.CDLL, name: str) -> ctypes._CFuncPtr:
    """Entry point ``name`` of ``lib`` with its C signature (:data:`_SIGNATURES`)."""
    function = getattr(lib, name)
    function.restype, argtypes = _SIGNATURES[name]
    function.argtypes = list(argtypes)
    return function


def load_kernel(cpuinfo: Path, cc: str | None, cache: Path) -> Library | Unavailable:
    """The kernel built (once per source and flags) under ``cache`` and loaded, or why not."""
    missing = [f for f in CPU_FLAGS if f not in cpu_flags(cpuinfo)]
    if missing:
        return Unavailable(f"this CPU lacks {', '.join(missing)}")
    target = library_path(cache)
    if not target.exists():
        if cc is None:
            return Unavailable("no C compiler (gcc, cc or $CC) to build it")
        failed = build(cc, target)
        if failed is not None:
            return Unavailable(f"building it failed ({cc}: {failed})")
    try:
        return open_library(target)
    except OSError as err:
        return Unavailable(f"loading {target} failed: {err}")


def open_library(path: Path) -> Library:
    """The library built at ``path``, its entry points bound (OSError when it cannot be loaded).
    ``bench/engine.py --baseline-kernel`` opens another version's build with it."""
    lib = ctypes.CDLL(str(path))
    function, attention, norm, rope = (_bound(lib, name) for name in _SIGNATURES)
    return Library(path, function, attention, norm, rope, int(lib.specviz_block()))


@functools.cache
def built_kernel() -> Library | Unavailable:
    """This machine's kernel (built on first use, then cached on disk and in the process)."""
    return load_kernel(CPUINFO, compiler(), cache_root())


def linear_kernel() -> Library | Unavailable:
    """The kernel, unless ``$SPECVIZ_BF16_KERNEL`` is ``off`` (read at every engine build: a
    way to compare with oneDNN in one process, and to rule the kernel out)."""
    if os.environ.get(KERNEL_ENV, "").strip().lower() == "off":
        return Unavailable(f"turned off by ${KERNEL_ENV}=off")
    return built_kernel()


def pack(weight: torch.Tensor, block: int) -> torch.Tensor:
    """``weight`` (out, in) in the kernel's layout: ``[out/block][in/32][block][32]``, zero-padded
    to whole blocks of outputs and chunks of inputs (the zeros add nothing: exact)."""
    out_features, in_features = weight.shape
    blocks = -(-out_features // block)
    chunks = -(-in_features // CHUNK)
    padded = F.pad(weight, (0, chunks * CHUNK - in_features, 0, blocks * block - out_features))
    tiles = padded.reshape(blocks, block, chunks, CHUNK).permute(0, 2, 1, 3)
    return tiles.contiguous().reshape(-1)


@dataclass(frozen=True)
class KernelLinear:
    """A bf16 linear layer on the kernel: ``x @ weight.T + bias`` with the bias in fp32 added
    before the one rounding to bf16. Its rows are independent of each other by construction
    (``row_invariant``), so a row-invariant engine needs no padding to a fixed row count."""

    library: Library
    packed: torch.Tensor  # the weight in the kernel's layout (a copy of the model's weight)
    bias: torch.Tensor | None  # fp32
    in_features: int
    out_features: int
    activation_dtype: torch.dtype = torch.bfloat16
    row_invariant = True  # class attribute, as on the engine's other linear layers

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.library.run(x.contiguous(), self.packed, self.out_features, self.bias)

    @staticmethod
    def of(library: Library, weight: torch.Tensor, bias: torch.Tensor | None) -> KernelLinear:
        out_features, in_features = weight.shape
        return KernelLinear(
            library,
            pack(weight, library.block),
            None if bias is None else bias.float().contiguous(),
            int(in_features),
            int(out_features),
        )
