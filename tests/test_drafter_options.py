"""Each drafter kind's own options (validated once), the one draft loop, the one fallback id."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
import torch

from specviz.config import (
    DRAFTER_OPTIONS,
    FLAT_KEYS,
    ComponentSkipOptions,
    ConfigError,
    DrafterConfig,
    DraftModelOptions,
    LayerSkipOptions,
    ModelSpec,
    PolicyConfig,
    PromptLookupOptions,
    RunConfig,
    SamplingConfig,
    SuffixOptions,
    from_table,
)
from specviz.drafters.base import Drafting, draft_tokens
from specviz.drafters.draft_model import FALLBACK_ID, embeddable
from specviz.drafters.layer_skip import LayerSkipError, kept_layers
from specviz.stopping import ConfidenceBelow

PAST_SCHEMAS = Path(__file__).parent / "data"


def test_each_kind_reads_its_own_typed_options() -> None:
    assert DrafterConfig().options is None
    assert DrafterConfig("prompt-lookup", max_ngram=4).options == PromptLookupOptions(4, 1)
    assert DrafterConfig("layer-skip", layers=(0, 2)).options == LayerSkipOptions(None, (0, 2))
    assert DrafterConfig("component-skip", components=("mlp", "mamba")).options == (
        ComponentSkipOptions(("mamba", "mlp"), None)
    )
    assert DrafterConfig("suffix", tree_depth=8).options == SuffixOptions(tree_depth=8)
    spec = ModelSpec("d")
    assert DrafterConfig("model", draft=spec).options == DraftModelOptions(spec, None)


def test_suffix_defaults_are_the_suffix_options_defaults_and_are_stored_filled_in() -> None:
    config = DrafterConfig("suffix", partition="task")
    defaults = SuffixOptions().__dict__
    assert {k: getattr(config, k) for k in defaults} == {**defaults, "partition": "task"}
    assert all(getattr(DrafterConfig(), k) is None for k in defaults)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (lambda: LayerSkipOptions(layers=(1, 2)), "--layers must list layer 0"),
        (lambda: LayerSkipOptions(), "exactly one of --exit-layer L or --layers"),
        (lambda: ComponentSkipOptions(("mlp",), ()), "component-skip layers is empty"),
        (lambda: SuffixOptions(tree_depth=1), "tree_depth must be >= 2"),
        (lambda: PromptLookupOptions(2, 3), "1 <= min_ngram <= max_ngram"),
        (lambda: DraftModelOptions(), "drafter 'model' needs a draft model"),
    ],
)
def test_a_kinds_options_validate_themselves(options, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        options()


def test_the_flat_config_refuses_bad_options_with_the_kinds_own_message() -> None:
    with pytest.raises(ConfigError, match="--layers must list layer 0"):
        DrafterConfig("layer-skip", layers=(1, 2))
    with pytest.raises(
        ConfigError, match="tree_depth is only used with --drafter suffix, not 'model'"
    ):
        DrafterConfig("model", draft=ModelSpec("d"), tree_depth=4)


def test_layer_fit_is_checked_against_the_model_only() -> None:
    assert kept_layers(4, LayerSkipOptions(layers=(2, 0, 2))) == [0, 2]
    assert kept_layers(4, LayerSkipOptions(exit_layer=3)) == [0, 1, 2]
    with pytest.raises(LayerSkipError, match="must be below the model's 4 layers"):
        kept_layers(4, LayerSkipOptions(exit_layer=4))
    with pytest.raises(LayerSkipError, match=r"layers \[7\] do not exist"):
        kept_layers(4, LayerSkipOptions(layers=(0, 7)))


@pytest.mark.parametrize("schema", sorted(p.name for p in PAST_SCHEMAS.glob("schema-*")))
def test_past_run_configs_read_back_to_the_dict_they_were_stored_as(schema: str) -> None:
    """Run ids hash this dict, so an old run still resumes under the same identity."""
    stored = json.loads((PAST_SCHEMAS / schema / "run.json").read_text())["config"]
    stored["drafter"].setdefault("name", None)  # schema-1 predates drafter names
    assert RunConfig.from_dict(stored).to_dict() == stored


# sha256 of each config's run.json form, computed before the options were declared once: the
# config part of a run id; a change here changes the identity of every stored run of that kind
PINNED_CONFIG_DIGESTS = {
    "none": ("5db51c13", DrafterConfig(), PolicyConfig()),
    "model": ("e5bf9858", DrafterConfig("model", draft=ModelSpec("d", dtype="float32")), None),
    "int8": ("c9533060", DrafterConfig("model", draft_quant="int8"), None),
    "prompt-lookup": (
        "5fcc3cef",
        DrafterConfig("prompt-lookup", max_ngram=4, name="pl4"),
        PolicyConfig("heuristic", 3),
    ),
    "layer-skip": (
        "31ad4c30",
        DrafterConfig("layer-skip", layers=(0, 2)),
        PolicyConfig("confidence", 4, 0.5),
    ),
    "exit-layer": ("92f72bcc", DrafterConfig("layer-skip", exit_layer=2), None),
    "component-skip": (
        "06d807d1",
        DrafterConfig("component-skip", components=("mlp", "mamba"), layers=(2,)),
        None,
    ),
    "suffix": ("9c5cf515", DrafterConfig("suffix", partition="task", memory_tokens=512), None),
}


@pytest.mark.parametrize("kind", sorted(PINNED_CONFIG_DIGESTS))
def test_run_ids_of_each_drafter_kind_are_the_ones_computed_before(kind: str) -> None:
    digest, drafter, policy = PINNED_CONFIG_DIGESTS[kind]
    config = RunConfig(ModelSpec("smollm2-135m"), drafter, policy or PolicyConfig())
    text = json.dumps(config.to_dict(), sort_keys=True).encode()
    assert hashlib.sha256(text).hexdigest()[:8] == digest
    assert RunConfig.from_dict(json.loads(text)) == config


def _logits(*rows: list[float]) -> list[torch.Tensor]:
    return [torch.tensor(r) for r in rows]


def test_the_draft_loop_stops_at_the_cap_and_never_feeds_the_last_token() -> None:
    fed: list[int] = []
    steps = iter(_logits([0.0, 5.0, 0.0], [5.0, 0.0, 0.0], [0.0, 0.0, 5.0]))
    first = next(steps)

    def feed(x: int) -> torch.Tensor:
        fed.append(x)
        return next(steps)

    proposal = draft_tokens(first, feed, 2, SamplingConfig(), torch.Generator(), None)
    assert proposal.tokens.tolist() == [1, 0] and fed == [1]


def test_the_draft_loop_ends_where_the_stop_rule_rejects_and_k_zero_draws_nothing() -> None:
    stop = ConfidenceBelow(0.9)
    drafting = Drafting(3, SamplingConfig(), torch.Generator(), stop)
    assert drafting.step(torch.tensor([0.0, 9.0])) == 1
    assert drafting.step(torch.tensor([0.0, 0.0])) is None and drafting.done
    assert drafting.step(torch.tensor([9.0, 0.0])) is None
    assert drafting.proposal(torch.device("cpu")).tokens.tolist() == [1]
    generator = torch.Generator().manual_seed(3)
    state = generator.get_state()
    none = Drafting(0, SamplingConfig(temperature=1.0), generator, None)
    assert none.step(torch.tensor([1.0, 1.0])) is None
    assert (
        torch.equal(generator.get_state(), state) and len(none.proposal(torch.device("cpu"))) == 0
    )


def test_ids_past_the_draft_vocabulary_are_fed_as_the_one_fallback_id() -> None:
    model = torch.nn.Module()
    embedding = torch.nn.Embedding(10, 2)
    model.get_input_embeddings = lambda: embedding  # type: ignore[method-assign]
    ids = torch.tensor([3, 9, 10, 12])
    assert embeddable(ids, model).tolist() == [3, 9, FALLBACK_ID, FALLBACK_ID]  # type: ignore[arg-type]


def _flags_config(*flags: str) -> RunConfig:
    from specviz.cli import _run_config, build_parser

    return _run_config(build_parser().parse_args(["run", "--target", "t", "--out", "o", *flags]))


def test_every_drafter_option_is_a_run_flag_named_after_its_key() -> None:
    from specviz.cli import build_parser

    run = build_parser()._subparsers._group_actions[0].choices["run"]
    flags = {opt for action in run._actions for opt in action.option_strings}
    assert {"--" + key.name.replace("_", "-") for key in FLAT_KEYS} <= flags
    assert {key.name for key in FLAT_KEYS} == {
        f.name for cls in DRAFTER_OPTIONS.values() if cls for f in dataclasses.fields(cls)
    }


@pytest.mark.parametrize(
    ("flags", "drafter"),
    [
        (
            [
                "--drafter",
                "suffix",
                "--partition",
                "task",
                "--spec-factor",
                "2",
                "--tree-depth",
                "8",
            ],
            DrafterConfig("suffix", partition="task", spec_factor=2.0, tree_depth=8),
        ),
        (
            ["--drafter", "component-skip", "--components", "mlp,mamba", "--layers", "1,3"],
            DrafterConfig("component-skip", components=("mamba", "mlp"), layers=(1, 3)),
        ),
        (
            ["--drafter", "model", "--draft", "d", "--dtype", "float32", "--draft-quant", "int8"],
            DrafterConfig("model", draft=ModelSpec("d", dtype="float32"), draft_quant="int8"),
        ),
        (
            ["--drafter", "prompt-lookup", "--max-ngram", "4", "--drafter-name", "pl4"],
            DrafterConfig("prompt-lookup", max_ngram=4, name="pl4"),
        ),
        (
            ["--drafter", "layer-skip", "--exit-layer", "2"],
            DrafterConfig("layer-skip", exit_layer=2),
        ),
    ],
    ids=["suffix", "component-skip", "model", "prompt-lookup", "layer-skip"],
)
def test_generated_drafter_flags_map_back_to_the_config_they_name(flags, drafter) -> None:
    assert _flags_config(*flags).drafter == drafter


def test_a_list_flag_that_is_not_integers_is_refused_naming_the_flag(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        _flags_config("--drafter", "layer-skip", "--layers", "0,x")
    assert exit_.value.code == 2
    assert "--layers takes comma-separated integers, not '0,x'" in capsys.readouterr().err


def test_the_flat_view_converts_stored_values_to_their_declared_types() -> None:
    config = from_table(
        DrafterConfig,
        {"kind": "component-skip", "components": ["mamba"], "layers": [2], "exit_layer": None},
    )
    assert (config.components, config.layers) == (("mamba",), (2,))
    # an int where a float is declared stays an int: the stored form (and run id) is as written
    assert type(from_table(SamplingConfig, {"temperature": 1}).temperature) is int
    with pytest.raises(TypeError, match="unexpected keyword argument 'temp'"):
        from_table(SamplingConfig, {"temp": 1})
    with pytest.raises(ConfigError, match=r"^d\.tree_depth: expected int, got '8'$"):
        from_table(DrafterConfig, {"kind": "suffix", "tree_depth": "8"}, "d.")
    with pytest.raises(ConfigError, match=r"^layers: expected list of int, got 2$"):
        from_table(DrafterConfig, {"kind": "layer-skip", "layers": 2})
    with pytest.raises(ConfigError, match=r"^max_ngram: expected int, got True$"):
        from_table(DrafterConfig, {"kind": "prompt-lookup", "max_ngram": True})


@pytest.mark.parametrize(
    ("drafter", "message"),
    [
        (
            {"kind": "layer-skip", "layers": 2},
            r"drafters\[0\]\.layers: expected list of int, got 2$",
        ),
        (
            {"kind": "suffix", "tree_depth": "8"},
            r"drafters\[0\]\.tree_depth: expected int, got '8'$",
        ),
        ({"kind": "model", "draft": {"name": "d", "dtype": 3}}, r"\.draft\.dtype: expected str"),
        ({"kind": "suffix", "draft": "d"}, r"drafters\[0\]: --draft is only used with --drafter"),
    ],
)
def test_a_study_drafter_table_is_read_by_the_option_fields_types(drafter, message) -> None:
    from specviz.study.spec import StudyError, parse_study

    with pytest.raises(StudyError, match=message):
        parse_study({"models": ["m"], "drafters": [drafter]}, "s.toml")
