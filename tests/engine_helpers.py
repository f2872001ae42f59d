"""Small helpers for engine tests: decode a prompt and collect what the engine yields, or run
the ``specviz`` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import polars as pl
import torch

from specviz.config import DrafterConfig, ModelSpec, PolicyConfig, SamplingConfig
from specviz.drafter_factory import build_drafter
from specviz.engine import Decoder, Round, TurnEnd
from specviz.forward import new_cache
from specviz.models import ModelCache
from specviz.policies import build_policy
from specviz.workloads.prompt import Prompt

MODELS = ModelCache()


def make_decoder(
    target: str | Path,
    drafter: DrafterConfig = DrafterConfig(),
    policy: PolicyConfig = PolicyConfig(),
    sampling: SamplingConfig = SamplingConfig(),
    max_new_tokens: int = 48,
) -> Decoder:
    loaded = MODELS.get(ModelSpec(str(target)))
    cache = new_cache(loaded.model)
    generator = torch.Generator(device=loaded.device)
    built = build_drafter(drafter, loaded, cache, sampling, generator, MODELS)
    return Decoder(
        loaded,
        built,
        build_policy(policy, drafter=drafter.label),
        sampling,
        max_new_tokens,
        cache,
        generator,
    )


def decode(
    decoder: Decoder, prompt: Prompt, seed: int = 0
) -> tuple[list[tuple[int, ...]], list[Round]]:
    """(tokens per turn, rounds) of one request."""
    turns: list[tuple[int, ...]] = []
    rounds: list[Round] = []
    for record in decoder.decode(prompt, seed):
        if isinstance(record, Round):
            rounds.append(record)
        elif isinstance(record, TurnEnd):
            turns.append(record.tokens)
    return turns, rounds


def lossless_rounds(
    plain: Decoder, spec: Decoder, prompts: Sequence[Prompt], what: str
) -> list[Round]:
    """Every round ``spec`` ran over ``prompts``, each prompt decoded by ``plain`` then ``spec``
    and asserted to give the same tokens (greedy speculation is lossless; ``what`` names the
    drafter in the failure)."""
    rounds: list[Round] = []
    for prompt in prompts:
        want, _ = decode(plain, prompt)
        got, these = decode(spec, prompt)
        assert got == want, f"{what} diverged from greedy on {prompt.id}"
        rounds += these
    return rounds


def drop_requests_from(run_dir: Path, index: int) -> None:
    """Forget every request at or after ``index``, as if the run had been killed there."""
    for name in ("requests.parquet", "events.parquet"):
        table = pl.read_parquet(run_dir / name)
        table.filter(pl.col("request_index") < index).write_parquet(run_dir / name)


PROMPTS = [
    Prompt(
        "copy",
        "extraction",
        ("Copy this exactly: the cat sat on the mat. the cat sat on the mat.",),
    ),
    Prompt("chat", "writing", ("Tell me a story about a robot.", "Now make it shorter.")),
    Prompt("code", "coding", ("def f(x):\n    return x + 1\n\nRewrite f with a docstring.",)),
]


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``python -m specviz ARGS`` offline, as a user runs it; output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "specviz", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **(env or {})},
        timeout=timeout,
    )


def write_short_questions(path: Path, categories: tuple[str, ...]) -> Path:
    """An MT-Bench-format question file: 2 short prompts per category, the first with a second
    turn (the study tests' tiny workload)."""
    rows = [
        {
            "question_id": f"{c}-{i}",
            "category": c,
            "turns": [f"{c} {i}: say hi"] + (["more please"] if i == 0 else []),
        }
        for c in categories
        for i in range(2)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
