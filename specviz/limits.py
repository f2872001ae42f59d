"""When a turn stops, and how far one round may go: shared by the batch-1 and batched loops.

A turn ends at an end-of-sequence token (the generation config's or the tokenizer's), after
``max_new_tokens`` new tokens, or at the model's context window. A round never drafts past
either limit, and tokens a round produces after the turn ended are not emitted.
"""

from __future__ import annotations

from dataclasses import dataclass

from specviz.chat import conversation, encode
from specviz.errors import SpecvizError
from specviz.models import LoadedModel
from specviz.workloads.prompt import Prompt


class PromptError(SpecvizError):
    """A prompt cannot be decoded (too long for the model's context window)."""


def stop_ids(target: LoadedModel) -> frozenset[int]:
    """End-of-sequence ids: the generation config's and the tokenizer's."""
    ids: set[int] = set()
    eos = target.model.generation_config.eos_token_id
    ids.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if target.tokenizer.eos_token_id is not None:
        ids.add(int(target.tokenizer.eos_token_id))
    return frozenset(ids)


@dataclass(frozen=True)
class TurnLimits:
    max_new_tokens: int
    window: int | None  # the model's context window (max_position_embeddings)
    stop: frozenset[int]

    @staticmethod
    def of(target: LoadedModel, max_new_tokens: int) -> TurnLimits:
        return TurnLimits(max_new_tokens, target.context_window, stop_ids(target))

    def encode_turn(self, target: LoadedModel, prompt: Prompt, answers: list[str]) -> list[int]:
        """Token ids of the next turn of ``prompt`` after ``answers``; refuse what cannot fit."""
        messages = conversation(prompt.turns[: len(answers) + 1], answers, prompt.context)
        ids = encode(target.tokenizer, messages)
        if self.window is not None and len(ids) >= self.window:
            raise PromptError(
                f"prompt {prompt.id!r} turn {len(answers) + 1} is {len(ids)} tokens, longer than "
                f"the model's context window of {self.window}: shorten it or drop it"
            )
        return ids

    def draft_budget(self, asked: int, n_generated: int, n_context: int) -> int:
        """The policy's k, capped so a round never passes the token budget or the window."""
        room = self.max_new_tokens - n_generated - 1
        if self.window is not None:
            room = min(room, self.window - n_context - 1)
        return max(0, min(asked, room))

    def emitted(self, generated: list[int], new: list[int], n_context: int) -> int:
        """How many of ``new`` enter the output: up to and including an end-of-sequence token,
        within the token budget and the context window."""
        room = self.max_new_tokens - len(generated)
        if self.window is not None:
            room = min(room, self.window - n_context)
        for i, token in enumerate(new[:room]):
            if token in self.stop:
                return i + 1
        return min(len(new), room)

    def finish(self, generated: list[int], n_context: int) -> str | None:
        """ "eos" or "length" when the turn is over, else None."""
        if generated[-1] in self.stop:
            return "eos"
        if len(generated) >= self.max_new_tokens:
            return "length"
        if self.window is not None and n_context >= self.window:
            return "length"
        return None
