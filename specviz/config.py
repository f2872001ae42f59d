"""Frozen configuration of a run: which models, which drafter, which policy, how to sample.

Every run directory stores its :class:`RunConfig` in ``run.json`` (``config``); resuming a run
with a different configuration is refused. Validation lives here so that the CLI, study files
and Python callers get the same messages.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from specviz.cost import (
    COST_MODEL_KEYS,
    COST_MODEL_VERSION,
    CostModel,
    CostModelError,
    curve_model,
)
from specviz.errors import SpecvizError
from specviz.supports import DRAFTER_SUPPORTS, POLICY_SUPPORTS, missing_stop_rules

DRAFTERS = tuple(DRAFTER_SUPPORTS)
PARTITIONS = ("shared", "task")  # suffix drafter memory: one for the stream, or one per category
COMPONENTS = ("attention", "mamba", "mlp")  # of a hybrid (Falcon-H1) decoder layer
POLICIES = tuple(POLICY_SUPPORTS)
# the drafter stops early: needs a distribution (specviz.supports)
STOPPING_POLICIES = tuple(kind for kind, s in POLICY_SUPPORTS.items() if s.stops_drafts)
DRAFT_QUANTS = ("int8",)  # --draft-quant: int8 = torch dynamic quantization of nn.Linear (CPU)
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16", "float16", "q4")  # q4: the GGUF's Q4_1 weights (lean)
ENGINES = ("auto", "lean", "lean-invariant", "transformers")  # docs/engine.md


# Largest values the run directory can store (specviz.schema: events.k and requests.k are Int16,
# requests.new_tokens Int32; tests/test_hostile_input.py checks these against the schema).
K_MAX = 2**15 - 1
MAX_NEW_TOKENS_MAX = 2**31 - 1
MAX_NEW_TOKENS = 128  # default tokens per turn: run configs, the CLI, study specs
N_BOOT = 1000  # default bootstrap resamples per interval: reports, the CLI, the study answer


class ConfigError(SpecvizError):
    """A configuration value is invalid; the message says which and how to fix it."""


@dataclass(frozen=True)
class ModelSpec:
    """A model named as a hub id, a local directory, a ``.gguf`` file, or ``smollm2-135m``.

    ``device="auto"`` picks CUDA when available, else the CPU; ``dtype="auto"`` is bfloat16 on
    CUDA and on a CPU with native bf16, else float32 (:func:`specviz.precision.choose_dtype`).
    ``engine`` (docs/engine.md): ``auto`` is the lean forward where it supports the model, else
    transformers; ``lean-invariant`` computes each row as a one-row forward would (exact greedy
    speculation in bf16).
    """

    name: str
    revision: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False
    engine: str = "auto"

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ConfigError(
                "model name is empty: pass a hub id, a directory, a .gguf file or smollm2-135m"
            )
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise ConfigError(
                f"device {self.device!r} is not one of {', '.join(DEVICES)} (or cuda:N)"
            )
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")
        if self.engine not in ENGINES:
            raise ConfigError(f"engine {self.engine!r} is not one of {', '.join(ENGINES)}")


@dataclass(frozen=True)
class DraftModelOptions:
    """``model``: a separate draft model ``draft``; ``quant`` (``int8``) drafts with an int8
    dynamically quantized copy of ``draft``, or of the target when ``draft`` is unset
    (:class:`RunConfig` then names the target as the draft)."""

    draft: ModelSpec | None = None
    quant: str | None = None

    def __post_init__(self) -> None:
        if self.quant is not None and self.quant not in DRAFT_QUANTS:
            raise ConfigError(
                f"draft quantization {self.quant!r} is not one of {', '.join(DRAFT_QUANTS)}"
            )
        if (
            self.quant is not None
            and self.draft is not None
            and self.draft.device.startswith("cuda")
        ):
            raise ConfigError(
                f"--draft-quant {self.quant} runs on the CPU only (torch dynamic "
                "quantization has no CUDA kernels): use --device cpu, or a separate --draft model"
            )
        if self.draft is None and self.quant is None:
            raise ConfigError(
                "drafter 'model' needs a draft model: pass --draft NAME, or --draft-quant int8 "
                "to draft with a quantized copy of the target"
            )


@dataclass(frozen=True)
class PromptLookupOptions:
    """``prompt-lookup``: n-gram lookup, trying ``max_ngram`` down to ``min_ngram``."""

    max_ngram: int = 3
    min_ngram: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.min_ngram <= self.max_ngram:
            raise ConfigError(
                f"n-gram sizes must satisfy 1 <= min_ngram <= max_ngram (got {self.min_ngram}, "
                f"{self.max_ngram})"
            )


@dataclass(frozen=True)
class LayerSkipOptions:
    """``layer-skip``: the target's own layers ``layers`` (must list 0), or the first
    ``exit_layer`` layers; exactly one of the two. Whether they exist in the model is checked
    when it is loaded (:func:`specviz.drafters.layer_skip.kept_layers`)."""

    exit_layer: int | None = None
    layers: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if (self.exit_layer is None) == (self.layers is None):
            raise ConfigError("layer-skip needs exactly one of --exit-layer L or --layers 0,2,4")
        if self.exit_layer is not None and self.exit_layer < 1:
            raise ConfigError(f"--exit-layer must be >= 1 (got {self.exit_layer})")
        if self.layers is not None and (not self.layers or 0 not in self.layers):
            raise ConfigError("--layers must list layer 0 (the cache length is read from it)")


@dataclass(frozen=True)
class ComponentSkipOptions:
    """``component-skip``: a hybrid target (Falcon-H1) drafting with only ``components`` (of
    :data:`COMPONENTS`, in that order) in its layers ``layers`` (all layers when None)."""

    components: tuple[str, ...] | None = None
    layers: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not self.components:
            raise ConfigError(
                'component-skip needs the components to draft with, e.g. components = ["mamba", '
                '"mlp"] (the SSM path alone) or ["attention", "mlp"]'
            )
        if len(self.components) == len(COMPONENTS):
            raise ConfigError(
                "component-skip lists every component, which is the target itself: leave out "
                "at least one of " + ", ".join(COMPONENTS)
            )
        if self.layers is not None and not self.layers:
            raise ConfigError(
                "component-skip layers is empty: list the layers that draft with the chosen "
                "components, or leave it out for all layers"
            )


@dataclass(frozen=True)
class SuffixOptions:
    """``suffix``: the suffix cache (:mod:`specviz.drafters.suffix`); defaults are
    ArcticInference's (tree depth 24, min prob 0.1)."""

    partition: str = "shared"
    memory_tokens: int = 4096
    tree_depth: int = 24
    spec_factor: float = 1.0
    min_token_prob: float = 0.1

    def __post_init__(self) -> None:
        if self.partition not in PARTITIONS:
            raise ConfigError(
                f"suffix partition {self.partition!r} is not one of {', '.join(PARTITIONS)}"
            )
        if self.memory_tokens < 0:
            raise ConfigError(
                f"suffix memory_tokens must be >= 0 (got {self.memory_tokens}); 0 keeps no memory"
            )
        if self.tree_depth < 2:
            raise ConfigError(f"suffix tree_depth must be >= 2 (got {self.tree_depth})")
        if not (math.isfinite(self.spec_factor) and self.spec_factor > 0):
            raise ConfigError(f"suffix spec_factor must be > 0 and finite (got {self.spec_factor})")
        if not 0.0 <= self.min_token_prob < 1.0:
            raise ConfigError(
                f"suffix min_token_prob must be in [0, 1) (got {self.min_token_prob})"
            )


