"""Claims about reading a server's per-request speculative figures when it leaves some out: the
counts a parser derives (from the histogram, the per-step lists or a rate) must be the ones
the server would have sent, and a wrong shape is a ProtocolError naming the field."""

from __future__ import annotations

import pytest

from specviz.endpoint.parse import (
    ProtocolError,
    ServerSpec,
    Usage,
    delta_text,
    load_json,
    message_text,
    server_spec,
    sse_data,
    usage_of,
)


def vllm(block: dict) -> ServerSpec:
    spec = server_spec({"choices": [], "metrics": {"speculative_decoding": block}})
    assert spec is not None and spec.source == "vllm"
    return spec


def test_a_vllm_response_with_the_histogram_only_derives_steps_and_accepted_from_it():
    # 5 steps accepted nothing, 2 accepted one, 3 accepted three: 10 steps, 2 + 9 accepted
    spec = vllm({"acceptance_histogram": [5, 2, 0, 3]})
    assert spec.histogram == (5, 2, 0, 3)
    assert (spec.steps, spec.accepted, spec.drafted, spec.spec_tokens) == (10, 11, None, 3)


def test_the_counts_a_vllm_server_sends_win_over_what_its_histogram_implies():
    spec = vllm(
        {"acceptance_histogram": [5, 2], "num_spec_steps": 8, "num_accepted_draft_tokens": 1}
    )
    assert (spec.steps, spec.accepted) == (8, 1)


def test_a_vllm_response_with_per_step_counts_only_builds_its_histogram_from_them():
    spec = vllm(
        {"per_step_accepted": [0, 2, 2, 1], "per_step_drafted": [3, 3, 3, 3], "num_spec_tokens": 3}
    )
    assert spec.histogram == (1, 1, 2, 0)
    assert (spec.steps, spec.accepted, spec.spec_tokens) == (4, 5, 3)
    assert spec.per_step_accepted == (0, 2, 2, 1)
    assert spec.per_step_drafted == (3, 3, 3, 3)


def test_a_vllm_response_with_neither_histogram_nor_steps_is_a_protocol_error():
    with pytest.raises(ProtocolError, match="has no acceptance_histogram"):
        vllm({"num_spec_steps": 3})


@pytest.mark.parametrize(
    ("block", "words"),
    [
        ({"acceptance_histogram": [1, -2]}, "acceptance_histogram is not a list of counts"),
        ({"acceptance_histogram": [1, True]}, "acceptance_histogram is not a list of counts"),
        ({"acceptance_histogram": {"x": 1}}, "acceptance_histogram is not a histogram"),
        ({"acceptance_histogram": [1], "num_spec_steps": -1}, "num_spec_steps is not a count"),
        ({"acceptance_histogram": [1], "num_draft_tokens": True}, "num_draft_tokens is not a"),
    ],
)
def test_vllm_figures_of_the_wrong_shape_are_named(block, words):
    with pytest.raises(ProtocolError, match=words):
        vllm(block)


def test_an_sglang_response_with_the_histogram_only_derives_steps_and_accepted():
    spec = server_spec({"meta_info": {"spec_accept_histogram": [4, 0, 2]}})
    assert spec is not None and spec.source == "sglang"
    assert (spec.steps, spec.accepted, spec.drafted, spec.spec_tokens) == (6, 4, None, 2)


def test_an_sglang_response_with_counts_and_the_newer_histogram_uses_the_counts():
    spec = server_spec(
        {
            "usage": {
                "spec_correct_drafts_histogram": [1, 1],
                "spec_verify_ct": 2,
                "spec_num_correct_drafts": 1,
                "spec_num_proposed_drafts": 6,
                "spec_accept_rate": 0.9,
            }
        }
    )
    assert spec is not None
    assert (spec.histogram, spec.steps, spec.accepted, spec.drafted) == ((1, 1), 2, 1, 6)


def test_an_sglang_rate_gives_the_drafted_count_only_when_something_was_accepted():
    rated = server_spec(
        {"spec_verify_ct": 4, "spec_num_correct_drafts": 3, "spec_accept_rate": 0.25}
    )
    assert rated is not None and (rated.steps, rated.drafted, rated.histogram) == (4, 12, ())
    none = server_spec({"spec_verify_ct": 4, "spec_num_correct_drafts": 0, "spec_accept_rate": 0.5})
    assert none is not None and (none.accepted, none.drafted) == (0, None)


def test_two_turns_add_their_histograms_steps_and_counts():
    one = ServerSpec("vllm", (1, 2), 3, 2, 6, 1, (1, 1), (2, 2))
    two = ServerSpec("vllm", (0, 0, 4), 4, 8, None, 2, None, None)
    both = one + two
    assert both.histogram == (1, 2, 4)
    assert (both.steps, both.accepted, both.drafted, both.spec_tokens) == (7, 10, None, 2)
    assert both.per_step_accepted is None and both.per_step_drafted is None
    three = one + one
    assert (three.drafted, three.per_step_accepted, three.per_step_drafted) == (
        12,
        (1, 1, 1, 1),
        (2, 2, 2, 2),
    )


