"""The event rows a served run writes from vLLM's per-step counts (``detailed``), pinned row by
row on a hand-made conversation: per turn one prefill row, then per spec step its drafted
positions and the target's row; what a server does not report stays null."""

from __future__ import annotations

from specviz.config import DrafterConfig, ModelSpec, PolicyConfig, RunConfig
from specviz.endpoint.client import TurnResult
from specviz.endpoint.parse import ServerSpec, Usage
from specviz.endpoint.run import Conversation, conversation_rows, step_events
from specviz.recorder import run_labels
from specviz.rundir import EVENT_SCHEMA
from specviz.workloads.prompt import Prompt
from specviz.workloads.request import Request

CONFIG = RunConfig(
    ModelSpec("served-target"),
    DrafterConfig("model", draft=ModelSpec("served-draft")),
    PolicyConfig("constant", 3),
)
COLUMNS = ["turn", "round", "prefill", "position", "k", "n_drafted", "kind", "accepted",
           "verified", "emitted"]  # fmt: skip
T, F = True, False
# turn 0: steps (accepted, drafted) (2, 3), (0, 3), (3, 3); turn 1: (1, 2), (5, 5) (k = 5 >
# the policy's 3: k is the larger), (0, 0). Round indices run on across turns.
EXPECTED = [
    (0, 0, T, 0, 0, 0, "bonus", None, T, T),
    (0, 1, F, 0, 3, 3, "draft", T, T, T),
    (0, 1, F, 1, 3, 3, "draft", T, T, T),
    (0, 1, F, 2, 3, 3, "draft", F, T, F),
    (0, 1, F, 2, 3, 3, "correction", None, T, T),
    (0, 2, F, 0, 3, 3, "draft", F, T, F),
    (0, 2, F, 1, 3, 3, "draft", F, F, F),
    (0, 2, F, 2, 3, 3, "draft", F, F, F),
    (0, 2, F, 0, 3, 3, "correction", None, T, T),
    (0, 3, F, 0, 3, 3, "draft", T, T, T),
    (0, 3, F, 1, 3, 3, "draft", T, T, T),
    (0, 3, F, 2, 3, 3, "draft", T, T, T),
    (0, 3, F, 3, 3, 3, "bonus", None, T, T),
    (1, 4, T, 0, 0, 0, "bonus", None, T, T),
    (1, 5, F, 0, 3, 2, "draft", T, T, T),
    (1, 5, F, 1, 3, 2, "draft", F, T, F),
    (1, 5, F, 1, 3, 2, "correction", None, T, T),
    *[(1, 6, F, i, 5, 5, "draft", T, T, T) for i in range(5)],
    (1, 6, F, 5, 5, 5, "bonus", None, T, T),
    (1, 7, F, 0, 3, 0, "bonus", None, T, T),
]


def _turn(accepted: tuple[int, ...] | None, drafted: tuple[int, ...] | None) -> TurnResult:
    spec = ServerSpec(
        "vllm",
        histogram=(1,),
        steps=len(accepted or ()),
        accepted=sum(accepted or ()),
        drafted=sum(drafted or ()),
        spec_tokens=3,
        per_step_accepted=accepted,
        per_step_drafted=drafted,
    )
    return TurnResult("text", "stop", Usage(7, 20), spec, 0.1, (0.01,), 0.5)


TURNS = (_turn((2, 0, 3), (3, 3, 3)), _turn((1, 5, 0), (2, 5, 0)))


def test_per_step_counts_lay_out_one_prefill_row_then_drafts_and_a_target_row_per_step():
    steps = step_events(TURNS, CONFIG)
    assert steps.select(COLUMNS).rows() == EXPECTED
    assert dict(steps.select(COLUMNS).schema) == {c: EVENT_SCHEMA[c] for c in COLUMNS}


def test_a_turn_without_per_step_counts_leaves_the_request_without_event_rows():
    summary_only = _turn(None, None)
    no_figures = TurnResult("t", "stop", None, None, None, (), 0.1)
    assert step_events((TURNS[0], summary_only), CONFIG).height == 0
    assert step_events((TURNS[0], no_figures), CONFIG).height == 0


def test_what_a_server_does_not_report_is_null_in_the_written_events():
    request = Request(0, Prompt("p0", "chat", ("hi", "more")))
    conversation = Conversation(request, TURNS, latency_s=1.0, errors=())
    _, events, _ = conversation_rows(conversation, CONFIG, run_labels("run", CONFIG))
    assert events.schema == EVENT_SCHEMA
    assert events.select(COLUMNS).rows() == EXPECTED
    unreported = ["draft_token", "target_token", "q", "p", "shadow_token", "draft_s", "verify_s"]
    nulls = {c: events[c].null_count() for c in unreported}
    assert nulls == dict.fromkeys(unreported, len(EXPECTED))  # null, not NaN
    assert set(events["row"]) == {0} and set(events["batch_rows"]) == {1}
