"""Does bf16 greedy speculation reproduce bf16 greedy decoding, and what does exactness cost?

The embedded model in bf16, on ``--engine lean`` and ``--engine lean-invariant`` (rows computed
independently: on specviz's bf16 kernel by construction, else every forward in passes of 8
rows; attention row by row: specviz.lean.model). For each engine: plain greedy
decoding of ``--prompts`` single-turn built-in prompts (``--new-tokens`` each), then greedy
prompt lookup with a constant k for each of ``--ks``; a request *diverges* when its speculative
output differs from the same engine's plain output anywhere (specviz.metrics.greedy_divergence's
definition). Tokens per second are wall time of decoding (prefill included), methods
interleaved per prompt. Prints a table, then one JSON line.

    .venv/bin/python bench/greedy_bf16.py [--prompts 11] [--new-tokens 64] [--ks 2,5]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from specviz.config import DrafterConfig, ModelSpec, PolicyConfig, SamplingConfig
from specviz.drafter_factory import build_drafter
from specviz.engine import Decoder, TurnEnd
from specviz.forward import new_cache
from specviz.models import LoadedModel, ModelCache
from specviz.policies import build_policy
from specviz.precision import cpu_bf16_flags
from specviz.workloads import builtin_prompts
from specviz.workloads.prompt import Prompt

ENGINES = ("lean", "lean-invariant")


def decoder(loaded: LoadedModel, models: ModelCache, k: int, new_tokens: int) -> Decoder:
    drafter = DrafterConfig("prompt-lookup") if k else DrafterConfig()
    cache = new_cache(loaded.model)
    generator = torch.Generator()
    sampling = SamplingConfig()
    built = build_drafter(drafter, loaded, cache, sampling, generator, models)
    policy = build_policy(PolicyConfig("constant", max(k, 1)), drafter=drafter.label)
    return Decoder(loaded, built, policy, sampling, new_tokens, cache, generator)


def run(d: Decoder, prompt: Prompt) -> tuple[tuple[int, ...], float]:
    start = time.perf_counter()
    tokens: tuple[int, ...] = ()
    for record in d.decode(prompt, 0):
        if isinstance(record, TurnEnd):
            tokens += record.tokens
    return tokens, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=11)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--ks", default="2,5")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ks = [0] + [int(k) for k in args.ks.split(",")]
    models = ModelCache()
    prompts = [p for p in builtin_prompts() if len(p.turns) == 1][: args.prompts]
    decoders = {}
    for engine in ENGINES:
        loaded = models.get(
            ModelSpec("smollm2-135m", device="cpu", dtype="bfloat16", engine=engine)
        )
        for k in ks:
            decoders[(engine, k)] = decoder(loaded, models, k, args.new_tokens)
    outputs: dict[tuple[str, int], list[tuple[int, ...]]] = {key: [] for key in decoders}
    seconds = dict.fromkeys(decoders, 0.0)
    for prompt in prompts:
        for key, d in decoders.items():
            tokens, s = run(d, prompt)
            outputs[key].append(tokens)
            seconds[key] += s
    rows = {}
    for (engine, k), outs in outputs.items():
        plain = outputs[(engine, 0)]
        tokens = sum(len(o) for o in outs)
        rows[f"{engine} k={k}"] = {
            "diverged": sum(a != b for a, b in zip(outs, plain, strict=True)) if k else None,
            "tokens_per_s": tokens / seconds[(engine, k)],
            "tokens": tokens,
        }
    print(f"{'engine':24s} {'diverged':>9s} {'tokens/s':>9s}  (of {len(prompts)} prompts)")
    for name, r in rows.items():
        div = "-" if r["diverged"] is None else str(r["diverged"])
        print(f"{name:24s} {div:>9s} {r['tokens_per_s']:9.2f}")
    cost = {
        f"k={k}": rows[f"lean-invariant k={k}"]["tokens_per_s"]
        / rows[f"lean k={k}"]["tokens_per_s"]
        for k in ks
    }
    print(
        "lean-invariant tokens/s over lean's: " + ", ".join(f"{k} {v:.3f}" for k, v in cost.items())
    )
    print(
        json.dumps(
            {
                "by_engine": rows,
                "invariant_speed_ratio": cost,
                "prompts": [p.id for p in prompts],
                "new_tokens": args.new_tokens,
                "threads": args.threads,
                "cpu_bf16_flags": list(cpu_bf16_flags()),
                "load_average": os.getloadavg()[0],
            }
        )
    )


if __name__ == "__main__":
    main()
