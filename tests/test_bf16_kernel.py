"""specviz's bf16 GEMM kernel (specviz.lean.kernel): row-invariant, exact to bf16 rounding, and
the lean engine falls back to oneDNN, saying why, wherever it cannot run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from specviz.config import ModelSpec
from specviz.lean import kernel, lean_of
from specviz.lean.cache import LayerKV
from specviz.lean.kernel import KernelLinear, Library, Unavailable, linear_kernel, load_kernel
from specviz.lean.model import Dense, Packed, Rope, attend, rms_norm, rotate
from specviz.models import load_model

NO_BF16 = Path(__file__).with_name("cpuinfo_no_bf16.txt")
KERNEL = linear_kernel()
needs_kernel = pytest.mark.skipif(
    not isinstance(KERNEL, Library),
    reason=f"the kernel cannot run here: {getattr(KERNEL, 'reason', '')}",
)
# (out, in): SmolLM2's shapes, inputs that are not a whole number of 32-wide chunks, outputs
# that are not a whole number of 4-output blocks, a bias or not
SHAPES = [(960, 576, False), (576, 1536, False), (130, 96, True), (7, 40, True), (5, 33, False)]


def layer_and_inputs(
    out_features: int, in_features: int, bias: bool, rows: int, seed: int
) -> tuple[KernelLinear, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(out_features, in_features, generator=generator).to(torch.bfloat16)
    b = torch.randn(out_features, generator=generator) if bias else None
    x = torch.randn(rows, in_features, generator=generator).to(torch.bfloat16)
    assert isinstance(KERNEL, Library)
    return KernelLinear.of(KERNEL, weight, b), x, weight, b


@needs_kernel
@pytest.mark.parametrize(("out_features", "in_features", "bias"), SHAPES)
def test_each_row_of_a_product_equals_its_one_row_product_bit_for_bit(
    out_features, in_features, bias
):
    layer, x, _, _ = layer_and_inputs(out_features, in_features, bias, 13, seed=1)
    singles = torch.cat([layer(x[r : r + 1]) for r in range(13)])
    for rows in range(1, 14):  # one group of rows, two groups, three
        assert torch.equal(layer(x[:rows]), singles[:rows])
    backwards = layer(x.flip(0))  # a row's position does not matter either
    assert torch.equal(backwards, singles.flip(0))


@needs_kernel
@pytest.mark.parametrize(("out_features", "in_features", "bias"), SHAPES)
def test_the_kernel_agrees_with_float32_matmul_to_bf16_rounding(out_features, in_features, bias):
    layer, x, weight, b = layer_and_inputs(out_features, in_features, bias, 6, seed=2)
    got = layer(x)
    exact = x.float() @ weight.float().T + (0 if b is None else b)
    assert got.dtype == torch.bfloat16 and got.shape == exact.shape
    # one rounding to bf16 (8 significant bits) of a float32 sum: within half an ulp (at most
    # 2^-8 of the value), plus float32's own reassociation error
    assert ((got.float() - exact).abs() <= exact.abs() * 2**-8 + 1e-4).all()
    assert (got == exact.to(torch.bfloat16)).float().mean() > 0.99


# (heads, kv_heads, dim, rows): SmolLM2's heads; a head size not a whole number of 16-float
# vectors; the kernel's 128-wide specialisation with a group of 4 query heads whose 3 rows'
# 12 queries are cut mid-row into the kernel's sets of 6; more rows than one set holds
ATTENTION_SHAPES = [(9, 3, 64, 6), (4, 2, 16, 6), (2, 1, 20, 6), (8, 2, 128, 3), (9, 3, 64, 13)]


@needs_kernel
@pytest.mark.parametrize(("heads", "kv_heads", "dim", "rows"), ATTENTION_SHAPES)
def test_kernel_attention_equals_torch_attention_and_each_row_its_own(heads, kv_heads, dim, rows):
    generator = torch.Generator().manual_seed(3)
    length, capacity = 200 + rows, 256  # the cache holds the rows' own keys already
    keys = torch.randn(kv_heads, capacity, dim, generator=generator)
    values = torch.randn(kv_heads, capacity, dim, generator=generator)
    q = torch.randn(heads, rows, dim, generator=generator).to(torch.bfloat16)
    assert isinstance(KERNEL, Library)
    got = KERNEL.attend(q, keys, values, length)
    expected = attend(q, keys[:, :length], values[:, :length], length - rows, heads // kv_heads)
    assert got.dtype == torch.bfloat16
    # float32 throughout, rounded once: torch's bits on these shapes, and never more than one
    # bf16 rounding away from them, plus float32's own reassociation error where the weighted
    # sum cancels to near zero (one output of 3072 at 128 dimensions: -2.84e-5 against -2.86e-5)
    error = (got.float() - expected.float()).abs()
    assert (error <= expected.float().abs() * 2**-7 + 1e-6).all()
    assert (got == expected).float().mean() > 0.99
    one_by_one = [
        KERNEL.attend(q[:, j : j + 1], keys, values, length - rows + j + 1) for j in range(rows)
    ]
    assert torch.equal(got, torch.cat(one_by_one))


@needs_kernel
@pytest.mark.parametrize(("rows", "n"), [(1, 576), (6, 576), (8, 64), (3, 40)])
def test_kernel_rms_norm_equals_the_lean_rms_norm_row_by_row(rows, n):
    generator = torch.Generator().manual_seed(4)
    x = (torch.randn(rows, n, generator=generator) * 3).to(torch.bfloat16)
    weight = torch.randn(n, generator=generator).to(torch.bfloat16)
    assert isinstance(KERNEL, Library)
    got = KERNEL.rms_norm(x, weight, 1e-5)
    expected = rms_norm(x, weight, 1e-5)
    assert ((got.float() - expected.float()).abs() <= expected.float().abs() * 2**-7).all()
    assert (got == expected).float().mean() > 0.99
    assert torch.equal(
        got, torch.cat([KERNEL.rms_norm(x[r : r + 1], weight, 1e-5) for r in range(rows)])
    )


@needs_kernel
@pytest.mark.parametrize(("heads", "kv_heads", "dim"), [(9, 3, 64), (4, 2, 16)])
def test_kernel_rope_equals_torch_rope_and_writes_the_cache(heads, kv_heads, dim):
    generator = torch.Generator().manual_seed(5)
    rows, before = 6, 250  # the cache grows past its first capacity on the way
    qkv = torch.randn(rows, (heads + 2 * kv_heads) * dim, generator=generator).to(torch.bfloat16)
    rope = Rope(1.0 / (10000 ** (torch.arange(0, dim, 2).float() / dim)), 1.0, torch.bfloat16)
    cos, sin = rope.at(before, rows)
    kv = LayerKV(kv_heads, dim, torch.float32, torch.device("cpu"))
    kv.append(*[torch.zeros(kv_heads, before, dim)] * 2)
    q = torch.empty(heads, rows, dim, dtype=torch.bfloat16)
    assert isinstance(KERNEL, Library)
    KERNEL.rotate_into(qkv, cos, sin, q, kv, heads)
    qk = qkv[:, : (heads + kv_heads) * dim].view(rows, heads + kv_heads, dim).transpose(0, 1)
    expected = rotate(qk, cos, sin)
    v = qkv[:, (heads + kv_heads) * dim :].view(rows, kv_heads, dim).transpose(0, 1)
    assert torch.equal(q, expected[:heads])
    assert kv.length == before + rows
    assert torch.equal(kv.key_buffer[:, before : before + rows], expected[heads:].float())
    assert torch.equal(kv.value_buffer[:, before : before + rows], v.float())


def test_the_kernel_needs_avx512_bf16(tmp_path):
    found = load_kernel(NO_BF16, "gcc", tmp_path)
    assert isinstance(found, Unavailable) and "avx512_bf16" in found.reason
    assert not (tmp_path / "kernels").exists()  # nothing built for a CPU that cannot run it


def bf16_cpuinfo(tmp_path: Path) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor : 0\nflags : fpu sse2 {' '.join(kernel.CPU_FLAGS)}\n")
    return path


def test_without_a_compiler_the_kernel_is_unavailable_and_says_why(tmp_path):
    found = load_kernel(bf16_cpuinfo(tmp_path), None, tmp_path / "cache")
    assert isinstance(found, Unavailable) and "no C compiler" in found.reason


def test_a_failed_build_is_a_reason_and_leaves_no_library_behind(tmp_path):
    found = load_kernel(bf16_cpuinfo(tmp_path), "false", tmp_path / "cache")
    assert isinstance(found, Unavailable) and "building it failed (false" in found.reason
    assert list((tmp_path / "cache" / "kernels").iterdir()) == []


def test_an_unwritable_cache_is_a_reason_not_a_crash(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    found = load_kernel(bf16_cpuinfo(tmp_path), "gcc", blocked / "cache")
    assert isinstance(found, Unavailable) and "building it failed" in found.reason


def test_cc_names_the_compiler_and_a_missing_one_is_none(monkeypatch):
    monkeypatch.setenv("CC", "no-such-compiler-here")
    assert kernel.compiler() is None
    monkeypatch.setenv("CC", "true")
    assert kernel.compiler() is not None and kernel.compiler().endswith("true")


@needs_kernel
def test_the_kernel_is_built_once_per_source_and_reused(tmp_path):
    first = load_kernel(kernel.CPUINFO, kernel.compiler(), tmp_path)
    assert isinstance(first, Library) and first.path == kernel.library_path(tmp_path)
    again = load_kernel(kernel.CPUINFO, None, tmp_path)  # no compiler needed the second time
    assert isinstance(again, Library) and again.path == first.path


def bf16_engine(model_dir: Path, engine: str):
    loaded = load_model(ModelSpec(str(model_dir), device="cpu", dtype="bfloat16", engine=engine))
    lean = lean_of(loaded.model)
    assert lean is not None
    return loaded, lean


@needs_kernel
def test_bf16_lean_invariant_runs_on_the_kernel_without_padding(tiny_model_dir):
    loaded, lean = bf16_engine(tiny_model_dir, "lean-invariant")
    assert all(isinstance(f, KernelLinear) for f in lean.linears())
    assert lean.pad_rows == 0
    assert lean.kernels is not None  # its norms and attention run there too
    assert "specviz's AVX512-BF16 kernel" in loaded.engine_reason
    assert "row-invariant by construction" in loaded.engine_reason


def test_without_the_kernel_bf16_falls_back_to_onednn_with_padding_and_names_why(
    tiny_model_dir, monkeypatch
):
    monkeypatch.setattr("specviz.lean.kernel.built_kernel", lambda: Unavailable("no C compiler"))
    loaded, lean = bf16_engine(tiny_model_dir, "lean-invariant")
    assert all(isinstance(f, (Packed, Dense)) for f in lean.linears())
    assert lean.kernels is None
    assert lean.pad_rows == 8  # oneDNN's rows depend on the row count: padded passes
    assert "(specviz's kernel: no C compiler)" in loaded.engine_reason
    assert "every forward in passes of 8 rows" in loaded.engine_reason


def test_specviz_bf16_kernel_off_keeps_onednn(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("SPECVIZ_BF16_KERNEL", "off")
    loaded, lean = bf16_engine(tiny_model_dir, "lean")
    assert not any(isinstance(f, KernelLinear) for f in lean.linears())
    assert "turned off by $SPECVIZ_BF16_KERNEL=off" in loaded.engine_reason


@needs_kernel
def test_with_several_torch_threads_bf16_keeps_onednn_and_says_why(tiny_model_dir):
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        loaded, lean = bf16_engine(tiny_model_dir, "lean")
    finally:
        torch.set_num_threads(threads)
    assert not any(isinstance(f, KernelLinear) for f in lean.linears())
    assert "(specviz's kernel: one-threaded, torch runs 2)" in loaded.engine_reason


def test_float32_never_uses_the_kernel(tiny_model_dir):
    loaded = load_model(ModelSpec(str(tiny_model_dir), device="cpu", dtype="float32"))
    lean = lean_of(loaded.model)
    assert lean is not None and all(isinstance(f, Dense) for f in lean.linears())
    assert "kernel" not in loaded.engine_reason
