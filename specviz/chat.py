"""Turning a prompt's turns into token ids with the model's chat template.

A later turn is sent after the model's own answer to the earlier one (MT-Bench): the
conversation is ``user 1, assistant 1, user 2, ...`` and is re-encoded at every turn. A tokenizer
without a chat template (a base model) gets the turns and answers joined by blank lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # building messages (the endpoint client) needs no transformers
    from transformers import PreTrainedTokenizerBase


def conversation(
    turns: Sequence[str],
    answers: Sequence[str],
    context: Sequence[tuple[str, str]] = (),
) -> list[dict[str, str]]:
    """Messages for the next turn: the recorded ``context`` exchanges (user, assistant), then
    every earlier turn followed by the model's answer to it."""
    messages: list[dict[str, str]] = []
    for user, assistant in context:
        messages.append({"role": "user", "content": user})
        messages.append({"role": "assistant", "content": assistant})
    for i, text in enumerate(turns):
        messages.append({"role": "user", "content": text})
        if i < len(answers):
            messages.append({"role": "assistant", "content": answers[i]})
    return messages


def encode(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of ``messages`` ready for generation (generation prompt appended)."""
    if tokenizer.chat_template:
        encoded = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=True
        )
        return list(encoded["input_ids"])
    text = "\n\n".join(m["content"] for m in messages) + "\n\n"
    return list(tokenizer(text)["input_ids"])
