"""A task-labelled prompt: the unit every workload is made of; and the error a prompt source
that cannot be read raises."""

from __future__ import annotations

from dataclasses import dataclass

from specviz.errors import SpecvizError


class WorkloadError(SpecvizError):
    """A prompt source cannot be read; the message names the file and line or row."""


@dataclass(frozen=True)
class Prompt:
    """One prompt of a workload.

    ``turns`` are the user messages in order; a later turn is sent after the model's own answer
    to the earlier turn (as MT-Bench does). Any context a task needs (the passage to summarize,
    the retrieved passages of a RAG question) is already part of the turn text; ``reference``
    holds optional reference answers, one per turn, never shown to the model.

    ``context`` holds earlier exchanges of a recorded conversation, ``(user, assistant)`` pairs
    with the *recorded* replies, sent before the first turn and never generated (real chat
    context, e.g. ShareGPT's earlier turns: what copying drafters feed on). Empty by default.
    """

    id: str
    category: str
    turns: tuple[str, ...]
    reference: tuple[str, ...] = ()
    context: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not self.turns:
            raise ValueError(f"prompt {self.id!r} has no turns")
        if any(not t.strip() for t in self.turns):
            raise ValueError(f"prompt {self.id!r} has an empty turn")