# suffix-drafter options and their defaults, as the flat DrafterConfig fields name them
SUFFIX_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(SuffixOptions)}

DrafterOptions = (
    DraftModelOptions
    | PromptLookupOptions
    | LayerSkipOptions
    | ComponentSkipOptions
    | SuffixOptions
)

# option field -> (the kinds that use it, how a refusal names it); exit_layer and layers are
# not listed: kinds that do not use them have always ignored them, and run directories recorded
# with them must still open
_ONLY_WITH: dict[str, tuple[tuple[str, ...], str]] = {
    "draft_quant": (("model",), "--draft-quant is only used with --drafter model"),
    "draft": (("model",), "--draft is only used with --drafter model"),
    **{key: (("suffix",), f"{key} is only used with --drafter suffix") for key in SUFFIX_DEFAULTS},
    "components": (("component-skip",), "components are only used with component-skip"),
}


@dataclass(frozen=True)
class DrafterConfig:
    """Which drafter proposes tokens, with its options.

    - ``none``: plain autoregressive decoding through the same loop (the baseline);
    - ``model``: a separate draft model ``draft`` with its own KV cache; ``draft_quant``
      (``int8``) drafts with an int8 dynamically quantized copy of ``draft``, or of the target
      when ``draft`` is unset (:func:`specviz.models.quantized_copy`; CPU only): a real draft/target pair with
      one tokenizer and nothing to download;
    - ``prompt-lookup``: n-gram lookup in the context, trying ``max_ngram`` down to ``min_ngram``;
    - ``layer-skip``: the target's own layers ``layers`` (or the first ``exit_layer`` layers);
    - ``component-skip``: a hybrid target (Falcon-H1) drafting with only ``components`` (of
      attention, mamba, mlp) in its layers ``layers`` (all layers when unset); the other layers
      run in full. ``["mamba", "mlp"]`` is the SSM path alone, ``["attention", "mlp"]`` the reverse.
    - ``suffix``: the suffix cache (:mod:`specviz.drafters.suffix`) over the request's prompt and
      output and the run's earlier outputs: ``partition`` (``shared`` or ``task``: one memory
      per category), ``memory_tokens`` (its bound, >= 0; 0 keeps no memory across requests),
      ``tree_depth`` (>= 2), ``spec_factor`` (> 0: at most factor x match length tokens) and
      ``min_token_prob`` (in [0, 1): stop when the continuation's probability falls below it).
      Unset options take :data:`SUFFIX_DEFAULTS`; other kinds refuse them.

    Each kind's options are its own small frozen config (:class:`DraftModelOptions`,
    :class:`PromptLookupOptions`, :class:`LayerSkipOptions`, :class:`ComponentSkipOptions`,
    :class:`SuffixOptions`), which validates them, once: :attr:`options`. The fields stay flat
    here because this is the stored form: study TOML tables, CLI flags and ``run.json`` all carry
    these keys, and run ids are hashes of it, so nesting them would change every recorded run's
    identity. A field another kind uses is refused by name (``exit_layer``/``layers`` excepted,
    see ``_ONLY_WITH``); n-gram sizes are checked whatever the kind, as they always were.

    ``name`` labels the drafter in event logs and metrics (the ``drafter`` column); it defaults to
    the kind. Two variants of one kind compared side by side (two layer-skip sets) need distinct
    names, or metrics pool them. A name equal to the kind is stored as ``None``.
    """

    kind: str = "none"
    draft: ModelSpec | None = None
    max_ngram: int = 3
    min_ngram: int = 1
    exit_layer: int | None = None
    layers: tuple[int, ...] | None = None
    components: tuple[str, ...] | None = None
    name: str | None = None
    partition: str | None = None
    memory_tokens: int | None = None
    tree_depth: int | None = None
    spec_factor: float | None = None
    min_token_prob: float | None = None
    draft_quant: str | None = None

    def __post_init__(self) -> None:
        self._normalise_components()
        self._check_name()
        if self.kind not in DRAFTERS:
            raise ConfigError(f"drafter {self.kind!r} is not one of {', '.join(DRAFTERS)}")
        self._refuse_foreign_options()
        PromptLookupOptions(self.max_ngram, self.min_ngram)
        options = self.options
        if isinstance(options, SuffixOptions):  # stored filled in, as run.json has them
            for key in SUFFIX_DEFAULTS:
                object.__setattr__(self, key, getattr(options, key))

    @property
    def options(self) -> DrafterOptions | None:
        """This kind's own options, validated (None for ``none``)."""
        return _OPTIONS[self.kind](self)

    def _normalise_components(self) -> None:
        if isinstance(self.components, str):
            raise ConfigError(
                f'components takes a list such as ["mamba", "mlp"], not the string '
                f"{self.components!r}"
            )
        if self.components is not None:  # lists from TOML/JSON; one canonical order
            names = set(self.components)
            object.__setattr__(self, "components", tuple(c for c in COMPONENTS if c in names))
            unknown = sorted(names - set(COMPONENTS))
            if unknown:
                raise ConfigError(f"component {unknown[0]!r} is not one of {', '.join(COMPONENTS)}")

    def _refuse_foreign_options(self) -> None:
        for key, (kinds, message) in _ONLY_WITH.items():
            if getattr(self, key) is not None and self.kind not in kinds:
                raise ConfigError(f"{message}, not {self.kind!r}")
        if self.kind == "component-skip" and self.exit_layer is not None:
            raise ConfigError(
                "component-skip takes layers (or none for all layers), not an exit layer"
            )

    def _check_name(self) -> None:
        if self.name is None:
            return
        if self.name == self.kind:
            object.__setattr__(self, "name", None)
            return
        if not self.name.strip() or self.name != self.name.strip():
            raise ConfigError(
                f"drafter name {self.name!r} is empty or padded with spaces: give a plain label"
            )
        if self.kind == "none":
            raise ConfigError("the baseline (drafter none) takes no name")
        if self.name in DRAFTERS:
            raise ConfigError(
                f"drafter name {self.name!r} is another drafter kind; pick a label such as "
                f"{self.kind}-2"
            )

    @property
    def label(self) -> str:
        """The drafter's name in event logs and metrics: ``name``, else the kind."""
        return self.name or self.kind