def test_a_full_response_gives_its_first_choices_text_and_finish_reason():
    answer = {"choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}, {}]}
    assert message_text(answer) == ("hi", "stop")
    assert message_text({"choices": [{"message": None, "finish_reason": "length"}]}) == (
        "",
        "length",
    )


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        ({"choices": []}, "the response has no choices"),
        ({"choices": "x"}, "the response has no choices"),
        ({"choices": ["x"]}, "the response has no choices"),
        ({"choices": [{"message": {"content": 3}}]}, "the response's content is not text"),
    ],
)
def test_a_full_response_without_a_usable_choice_is_a_protocol_error(answer, words):
    with pytest.raises(ProtocolError, match=words):
        message_text(answer)


def test_an_event_streams_data_line_gives_its_payload_and_any_other_line_none():
    assert sse_data('data: {"a": 1}  ') == '{"a": 1}'
    assert sse_data("data:[DONE]") == "[DONE]"
    assert sse_data(": keep-alive") is None
    assert sse_data("event: data: x") is None


def test_a_servers_json_object_is_read_and_anything_else_named_with_its_start():
    assert load_json('{"x": [1]}', "the server") == {"x": [1]}
    with pytest.raises(ProtocolError) as malformed:
        load_json("{" + "y" * 80, "http://h:1")
    assert str(malformed.value) == (
        "http://h:1 sent malformed JSON (Expecting property name enclosed in double quotes): "
        + repr("{" + "y" * 59 + "...")
    )
    with pytest.raises(ProtocolError) as short:
        load_json("{", "S")
    assert str(short.value).endswith("): '{'")
    with pytest.raises(ProtocolError) as listed:
        load_json("[" + "1, " * 30 + "1]", "S")
    assert str(listed.value) == "S sent JSON that is not an object: " + repr(
        ("[" + "1, " * 30)[:60]
    )


def test_usage_gives_prompt_and_completion_tokens_unknown_where_left_out():
    assert usage_of({"usage": {"prompt_tokens": 7, "completion_tokens": 3.0}}) == Usage(7, 3)
    assert usage_of({"usage": {"completion_tokens": 3}}) == Usage(None, 3)
    assert usage_of({"usage": {"prompt_tokens": 7}}) == Usage(7, None)
    assert usage_of({"usage": None}) is None and usage_of({}) is None
    with pytest.raises(ProtocolError, match=r"^usage.completion_tokens is not a count: -1$"):
        usage_of({"usage": {"completion_tokens": -1}})


def test_a_stream_chunk_gives_its_first_choices_delta_and_finish_reason():
    chunk = {"choices": [{"delta": {"content": "hi"}, "finish_reason": None}, {"delta": {}}]}
    assert delta_text(chunk) == ("hi", None)
    assert delta_text({"choices": [{"delta": {}, "finish_reason": "stop"}]}) == ("", "stop")
    assert delta_text({"choices": [{"delta": None, "finish_reason": "length"}]}) == (
        "",
        "length",
    )
    assert delta_text({"choices": []}) == ("", None)  # the final usage chunk


@pytest.mark.parametrize(
    ("chunk", "message"),
    [
        ({}, "a stream chunk has no choices list: '{}'"),
        (
            {"choices": "x" * 100},
            "a stream chunk has no choices list: " + repr(str({"choices": "x" * 100})[:80]),
        ),
        ({"choices": [{"delta": {"content": 3}}]}, "a stream chunk's content is not text: 3"),
    ],
)
def test_a_stream_chunk_without_a_usable_choice_is_named(chunk, message):
    with pytest.raises(ProtocolError) as caught:
        delta_text(chunk)
    assert str(caught.value) == message


