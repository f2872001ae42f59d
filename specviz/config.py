"""Frozen configuration of a run: which models, which drafter, which policy, how to sample.

Every run directory stores its :class:`RunConfig` in ``run.json`` (``config``); resuming a run
with a different configuration is refused. Validation lives here so that the CLI, study files
and Python callers get the same messages.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import Field, asdict, dataclass, field, fields, is_dataclass, replace
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

from specviz.cost import (
    COST_MODEL_KEYS,
    COST_MODEL_VERSION,
    CostModel,
    CostModelError,
    curve_model,
)
from specviz.errors import SpecvizError
from specviz.supports import DRAFTER_SUPPORTS, POLICY_SUPPORTS, missing_stop_rules

T = TypeVar("T")
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


# Largest values the run directory can store (specviz.rundir.schema: events.k and requests.k are Int16,
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


def _option(default: Any, help: str, *, refuse: str | None = None, late: bool = False) -> Any:
    """A drafter option's field, declared here once; its name is its key in the flat view (study
    tables, ``--KEY`` flags, ``run.json``). ``help`` is the flag's help; ``refuse`` the message
    when another kind sets it (None: other kinds ignore it, as they always have); ``late``: added
    after the first runs, so the flat view holds None for other kinds and ``run.json`` leaves it
    out when unset (earlier runs keep their ids)."""
    return field(default=default, metadata={"help": help, "refuse": refuse, "late": late})


def _suffix_option(default: Any, help: str) -> Any:
    return _option(default, help, refuse="{key} is only used with --drafter suffix", late=True)


@dataclass(frozen=True)
class DraftModelOptions:
    """``model``: a separate draft model ``draft``; ``draft_quant`` (``int8``) drafts with an int8
    dynamically quantized copy of ``draft``, or of the target when ``draft`` is unset
    (:class:`RunConfig` then names the target as the draft; :func:`specviz.models.quantized_copy`,
    CPU only)."""

    draft: ModelSpec | None = _option(
        None, "the draft model", refuse="--draft is only used with --drafter model"
    )
    draft_quant: str | None = _option(
        None,
        "draft with an int8 dynamically quantized copy of --draft (or of the target when "
        "--draft is not given); CPU only",
        refuse="--draft-quant is only used with --drafter model",
        late=True,
    )

    def __post_init__(self) -> None:
        if self.draft_quant is not None and self.draft_quant not in DRAFT_QUANTS:
            raise ConfigError(
                f"draft quantization {self.draft_quant!r} is not one of {', '.join(DRAFT_QUANTS)}"
            )
        if (
            self.draft_quant is not None
            and self.draft is not None
            and self.draft.device.startswith("cuda")
        ):
            raise ConfigError(
                f"--draft-quant {self.draft_quant} runs on the CPU only (torch dynamic "
                "quantization has no CUDA kernels): use --device cpu, or a separate --draft model"
            )
        if self.draft is None and self.draft_quant is None:
            raise ConfigError(
                "drafter 'model' needs a draft model: pass --draft NAME, or --draft-quant int8 "
                "to draft with a quantized copy of the target"
            )


@dataclass(frozen=True)
class PromptLookupOptions:
    """``prompt-lookup``: n-gram lookup, trying ``max_ngram`` down to ``min_ngram``."""

    max_ngram: int = _option(3, "longest n-gram to match")
    min_ngram: int = _option(1, "shortest n-gram to match")

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

    exit_layer: int | None = _option(None, "draft with the first L layers")
    layers: tuple[int, ...] | None = _option(None, "draft with these layers (must include 0)")

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

    components: tuple[str, ...] | None = _option(
        None,
        "components to run, e.g. mamba,mlp (hybrid targets such as Falcon-H1)",
        refuse="components are only used with component-skip",
    )
    layers: tuple[int, ...] | None = _option(None, "in these layers")

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

    partition: str = _suffix_option(
        "shared", "memory shared by the stream (shared) or kept per task (task)"
    )
    memory_tokens: int = _suffix_option(4096, "output tokens the cross-request memory keeps")
    tree_depth: int = _suffix_option(24, "longest substring the trie counts")
    spec_factor: float = _suffix_option(1.0, "draft at most this x match-length tokens")
    min_token_prob: float = _suffix_option(
        0.1, "stop drafting when the continuation's probability falls below this"
    )

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


DrafterOptions = (
    DraftModelOptions
    | PromptLookupOptions
    | LayerSkipOptions
    | ComponentSkipOptions
    | SuffixOptions
)

#: drafter kind -> the class of its options (the baseline has none)
DRAFTER_OPTIONS: dict[str, type | None] = {
    "none": None,
    "model": DraftModelOptions,
    "prompt-lookup": PromptLookupOptions,
    "layer-skip": LayerSkipOptions,
    "component-skip": ComponentSkipOptions,
    "suffix": SuffixOptions,
}
assert tuple(DRAFTER_OPTIONS) == DRAFTERS


@dataclass(frozen=True)
class FlatKey:
    """A key of the drafters' flat view (a study's ``[[drafters]]`` key, a ``--KEY`` flag, a
    ``run.json`` key), made from the option fields of the kinds that use it: ``hint`` is its type
    (None aside), ``help`` each kind's help, ``default`` its value for every kind (None for a
    ``late`` key), ``refuse`` the message when another kind sets it."""

    name: str
    hint: Any
    default: Any
    kinds: tuple[str, ...]
    help: str
    refuse: str | None
    late: bool


def _flat_keys() -> tuple[FlatKey, ...]:
    """Each key once, in declaration order; the first kind declaring a key gives its type,
    default and refusal (kinds sharing one, as layer-skip and component-skip share ``layers``,
    agree)."""
    uses: dict[str, list[tuple[str, Field[Any], Any]]] = {}
    for kind, cls in DRAFTER_OPTIONS.items():
        for f in fields(cls) if cls else ():
            hint = get_type_hints(cls)[f.name]
            uses.setdefault(f.name, []).append((kind, f, hint))
    return tuple(
        FlatKey(
            name=key,
            hint=_without_none(kinds[0][2]),
            default=None if kinds[0][1].metadata["late"] else kinds[0][1].default,
            kinds=tuple(kind for kind, _, _ in kinds),
            help="; ".join(f"{kind}: {f.metadata['help']}" for kind, f, _ in kinds),
            refuse=(kinds[0][1].metadata["refuse"] or "").format(key=key) or None,
            late=kinds[0][1].metadata["late"],
        )
        for key, kinds in uses.items()
    )


def _without_none(hint: Any) -> Any:
    """``X`` of ``X | None``."""
    args = tuple(a for a in get_args(hint) if a is not type(None))
    return args[0] if type(None) in get_args(hint) and len(args) == 1 else hint


FLAT_KEYS = _flat_keys()


class ConfigTypeError(ConfigError):
    """A value has the wrong type for its key; the message names the key."""


def typed(hint: Any, value: Any, key: str) -> Any:
    """``value`` as JSON, TOML or a flag gives it, as the type ``hint`` declares: ``X | None``
    takes None, a list becomes a tuple, a table the dataclass it describes (:func:`from_table`),
    and a value of another type is refused naming ``key``. A number keeps its own type (an int
    where a float is declared stays an int), so the stored form, and so run ids, are as written."""
    if value is None and type(None) in get_args(hint):
        return None
    hint = _without_none(hint)
    if get_origin(hint) is tuple:
        item = get_args(hint)[0]
        if not isinstance(value, list | tuple):
            raise ConfigTypeError(f"{key}: expected list of {item.__name__}, got {value!r}")
        return tuple(typed(item, v, key) for v in value)
    if is_dataclass(hint) and isinstance(value, Mapping):
        return from_table(hint, value, f"{key}.")
    accepted = (int, float) if hint is float else hint
    if isinstance(value, accepted) and (hint is bool or not isinstance(value, bool)):
        return value
    raise ConfigTypeError(f"{key}: expected {hint.__name__}, got {value!r}")


def from_table(cls: type[T], table: Mapping[str, Any], where: str = "") -> T:
    """The frozen config ``cls`` a table describes (``run.json``, a study file's table, flags),
    each value converted to its field's declared type (:func:`typed`; errors name ``where`` + the
    key); the config then checks the values themselves. Unknown keys are the caller's to refuse."""
    hints = get_type_hints(cls)
    return cls(**{
        key: typed(hints[key], v, where + key) if key in hints else v  # cls names unknown keys
        for key, v in table.items()
    })  # fmt: skip


