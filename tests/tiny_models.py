"""Tiny random models saved with save_pretrained, loaded through the same code path as users'.

The tokenizer is character-level (every printable ASCII character is a token, plus chat special
tokens and a chat template), so any prompt encodes without unknown tokens. Target and draft are
Qwen2ForCausalLM with *different* embedding sizes over one tokenizer, like Qwen2.5-0.5B (151,936
rows) drafting for Qwen2.5-7B (152,064): the draft is the target's weights plus noise, with its
vocabulary rows cut, so drafts are often but not always accepted.
"""

from __future__ import annotations

import string
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<unk>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    chars = sorted(set(string.printable) - set("\x0b\x0c"))
    vocab = {tok: i for i, tok in enumerate(SPECIALS + chars)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<unk>",
        additional_special_tokens=["<|im_start|>"],
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def tiny_settings(hidden: int = 64, layers: int = 4) -> dict[str, object]:
    """Config settings every tiny test model shares: sizes, heads and special token ids."""
    return {
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        "tie_word_embeddings": False,
        "eos_token_id": 2,
        "bos_token_id": None,
        "pad_token_id": 0,
    }


def tiny_config(vocab_rows: int, layers: int = 4, seed_hidden: int = 64) -> Qwen2Config:
    return Qwen2Config(vocab_size=vocab_rows, **tiny_settings(seed_hidden, layers))


def build_tiny_pair(root: Path, seed: int = 0) -> tuple[Path, Path]:
    """Save a tiny target (128 vocab rows) and draft (112 rows) under ``root``."""
    tok = tiny_tokenizer()
    torch.manual_seed(seed)
    target = Qwen2ForCausalLM(tiny_config(128))
    # larger logits than the default init, so greedy choices are not near ties
    with torch.no_grad():
        target.lm_head.weight.mul_(8.0)
    draft = Qwen2ForCausalLM(tiny_config(112))
    with torch.no_grad():
        for name, param in draft.named_parameters():
            source = dict(target.named_parameters())[name]
            rows = tuple(slice(0, s) for s in param.shape)
            piece = source[rows]
            param.copy_(piece + 0.03 * piece.std() * torch.randn_like(param))
    paths = []
    for name, model in (("target", target), ("draft", draft)):
        path = root / name
        model.generation_config.eos_token_id = 2
        model.save_pretrained(path)
        tok.save_pretrained(path)
        paths.append(path)
    return paths[0], paths[1]
