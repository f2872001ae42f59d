"""How exactly ``--dtype q4`` reproduces the embedded GGUF model, beside ``--dtype bfloat16``.

Two measures, against the float32 model (the GGUF dequantized by transformers, ``d * q + m``):

- weights: the kernel multiplies by ``(q - 8) * bf16(d) + bf16(m + 8 d)`` (specviz.lean.q4);
  bf16 runs ``bf16(d * q + m)``. Per dtype over all 210 Q4_1 matrices: the share of weights
  exactly equal to the file's, the largest absolute error, and the mean relative error
  ``sum |w' - w| / sum |w|``;
- tokens: top-1 agreement with float32's greedy tokens, teacher-forced on float32's own
  answers (``--new-tokens`` per prompt, one single-turn built-in prompt per category), and the
  share of prompts whose free-running greedy answer equals float32's token for token.

Prints a table, then one JSON line.

    .venv/bin/python bench/q4.py [--new-tokens 64] [--prompts 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import torch

from specviz.config import ModelSpec
from specviz.forward import forward, new_cache
from specviz.lean.q4 import Q4Weight, gguf_tensors, layer_weights, read_q8_0
from specviz.model_source import embedded_gguf
from specviz.models import LoadedModel, ModelCache
from specviz.precision import cpu_bf16_flags
from specviz.workloads import builtin_prompts


def kernel_weights(w: Q4Weight) -> np.ndarray:
    """What the int4 kernel multiplies by: scale and zero rounded to bf16."""
    d = torch.from_numpy(w.d).bfloat16().float().numpy()
    zero = torch.from_numpy(w.m + 8 * w.d).bfloat16().float().numpy()
    blocks = w.codes.reshape(w.codes.shape[0], -1, 32).astype(np.float32) - 8
    return (blocks * d[..., None] + zero[..., None]).reshape(w.codes.shape)


def tally(total: list[float], approx: np.ndarray, file: np.ndarray) -> None:
    """Add one matrix to ``total``: [exact, count, max |error|, sum |error|, sum |weight|]."""
    e = np.abs(approx - file)
    total[0] += int((e == 0).sum())
    total[1] += e.size
    total[2] = max(total[2], float(e.max()))
    total[3] += float(e.sum())
    total[4] += float(np.abs(file).sum())


def weight_errors(layers: int, heads: int, kv_heads: int) -> dict[str, dict[str, float]]:
    """Errors over the 210 Q4_1 matrices (``q4``, ``bfloat16``) and over the Q8_0 output layer
    (``q4 head``: two int4 matrices, ``d`` rounded to bf16; ``bfloat16 head``)."""
    tensors = gguf_tensors(embedded_gguf("smollm2-135m"))
    names = ("q4", "bfloat16", "q4 head", "bfloat16 head")
    totals: dict[str, list[float]] = {name: [0, 0, 0.0, 0.0, 0.0] for name in names}
    for i in range(layers):
        for w in layer_weights(tensors, i, heads, kv_heads).values():
            file = w.dequantized()
            tally(totals["q4"], kernel_weights(w), file)
            tally(totals["bfloat16"], torch.from_numpy(file).bfloat16().float().numpy(), file)
    raw, (rows, cols), _ = tensors["token_embd.weight"]
    head = read_q8_0(raw, rows, cols)
    file = head.dequantized()
    d = torch.from_numpy(head.d).bfloat16().float().numpy()
    tally(
        totals["q4 head"],
        (d[..., None] * head.codes.reshape(rows, -1, 32)).reshape(rows, cols),
        file,
    )
    tally(totals["bfloat16 head"], torch.from_numpy(file).bfloat16().float().numpy(), file)
    return {
        name: {
            "exact_share": t[0] / t[1],
            "max_abs_error": t[2],
            "mean_relative_error": t[3] / t[4],
        }
        for name, t in totals.items()
    }


def prompt_ids(loaded: LoadedModel, n: int) -> list[list[int]]:
    chosen, seen = [], set()
    for p in builtin_prompts():
        if len(p.turns) == 1 and p.category not in seen:
            seen.add(p.category)
            chosen.append(p.turns[0])
    return [
        loaded.tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True
        )["input_ids"]
        for text in chosen[:n]
    ]


@torch.inference_mode()
def greedy(loaded: LoadedModel, ids: list[int], new: int) -> list[int]:
    cache = new_cache(loaded.model)
    logits = forward(loaded.model, torch.tensor(ids), cache, 0, last_only=True)
    out: list[int] = []
    eos = loaded.model.generation_config.eos_token_id
    for _ in range(new):
        x = int(logits[-1].argmax())
        out.append(x)
        if x == eos or (isinstance(eos, list) and x in eos):
            break
        logits = forward(loaded.model, torch.tensor([x]), cache, len(ids) + len(out) - 1)
    return out


@torch.inference_mode()
def agreement(loaded: LoadedModel, ids: list[int], answer: list[int]) -> float:
    """Top-1 agreement with ``answer``, teacher-forced (one forward over prompt + answer)."""
    cache = new_cache(loaded.model)
    logits = forward(loaded.model, torch.tensor(ids + answer[:-1]), cache, 0)
    mine = logits[len(ids) - 1 :].argmax(-1).tolist()
    return sum(a == b for a, b in zip(mine, answer, strict=True)) / len(answer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = ModelCache()
    reference = models.get(ModelSpec("smollm2-135m", device="cpu", dtype="float32"))
    config = reference.model.config
    errors = weight_errors(
        config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads
    )
    prompts = prompt_ids(reference, args.prompts)
    answers = [greedy(reference, ids, args.new_tokens) for ids in prompts]
    tokens: dict[str, dict[str, object]] = {}
    for dtype in ("bfloat16", "q4"):
        loaded = models.get(ModelSpec("smollm2-135m", device="cpu", dtype=dtype))
        top1 = [agreement(loaded, ids, a) for ids, a in zip(prompts, answers, strict=True)]
        same = [
            greedy(loaded, ids, args.new_tokens) == a
            for ids, a in zip(prompts, answers, strict=True)
        ]
        tokens[dtype] = {
            "top1_agreement": top1,
            "mean_top1_agreement": sum(top1) / len(top1),
            "same_greedy_answer": sum(same) / len(same),
        }
    print(f"{'weights':14s} {'exact share':>12s} {'max |err|':>10s} {'mean rel err':>13s}")
    for name, e in errors.items():
        print(
            f"{name:14s} {e['exact_share']:12.3f} {e['max_abs_error']:10.4f} "
            f"{e['mean_relative_error']:13.5f}"
        )
    print(f"{'dtype':10s} {'mean top-1':>11s} {'same answer':>12s}  top-1 per prompt")
    for name, t in tokens.items():
        each = " ".join(f"{x:.2f}" for x in t["top1_agreement"])  # type: ignore[union-attr]
        print(
            f"{name:10s} {t['mean_top1_agreement']:11.3f} {t['same_greedy_answer']:12.2f}  {each}"
        )
    print(
        json.dumps(
            {
                "weights_vs_gguf": errors,
                "tokens_vs_float32": tokens,
                "prompts": len(prompts),
                "new_tokens": args.new_tokens,
                "threads": args.threads,
                "cpu_bf16_flags": list(cpu_bf16_flags()),
                "load_average": os.getloadavg()[0],
            }
        )
    )


if __name__ == "__main__":
    main()