def _suffix_options(config: DrafterConfig) -> SuffixOptions:
    given = {key: getattr(config, key) for key in SUFFIX_DEFAULTS}
    return SuffixOptions(**{key: value for key, value in given.items() if value is not None})


# drafter kind -> its options, read from the flat config
_OPTIONS: dict[str, Callable[[DrafterConfig], DrafterOptions | None]] = {
    "none": lambda c: None,
    "model": lambda c: DraftModelOptions(c.draft, c.draft_quant),
    "prompt-lookup": lambda c: PromptLookupOptions(c.max_ngram, c.min_ngram),
    "layer-skip": lambda c: LayerSkipOptions(c.exit_layer, c.layers),
    "component-skip": lambda c: ComponentSkipOptions(c.components, c.layers),
    "suffix": _suffix_options,
}
assert tuple(_OPTIONS) == DRAFTERS


@dataclass(frozen=True)
class PolicyConfig:
    """How many tokens to draft each round.

    - ``constant``: always ``k``;
    - ``heuristic``: transformers' schedule: start at ``k``; +2 after a round whose drafts were all
      accepted, else -1 (minimum 1); the state persists across requests of a run;
    - ``heuristic-per-request``: the same, reset to ``k`` at each request;
    - ``confidence``: up to ``k``, stopping early when the draft's top probability falls below
      ``threshold``, in (0, 1) (needs a drafter with probabilities: model, layer-skip or
      component-skip);
    - ``svip``: up to ``k``, stopping early when the square root of the draft distribution's
      entropy (nats) exceeds ``threshold`` (SVIP's h, > 0; the same drafters as ``confidence``);
    - ``heuristic-per-task``: the heuristic with one k per task (the request's category), kept
      across the run's requests of that task;
    - ``cost-aware``: each round the k in 0..``k`` that maximises expected tokens per second
      from a running estimate of the current task's acceptance and a cost curve
      (:class:`specviz.policies.CostAware`). ``cost_model``: a :class:`specviz.cost.CostModel`
      (or its ``to_dict`` form, ``version`` optional): ``verify_s`` for 1..k+1 rows and
      ``draft_s`` for the run's drafter (its label); any unit, the same for both. Without it the
      runner measures one before the run (:mod:`specviz.calibrate`) and records it in
      ``run.json`` (``cost_model``).
    """

    kind: str = "constant"
    k: int = 5
    threshold: float = 0.4
    cost_model: CostModel | None = None

    def __post_init__(self) -> None:
        if self.kind not in POLICIES:
            raise ConfigError(f"policy {self.kind!r} is not one of {', '.join(POLICIES)}")
        if self.k < 1:
            raise ConfigError(
                f"k must be >= 1 (got {self.k}); use --drafter none for plain decoding"
            )
        if self.k > K_MAX:
            raise ConfigError(f"k must be <= {K_MAX} (got {self.k}); draft lengths are Int16")
        if self.kind == "svip" and not (math.isfinite(self.threshold) and self.threshold > 0):
            raise ConfigError(
                f"svip threshold (sqrt of entropy) must be > 0 (got {self.threshold})"
            )
        if self.kind != "svip" and not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"confidence threshold must be in (0, 1) (got {self.threshold})")
        self._check_costs()

    def _check_costs(self) -> None:
        model: Any = self.cost_model
        if model is None:
            return
        if isinstance(model, Mapping):
            unknown = sorted(set(model) - COST_MODEL_KEYS)
            if unknown:
                raise ConfigError(
                    f"cost_model: unknown key {unknown[0]!r} (known: "
                    f"{', '.join(sorted(COST_MODEL_KEYS))})"
                )
            try:
                model = CostModel.from_dict({"version": COST_MODEL_VERSION, **model})
            except CostModelError as err:
                raise ConfigError(f"cost_model: {err}") from err
            object.__setattr__(self, "cost_model", model)
        if not isinstance(model, CostModel):
            raise ConfigError(f"cost_model takes a table (verify_s, draft_s), not {model!r}")
        if self.kind != "cost-aware":
            raise ConfigError(
                f"cost models are only used with policy cost-aware, not {self.kind!r}"
            )
        if len(model.verify_s) < self.k + 1:
            raise ConfigError(
                f"cost-aware with k={self.k} needs cost_model verify_s for 1..{self.k + 1} rows "
                f"(got {len(model.verify_s)} values)"
            )
        if min(model.verify_s) <= 0:
            raise ConfigError("cost_model verify_s must be > 0 (a forward is never free)")


