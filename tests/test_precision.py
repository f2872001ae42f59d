"""dtype ``auto``: bfloat16 where the CPU computes it natively, float32 elsewhere, and why."""

from __future__ import annotations

import json

import pytest
import torch

from specviz.cli import main
from specviz.config import ModelSpec
from specviz.models import load_model
from specviz.precision import bf16_flags, choose_dtype

CPU = torch.device("cpu")
AMX = "processor\t: 0\nflags\t\t: fpu avx2 avx512f amx_tile amx_bf16 amx_int8\n"
AVX512_BF16 = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n"
AVX2 = "processor\t: 0\nflags\t\t: fpu avx2 fma\n"


@pytest.fixture
def cpuinfo(tmp_path, monkeypatch):
    """Fake the CPU's flags: write them to a file the detection reads instead of /proc/cpuinfo."""

    def fake(text: str) -> None:
        path = tmp_path / "cpuinfo"
        path.write_text(text)
        monkeypatch.setenv("SPECVIZ_CPUINFO", str(path))

    return fake


def test_bf16_flags_are_read_from_the_flags_line_only():
    assert bf16_flags(AMX) == ("amx_bf16",)
    assert bf16_flags(AVX512_BF16) == ("avx512_bf16",)
    assert bf16_flags(AVX2) == ()
    assert bf16_flags("model name\t: amx_bf16 lookalike\n") == ()


@pytest.mark.parametrize("text", [AMX, AVX512_BF16])
def test_auto_picks_bfloat16_on_a_cpu_with_native_bf16(cpuinfo, text):
    cpuinfo(text)
    choice = choose_dtype("auto", CPU)
    assert choice.dtype == torch.bfloat16 and "native bf16" in choice.reason


def test_auto_picks_float32_on_a_cpu_without_native_bf16(cpuinfo):
    cpuinfo(AVX2)
    choice = choose_dtype("auto", CPU)
    assert choice.dtype == torch.float32 and "lacks native bf16" in choice.reason


def test_unreadable_cpuinfo_counts_as_no_bf16(monkeypatch, tmp_path):
    monkeypatch.setenv("SPECVIZ_CPUINFO", str(tmp_path / "missing"))
    assert choose_dtype("auto", CPU).dtype == torch.float32


def test_dtype_flag_overrides_the_detection(cpuinfo):
    cpuinfo(AMX)
    assert choose_dtype("float32", CPU).dtype == torch.float32
    cpuinfo(AVX2)
    forced = choose_dtype("bfloat16", CPU)
    assert forced.dtype == torch.bfloat16 and forced.reason == "--dtype bfloat16"


def test_auto_is_bfloat16_on_cuda(cpuinfo):
    cpuinfo(AVX2)
    assert choose_dtype("auto", torch.device("cuda")).dtype == torch.bfloat16


def test_loaded_model_runs_in_the_chosen_dtype(cpuinfo, tiny_model_dir):
    cpuinfo(AMX)
    loaded = load_model(ModelSpec(str(tiny_model_dir)))
    assert loaded.dtype == torch.bfloat16 and "amx_bf16" in loaded.dtype_reason


def test_run_json_records_the_dtype_and_why(cpuinfo, tiny_model_dir, tmp_path):
    cpuinfo(AMX)
    out = tmp_path / "run"
    args = ["run", "--target", str(tiny_model_dir), "--limit", "1", "--max-new-tokens", "4"]
    assert main([*args, "--out", str(out), "--quiet"]) == 0
    target = json.loads((out / "run.json").read_text())["models"]["target"]
    assert target["dtype"] == "bfloat16"
    assert target["dtype_reason"] == "auto: the CPU has native bf16 (amx_bf16)"
    # engine auto runs reduced precision row-invariant: the promise stays exact
    assert target["engine"] == "lean-invariant"
    assert target["greedy_equality"].startswith("exact")


def test_run_json_says_plain_lean_bf16_is_equal_only_up_to_near_ties(
    cpuinfo, tiny_model_dir, tmp_path
):
    cpuinfo(AMX)
    out = tmp_path / "run"
    args = ["run", "--target", str(tiny_model_dir), "--limit", "1", "--max-new-tokens", "4"]
    assert main([*args, "--engine", "lean", "--out", str(out), "--quiet"]) == 0
    target = json.loads((out / "run.json").read_text())["models"]["target"]
    assert target["engine"] == "lean"
    assert target["greedy_equality"].startswith("up to near-ties")


def test_run_json_promises_exact_equality_in_float32(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    args = ["run", "--target", str(tiny_model_dir), "--limit", "1", "--max-new-tokens", "4"]
    assert main([*args, "--out", str(out), "--quiet"]) == 0
    target = json.loads((out / "run.json").read_text())["models"]["target"]
    assert target["dtype"] == "float32" and target["greedy_equality"].startswith("exact")


def test_resuming_where_auto_now_picks_another_dtype_is_refused(
    cpuinfo, tiny_model_dir, tmp_path, capsys
):
    out = tmp_path / "run"
    args = ["run", "--target", str(tiny_model_dir), "--limit", "2", "--max-new-tokens", "4"]
    cpuinfo(AVX2)
    assert main([*args, "--out", str(out), "--quiet"]) == 0
    before = (out / "run.json").read_text()
    cpuinfo(AMX)
    assert main([*args, "--out", str(out), "--quiet", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "decoded with its target in float32, but it loads in bfloat16" in err
    assert len(err.strip().splitlines()) == 1
    assert (out / "run.json").read_text() == before
    cpuinfo(AVX2)
    assert main([*args, "--out", str(out), "--quiet", "--resume"]) == 0
