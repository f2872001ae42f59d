"""What each drafter and policy kind supports is declared once (specviz.supports) and asked by
every caller: the configs, the batched runner, the batch drafter factory and the study planner."""

from __future__ import annotations

from pathlib import Path

import pytest

from specviz.batch.config import BatchConfigError, BatchDrafterError
from specviz.batch.runner import check_batchable
from specviz.cli import main
from specviz.config import (
    COMPONENTS,
    DRAFTERS,
    POLICIES,
    ConfigError,
    DrafterConfig,
    ModelSpec,
    PolicyConfig,
    RunConfig,
)
from specviz.study.units import _batch_size_one_only
from specviz.supports import (
    DRAFTER_SUPPORTS,
    POLICY_SUPPORTS,
    batched_drafters,
    unbatched_drafter,
    unbatched_policy,
)

TARGET = ModelSpec("smollm2-135m")


def test_every_drafter_and_policy_kind_declares_what_it_supports() -> None:
    assert tuple(DRAFTER_SUPPORTS) == DRAFTERS
    assert tuple(POLICY_SUPPORTS) == POLICIES
    unbatched = [
        s for s in [*DRAFTER_SUPPORTS.values(), *POLICY_SUPPORTS.values()] if not s.batched
    ]
    assert unbatched and all(s.unbatched_because for s in unbatched)


@pytest.mark.parametrize("kind", [k for k in DRAFTERS if not DRAFTER_SUPPORTS[k].batched])
def test_the_study_planner_skips_an_unbatched_drafter_with_the_runners_refusal(kind: str) -> None:
    options = {"component-skip": {"components": (COMPONENTS[0],)}}.get(kind, {})
    config = RunConfig(TARGET, DrafterConfig(kind, **options))
    with pytest.raises(BatchDrafterError) as refused:
        check_batchable(config)
    assert _batch_size_one_only(config) == str(refused.value) == unbatched_drafter(kind)
    assert "batch size 1 only" in str(refused.value)


@pytest.mark.parametrize("kind", [k for k in POLICIES if not POLICY_SUPPORTS[k].batched])
def test_the_study_planner_skips_an_unbatched_policy_with_the_runners_refusal(kind: str) -> None:
    costs = {"verify_s": [1.0] * 4, "draft_s": {"prompt-lookup": [0.1] * 3}}
    policy = PolicyConfig(kind, 2, cost_model=costs if kind == "cost-aware" else None)
    config = RunConfig(TARGET, DrafterConfig("prompt-lookup"), policy)
    with pytest.raises(BatchConfigError) as refused:
        check_batchable(config)
    assert _batch_size_one_only(config) == str(refused.value) == unbatched_policy(kind)


def test_a_batchable_config_passes_every_check() -> None:
    config = RunConfig(TARGET, DrafterConfig("layer-skip", exit_layer=2), PolicyConfig("svip", 3))
    check_batchable(config)
    assert _batch_size_one_only(config) is None
    assert set(batched_drafters()) == {"none", "model", "prompt-lookup", "layer-skip"}


@pytest.mark.parametrize(
    "kind", [k for k in DRAFTERS if k != "none" and not DRAFTER_SUPPORTS[k].stop_rules]
)
def test_a_stopping_policy_is_refused_for_a_drafter_without_stop_rules(kind: str) -> None:
    for policy in (p for p in POLICIES if POLICY_SUPPORTS[p].stops_drafts):
        with pytest.raises(ConfigError, match=f"policy '{policy}' needs draft probabilities"):
            RunConfig(TARGET, DrafterConfig(kind), PolicyConfig(policy, 2))


def test_cli_refuses_a_batched_suffix_run_in_one_line_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r"
    status = main(
        ["run", "--target", "smollm2-135m", "--drafter", "suffix", "--batch-size", "2",
         "--out", str(out)]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert status == 2, err
    assert "drafter 'suffix' has no batched version" in err and "batch size 1 only" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_every_kind_declared_batched_has_a_batch_drafter(
    tiny_model_dir: Path, tiny_draft_dir: Path
):
    from specviz.batch.drafters import build_batch_drafter
    from specviz.config import SamplingConfig
    from specviz.models import ModelCache

    models = ModelCache()
    target = models.get(ModelSpec(str(tiny_model_dir)))
    options = {"model": {"draft": ModelSpec(str(tiny_draft_dir))}, "layer-skip": {"exit_layer": 1}}
    for kind in batched_drafters():
        config = DrafterConfig(kind, **options.get(kind, {}))
        built = build_batch_drafter(config, target, SamplingConfig(), models)
        assert (built is None) == (kind == "none")