@dataclass(frozen=True)
class SamplingConfig:
    """Greedy when ``temperature == 0``; else temperature and top-p, applied to p and q alike."""

    temperature: float = 0.0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0 and finite (got {self.temperature})")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"top-p must be in (0, 1] (got {self.top_p})")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def _json_shaped(value: Any) -> Any:
    """``value`` as JSON reads it back: tuples become lists, inside dicts and lists too.

    Serialised, the two are the same text, so hashes of the JSON (run ids, study fingerprints)
    do not change."""
    if isinstance(value, dict):
        return {key: _json_shaped(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_shaped(item) for item in value]
    return value


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's output (the workload is stored beside it)."""

    target: ModelSpec
    drafter: DrafterConfig = field(default_factory=DrafterConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    max_new_tokens: int = MAX_NEW_TOKENS
    seed: int = 0

    def __post_init__(self) -> None:
        if self.drafter.draft_quant is not None and self.drafter.draft is None:
            # a quantized copy of the target: name the target as the draft it is made from
            object.__setattr__(self, "drafter", replace(self.drafter, draft=self.target))
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1 (got {self.max_new_tokens})")
        if self.max_new_tokens > MAX_NEW_TOKENS_MAX:
            raise ConfigError(
                f"max_new_tokens must be <= {MAX_NEW_TOKENS_MAX} (got {self.max_new_tokens})"
            )
        why = missing_stop_rules(self.drafter.kind, self.policy.kind)
        if why is not None:
            raise ConfigError(why)

        self_drafting = not DRAFTER_SUPPORTS[self.drafter.kind].own_cost
        costs = self.policy.cost_model
        if self.policy.kind == "cost-aware" and costs is None and self_drafting:
            raise ConfigError(
                f"cost-aware cannot measure what drafter {self.drafter.kind!r} costs (it drafts "
                "with the target's own layers): give the policy a cost_model with its draft_s"
            )
        drafting = costs is not None and self.drafter.kind != "none"
        if drafting and self.drafter.label not in costs.draft_s:
            raise ConfigError(
                f"the policy's cost_model has no draft_s for drafter {self.drafter.label!r} "
                f"(has: {', '.join(costs.draft_s) or 'none'}): add its draft costs by tokens"
            )

    @property
    def policy_label(self) -> str:
        return "none" if self.drafter.kind == "none" else self.policy.kind

    @property
    def k_label(self) -> int:
        return 0 if self.drafter.kind == "none" else self.policy.k

    def to_dict(self) -> dict[str, Any]:
        """The config as plain data, shaped as ``run.json`` reads it back (lists, not tuples), so
        a resumed run compares equal to the one it continues; options a kind does not use (None)
        are left out, so run directories written before those options existed keep their
        identity."""
        data = _json_shaped(asdict(self))
        for key in (*SUFFIX_DEFAULTS, "cost_model", "draft_quant"):
            for part in ("drafter", "policy"):
                if key in data[part] and data[part][key] is None:
                    del data[part][key]
        for spec in (data["target"], data["drafter"].get("draft") or {}):
            if spec.get("engine") == "auto":  # the default: runs from before engines keep their ids
                del spec["engine"]
        if self.policy.cost_model is not None:  # as run.json stores it
            data["policy"]["cost_model"] = self.policy.cost_model.to_dict()
        return data

    @staticmethod
    def from_dict(data: dict[str, Any]) -> RunConfig:
        drafter = dict(data.get("drafter", {}))
        if drafter.get("draft") is not None:
            drafter["draft"] = ModelSpec(**drafter["draft"])
        if drafter.get("layers") is not None:
            drafter["layers"] = tuple(drafter["layers"])
        if drafter.get("components") is not None:
            drafter["components"] = tuple(drafter["components"])
        policy = dict(data.get("policy", {}))
        if "verify_costs" in policy:  # written before the one cost model: read it as one
            label = drafter.get("name") or drafter.get("kind", "none")
            verify, draft = policy.pop("verify_costs"), policy.pop("draft_costs", None)
            policy["cost_model"] = curve_model(verify, draft, label)
        return RunConfig(
            target=ModelSpec(**data["target"]),
            drafter=DrafterConfig(**drafter),
            policy=PolicyConfig(**policy),
            sampling=SamplingConfig(**data.get("sampling", {})),
            max_new_tokens=int(data.get("max_new_tokens", MAX_NEW_TOKENS)),
            seed=int(data.get("seed", 0)),
        )
