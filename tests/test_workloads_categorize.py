"""The optional categorizer for prompts without a category."""

from __future__ import annotations

from specviz.workloads import Prompt, builtin_prompts
from specviz.workloads.categorize import (
    Categorizer,
    categorize_prompts,
    leave_one_out_accuracy,
    training_accuracy,
)

# The figure docs/workloads.md reports (50 of 67 built-in prompts, leave-one-out).
REPORTED_LOO_ACCURACY = 0.74


def test_leave_one_out_accuracy_on_builtin_suite_stays_above_reported() -> None:
    prompts = builtin_prompts()
    accuracy = leave_one_out_accuracy(prompts)
    assert accuracy >= REPORTED_LOO_ACCURACY
    # far above chance (1/11) and below the optimistic training accuracy
    assert accuracy <= training_accuracy(prompts)


def test_categorizer_only_labels_uncategorized_prompts() -> None:
    prompts = [
        Prompt("a", "uncategorized", ("Translate 'good morning' into Spanish.",)),
        Prompt("b", "math", ("Translate this into French.",)),
        Prompt("c", "uncategorized", ("Summarize the following text.\n\nIt rained all day.",)),
    ]
    labelled = categorize_prompts(prompts)
    assert [p.category for p in labelled] == ["translation", "math", "summarization"]


def test_naive_bayes_stage_learns_from_training_prompts() -> None:
    train = [
        Prompt("1", "stem", ("Why do magnets attract iron?",)),
        Prompt("2", "stem", ("Why do planets orbit the sun?",)),
        Prompt("3", "humanities", ("Who founded the Roman empire?",)),
        Prompt("4", "humanities", ("Who painted the Roman frescoes?",)),
    ]
    model = Categorizer.train(train)
    assert model.predict("Why do comets orbit the sun?") == "stem"
    assert model.predict("Who ruled the Roman provinces?") == "humanities"