def _with_flat_options(cls: type) -> type:
    """``cls`` with one keyword-only field per :data:`FLAT_KEYS` key, added before
    ``@dataclass`` reads the fields: the options are declared once, in their kind's class."""
    for key in FLAT_KEYS:
        cls.__annotations__[key.name] = key.hint | None
        setattr(cls, key.name, field(default=key.default, kw_only=True))
    return cls


@dataclass(frozen=True)
@_with_flat_options
class DrafterConfig:
    """Which drafter proposes tokens (``kind``, of :data:`DRAFTERS`; ``none`` is plain
    autoregressive decoding through the same loop, the baseline), with its options.

    Each kind's options are declared once, in its own small frozen config
    (:data:`DRAFTER_OPTIONS`: :class:`DraftModelOptions`, :class:`PromptLookupOptions`,
    :class:`LayerSkipOptions`, :class:`ComponentSkipOptions`, :class:`SuffixOptions`), which
    validates them: :attr:`options`. The fields after ``kind`` and ``name`` are generated from
    those classes (:data:`FLAT_KEYS`) because this flat view is the stored form: study TOML
    tables, CLI flags and ``run.json`` all carry these keys, and run ids are hashes of it, so
    nesting them would change every recorded run's identity. A key another kind uses is refused
    where its field says so (``exit_layer``/``layers`` are ignored by other kinds, as they
    always were); n-gram sizes are stored, and so checked, whatever the kind; a kind's unset
    options are stored filled in with its class's defaults.

    ``name`` labels the drafter in event logs and metrics (the ``drafter`` column); it defaults to
    the kind. Two variants of one kind compared side by side (two layer-skip sets) need distinct
    names, or metrics pool them. A name equal to the kind is stored as ``None``.
    """

    kind: str = "none"
    name: str | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        self._normalise_components()
        self._check_name()
        if self.kind not in DRAFTERS:
            raise ConfigError(f"drafter {self.kind!r} is not one of {', '.join(DRAFTERS)}")
        self._refuse_foreign_options()
        PromptLookupOptions(self.max_ngram, self.min_ngram)
        options = self.options
        for f in fields(options) if options else ():  # stored filled in, as run.json has them
            object.__setattr__(self, f.name, getattr(options, f.name))

    @property
    def options(self) -> DrafterOptions | None:
        """This kind's own options, validated (None for ``none``); unset keys take the class's
        defaults."""
        cls = DRAFTER_OPTIONS[self.kind]
        if cls is None:
            return None
        given = {f.name: getattr(self, f.name) for f in fields(cls)}
        return cls(**{name: value for name, value in given.items() if value is not None})

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
        for key in FLAT_KEYS:
            if key.refuse and getattr(self, key.name) is not None and self.kind not in key.kinds:
                raise ConfigError(f"{key.refuse}, not {self.kind!r}")
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