def test_llamacpp_figures_are_read_only_from_timings_it_marks_as_its_own():
    timings = {"draft_n": 4, "draft_n_accepted": 1}
    assert server_spec({"timings": timings}) is None
    spec = server_spec({"timings": {"predicted_n": 9, **timings}})
    assert spec == ServerSpec("llama.cpp", (), None, 1, 4, None)


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (
            {"metrics": {"speculative_decoding": 3}},
            "metrics.speculative_decoding is not an object: 3",
        ),
        (
            {"metrics": {"speculative_decoding": {"per_step_accepted": "x"}}},
            "metrics.speculative_decoding.per_step_accepted is not a list of counts: 'x'",
        ),
        (
            {
                "metrics": {
                    "speculative_decoding": {"per_step_accepted": [1], "per_step_drafted": [-1]}
                }
            },
            "metrics.speculative_decoding.per_step_drafted is not a list of counts: [-1]",
        ),
        *[
            (
                {"metrics": {"speculative_decoding": {"acceptance_histogram": [1], key: -1}}},
                f"metrics.speculative_decoding.{key} is not a count: -1",
            )
            for key in (
                "num_spec_tokens",
                "num_spec_steps",
                "num_accepted_draft_tokens",
                "num_draft_tokens",
            )
        ],
        (
            {"spec_accept_histogram": "x"},
            "SGLang spec fields histogram is not a list of counts: 'x'",
        ),
        *[
            ({key: -1}, f"SGLang spec fields.{key} is not a count: -1")
            for key in ("spec_verify_ct",)
        ],
        *[
            ({"spec_verify_ct": 1, key: -1}, f"SGLang spec fields.{key} is not a count: -1")
            for key in ("spec_num_correct_drafts", "spec_num_proposed_drafts")
        ],
        *[
            (
                {"timings": {"predicted_n": 1, key: -1}},
                f"llama.cpp timings.{key} is not a count: -1",
            )
            for key in ("draft_n", "draft_n_accepted")
        ],
    ],
)
def test_a_figure_of_the_wrong_shape_is_named_by_its_servers_field(obj, message):
    with pytest.raises(ProtocolError) as caught:
        server_spec(obj)
    assert str(caught.value) == message


def test_a_usage_count_of_the_wrong_shape_is_named():
    with pytest.raises(ProtocolError) as caught:
        usage_of({"usage": {"prompt_tokens": "7"}})
    assert str(caught.value) == "usage.prompt_tokens is not a count: '7'"


def test_an_empty_keyed_histogram_is_no_steps():
    spec = vllm({"acceptance_histogram": {}})
    assert (spec.histogram, spec.steps, spec.accepted, spec.spec_tokens) == ((), 0, 0, 0)


def test_a_vllm_response_without_its_longest_draft_takes_it_from_the_histogram():
    assert vllm({"acceptance_histogram": [5]}).spec_tokens == 0
    assert vllm({"acceptance_histogram": [5, 0, 1]}).spec_tokens == 2


def test_an_sglang_response_with_a_null_step_count_and_no_histogram_has_no_steps():
    block = {"spec_verify_ct": None, "spec_num_correct_drafts": 3, "spec_num_proposed_drafts": 4}
    spec = server_spec(block)
    assert spec == ServerSpec("sglang", (), 0, 3, 4, 0, None, None)


def test_the_accepted_count_an_sglang_server_sends_wins_over_its_histogram():
    spec = server_spec({"spec_accept_histogram": [1, 1], "spec_num_correct_drafts": 5})
    assert spec is not None and (spec.steps, spec.accepted) == (2, 5)


def test_an_sglang_rate_of_zero_gives_no_drafted_count():
    spec = server_spec({"spec_verify_ct": 2, "spec_num_correct_drafts": 3, "spec_accept_rate": 0})
    assert spec is not None and spec.drafted is None


def test_malformed_json_is_shown_up_to_60_characters_with_dots_only_past_them():
    for length, shown in ((60, "{" + "y" * 59), (61, "{" + "y" * 59 + "...")):
        with pytest.raises(ProtocolError) as caught:
            load_json("{" + "y" * (length - 1), "S")
        assert str(caught.value).endswith(": " + repr(shown))


def test_a_full_response_without_choices_is_shown_up_to_80_characters():
    answer = {"choices": [], "id": "x" * 100}
    with pytest.raises(ProtocolError) as caught:
        message_text(answer)
    assert str(caught.value) == "the response has no choices: " + repr(str(answer)[:80])


def test_a_full_responses_message_that_is_not_an_object_has_no_text():
    assert message_text({"choices": [{"message": "hi", "finish_reason": "stop"}]}) == ("", "stop")


def test_a_stream_chunks_choice_that_is_not_an_object_is_a_protocol_error():
    with pytest.raises(ProtocolError) as caught:
        delta_text({"choices": ["x"]})
    assert str(caught.value) == "a stream chunk's choice is not an object: 'x'"
    with pytest.raises(ProtocolError) as long:
        delta_text({"choices": ["y" * 100]})
    assert str(long.value) == "a stream chunk's choice is not an object: " + repr("y" * 80)


def test_a_shorter_second_turn_adds_only_its_own_histogram_and_keeps_the_source():
    one = ServerSpec("vllm", (1, 2, 4), 7, 10, None, 2)
    two = ServerSpec("vllm", (1,), 1, 0, None, 0)
    both = one + two
    assert (both.source, both.histogram, both.steps, both.spec_tokens) == ("vllm", (2, 2, 4), 8, 2)
    unknown = ServerSpec("llama.cpp", (), None, 1, 4, None)
    assert (unknown + two).spec_tokens is None and (two + unknown).spec_tokens is None