def draft_length_error(k: int) -> str | None:
    """What is wrong with draft length ``k`` (``must be ...``), or None: the one bound check of
    k, for policies and study files alike."""
    if k < 1:
        return f"must be >= 1 (got {k})"
    if k > K_MAX:
        return f"must be <= {K_MAX} (got {k})"
    return None


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
        why = draft_length_error(self.k)
        if why is not None:
            hint = (
                "use --drafter none for plain decoding" if self.k < 1 else "draft lengths are Int16"
            )
            raise ConfigError(f"k {why}; {hint}")
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
        data = json.loads(json.dumps(asdict(self)))  # tuples as lists, as run.json reads back
        for key in FLAT_KEYS:
            if key.late and data["drafter"][key.name] is None:
                del data["drafter"][key.name]
        if data["policy"]["cost_model"] is None:
            del data["policy"]["cost_model"]
        for spec in (data["target"], data["drafter"].get("draft") or {}):
            if spec.get("engine") == "auto":  # the default: runs from before engines keep their ids
                del spec["engine"]
        if self.policy.cost_model is not None:  # as run.json stores it
            data["policy"]["cost_model"] = self.policy.cost_model.to_dict()
        return data

    @staticmethod
    def from_dict(data: dict[str, Any]) -> RunConfig:
        """The config ``to_dict`` (a ``run.json``) stored, each value read by its field's type."""
        drafter = data.get("drafter", {})
        policy = dict(data.get("policy", {}))
        if "verify_costs" in policy:  # written before the one cost model: read it as one
            label = drafter.get("name") or drafter.get("kind", "none")
            verify, draft = policy.pop("verify_costs"), policy.pop("draft_costs", None)
            policy["cost_model"] = curve_model(verify, draft, label)
        return from_table(RunConfig, {**data, "policy": PolicyConfig(**policy)})
