"""From a study to its conditions and its units of work, and the deterministic shard slices.

A *condition* is one run configuration over one mixture's stream: a target, a drafter (or the
autoregressive baseline), a policy and k, a sampling setting and a mixture. A *unit* is a
condition at one repeat: the smallest piece of work, run whole because its stream order carries
adaptive-policy state (a persistent heuristic's k at request 7 depends on requests 0-6). Each unit
writes its own run directory, so units are independent: they can run in any order, on any
machine, and be resumed one by one.

Sharding: the units are listed in a fixed order (conditions in study-file order, then repeats);
shard ``i/n`` takes every unit whose position ``p`` satisfies ``p % n == i - 1``. Shards are
disjoint and together cover every unit, so shards 1/n..n/n run exactly the requests of an
unsharded study, and reading every shard's output directory merges them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

from specviz.batch.config import BatchConfig
from specviz.config import (
    ConfigError,
    DrafterConfig,
    ModelSpec,
    PolicyConfig,
    RunConfig,
    SamplingConfig,
)
from specviz.reuse import Reused
from specviz.study.reuse import assign_reuse
from specviz.study.spec import NamedDrafter, Study, StudyError, TrafficSpec, slug
from specviz.supports import unbatched_drafter, unbatched_policy
from specviz.workloads.categorize import categorize_prompts
from specviz.workloads.loaders import load_prompts
from specviz.workloads.mixtures import (
    Mixture,
    MixtureError,
    build_stream,
    categories_of,
    custom,
    single_task,
    sweep,
    uniform,
)
from specviz.workloads.prompt import Prompt
from specviz.workloads.request import Request
from specviz.workloads.sharegpt import ShareGPTSampling, length_table

BASELINE_CONDITION = "baseline"  # label and condition-id part of a study's plain-decoding condition


@dataclass(frozen=True)
class Condition:
    """One configuration over one mixture."""

    id: str
    config: RunConfig
    mixture: Mixture
    drafter_name: str  # the study's name for the drafter, or "baseline"
    batch: BatchConfig | None = None  # None: unbatched (batch size 1)

    @property
    def baseline(self) -> bool:
        return self.config.drafter.kind == "none"


@dataclass(frozen=True)
class Unit:
    """A condition at one repeat, with its requests and run directory (relative to the study)."""

    condition_id: str
    repeat: int
    config: RunConfig
    requests: tuple[Request, ...]
    run_dir: str
    batch: BatchConfig | None = None
    reuse: tuple[Reused, ...] = ()  # requests copied from another unit's decode (study.reuse)

    @property
    def id(self) -> str:
        return f"{self.condition_id}--r{self.repeat}"


@dataclass(frozen=True)
class Skipped:
    """A combination the study file asks for that cannot run, and why."""

    description: str
    reason: str


@dataclass(frozen=True)
class Plan:
    """Everything a study will run."""

    prompts: tuple[Prompt, ...]
    mixtures: tuple[Mixture, ...]
    conditions: tuple[Condition, ...]
    units: tuple[Unit, ...]
    skipped: tuple[Skipped, ...]
    traffic: Traffic | None = None

    def prompts_of(self, mixture: Mixture) -> tuple[Prompt, ...]:
        """The prompts a mixture draws from: the traffic sample's, or the workload's."""
        if self.traffic is not None and mixture.name in self.traffic.mixtures:
            return self.traffic.prompts
        return self.prompts


@dataclass(frozen=True)
class Traffic:
    """A real traffic sample and its mixtures (the stream and its per-label single tasks)."""

    spec: TrafficSpec
    prompts: tuple[Prompt, ...]
    mixtures: tuple[str, ...]
    describe: Mapping[str, Any] = field(default_factory=dict)


def study_traffic(study: Study) -> tuple[Traffic, list[Mixture]] | None:
    """The ``[mixtures.traffic]`` sample, labelled, and its mixtures; None without one."""
    spec = study.mixtures.traffic
    if spec is None:
        return None
    from specviz.workloads.packaged import ShareGPTSource
    from specviz.workloads.traffic import target_traffic

    source = ShareGPTSource(Path(spec.path) if spec.path is not None else None)
    sampling = ShareGPTSampling(size=spec.size, seed=spec.seed, mode=spec.mode)
    target = study.models[0]  # lengths in the first target's tokens
    try:
        data, sample = target_traffic(source, sampling, target.name, target.trust_remote_code)
        data_set = source.data_set()
    except ValueError as err:
        raise StudyError(f"{study.source_file}: mixtures.traffic: {err}") from err
    prompts = tuple(sample.prompts)
    counts = Counter(p.category for p in prompts)
    mixtures = [
        Mixture(spec.name, tuple(counts.items()), len(prompts), order="source", seed=spec.seed)
    ]
    if spec.single:
        mixtures += [
            Mixture(f"{spec.name}-{slug(c)}", ((c, 1.0),), n, order="blocked", seed=study.seed)
            for c, n in counts.items()
        ]
    describe = {
        "data_set": data_set,
        "read": data.describe(),
        "sampling": sampling.describe(),
        "dropped": dict(sample.dropped),
        "lengths": length_table(sample.items),
    }
    traffic = Traffic(spec, prompts, tuple(m.name for m in mixtures), describe)
    return traffic, mixtures


def study_prompts(study: Study) -> list[Prompt]:
    """The study's prompts, restricted to its categories (in the file's order)."""
    try:
        prompts = load_prompts(study.workload.source, study.workload.mapping)
    except ValueError as err:
        raise StudyError(f"{study.source_file}: workload.source: {err}") from err
    if study.workload.categorize:
        prompts = categorize_prompts(prompts)
    wanted = study.workload.categories
    if wanted is None:
        return prompts
    known = categories_of(prompts)
    unknown = [c for c in wanted if c not in known]
    if unknown:
        raise StudyError(
            f"{study.source_file}: workload.categories: unknown {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(known)}"
        )
    return sorted(
        (p for p in prompts if p.category in wanted), key=lambda p: wanted.index(p.category)
    )


def study_mixtures(study: Study, prompts: Sequence[Prompt]) -> list[Mixture]:
    """Single-task, uniform, custom and sweep mixtures, in that order."""
    cats = categories_of(prompts)
    n = study.workload.per_category
    spec = study.mixtures
    size = spec.size or n * len(cats)
    mixtures: list[Mixture] = []
    if spec.single:
        mixtures += [single_task(c, n, seed=study.seed) for c in cats]
    mixtures += [uniform(cats, size, order=o, seed=study.seed) for o in spec.uniform]
    mixtures += [
        custom(name, dict(weights), size, order=spec.order, seed=study.seed)
        for name, weights in spec.custom
    ]
    if spec.sweep_task is not None:
        try:
            mixtures += sweep(
                spec.sweep_task, cats, spec.sweep_steps, size, order=spec.order, seed=study.seed
            )
        except MixtureError as err:
            raise StudyError(f"{study.source_file}: mixtures.sweep: {err}") from err
    names = [m.name for m in mixtures]
    dup = sorted({x for x in names if names.count(x) > 1})
    if dup:
        raise StudyError(f"{study.source_file}: mixtures: two mixtures are named {dup[0]!r}")
    if not mixtures:
        raise StudyError(
            f"{study.source_file}: mixtures: no mixture selected (single = false and no others)"
        )
    return mixtures


def _sampling_label(s: SamplingConfig) -> str:
    return "greedy" if s.greedy else f"t{s.temperature:g}-p{s.top_p:g}"


def _model_label(name: str) -> str:
    return slug(Path(name).name if "/" in name and Path(name).exists() else name.replace("/", "_"))


@dataclass(frozen=True)
class _Cell:
    """One (target, sampling, mixture) of a study: the conditions of every method over it."""

    study: Study
    target: ModelSpec
    sampling: SamplingConfig
    mixture: Mixture

    @property
    def prefix(self) -> str:
        # names reach paths (runs/<condition-id>): a category such as "../x" is slugged
        return f"{_model_label(self.target.name)}--{slug(self.mixture.name)}"

    def config(self, drafter: DrafterConfig, policy: PolicyConfig) -> RunConfig:
        return RunConfig(
            target=self.target,
            drafter=drafter,
            policy=policy,
            sampling=self.sampling,
            max_new_tokens=self.study.max_new_tokens,
            seed=self.study.seed,
        )

    def baseline(self) -> list[Condition]:
        config = self.config(DrafterConfig(), PolicyConfig())
        cid = f"{self.prefix}--{BASELINE_CONDITION}--{_sampling_label(self.sampling)}"
        return [
            Condition(cid + tail, config, self.mixture, BASELINE_CONDITION, batch)
            for tail, batch in batch_settings(self.study, self.mixture)
        ]

    def method(
        self, drafter: NamedDrafter, policy: PolicyConfig, k: int
    ) -> tuple[list[Condition], list[Skipped]]:
        """The conditions of one drafter, policy and k; the settings it cannot run, and why."""
        label = f"{drafter.name}/{policy.kind}/k{k}"
        try:
            config = self.config(drafter.config, _with_k(policy, k))
        except ConfigError as err:
            return [], [Skipped(label, str(err))]
        cid = f"{self.prefix}--{drafter.name}--{policy.kind}-k{k}--{_sampling_label(self.sampling)}"
        conditions: list[Condition] = []
        skipped: list[Skipped] = []
        for tail, batch in batch_settings(self.study, self.mixture):
            why = _batch_size_one_only(config) if batch else None
            if why is not None:
                skipped.append(Skipped(f"{label}{tail}", why))
            else:
                conditions.append(Condition(cid + tail, config, self.mixture, drafter.name, batch))
        return conditions, skipped


def _with_k(policy: PolicyConfig, k: int) -> PolicyConfig:
    """The study's policy at draft length ``k`` (built afresh: its checks see this k)."""
    return PolicyConfig(
        kind=policy.kind,
        k=k,
        threshold=policy.threshold,
        cost_model=policy.cost_model,
    )


def _methods(study: Study) -> Iterator[tuple[NamedDrafter, PolicyConfig, int]]:
    """Every (drafter, policy, k) of the study, in study-file order."""
    for drafter in study.drafters:
        for policy in drafter.policies or study.policies:
            for k in drafter.k or study.k:
                yield drafter, policy, k


def study_conditions(
    study: Study, mixtures: Sequence[Mixture]
) -> tuple[list[Condition], list[Skipped]]:
    """Every condition, baseline first within each (target, sampling, mixture); what cannot run
    is listed once (for the first mixture)."""
    conditions: list[Condition] = []
    skipped: list[Skipped] = []
    for target, sampling, mixture in product(study.models, study.sampling, mixtures):
        cell = _Cell(study, target, sampling, mixture)
        if study.baseline:
            conditions += cell.baseline()
        for drafter, policy, k in _methods(study):
            made, not_made = cell.method(drafter, policy, k)
            conditions += made
            if mixture is mixtures[0]:
                skipped += not_made
    ids = [c.id for c in conditions]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise StudyError(
            f"{study.source_file}: two conditions share the id {dup!r}: name them apart"
        )
    return conditions, skipped


def _batch_size_one_only(config: RunConfig) -> str | None:
    """Why ``config`` cannot run batched (None when it can), as each kind declares it
    (:mod:`specviz.supports`); the batched runner refuses with the same message."""
    return unbatched_drafter(config.drafter.kind) or unbatched_policy(config.policy.kind)


def batch_settings(study: Study, mixture: Mixture) -> list[tuple[str, BatchConfig | None]]:
    """(condition id suffix, batch config) of every batch setting a mixture runs at.

    Size 1 is the unbatched run (no suffix). A mixture of one task has one batched condition per
    size (every composition of one task is the same batches), labelled single-task.
    """
    spec = study.batching
    one_task = len(mixture.categories) == 1
    out: list[tuple[str, BatchConfig | None]] = []
    for size in spec.sizes:
        if size == 1:
            out.append(("", None))
            continue
        compositions = ("single-task",) if one_task else spec.compositions
        for composition in compositions:
            batch = BatchConfig(size, composition, spec.continuous, spec.k_mode)
            out.append((f"--b{size}-{composition}", batch))
    return out


def run_dir_name(condition_id: str, repeat: int, repeats: int) -> str:
    """``runs/<condition-id>``; with several repeats ``runs/<condition-id>--r<repeat>``."""
    return f"runs/{condition_id}" if repeats == 1 else f"runs/{condition_id}--r{repeat}"


def plan_study(study: Study) -> Plan:
    """Load the prompts and expand the study into conditions and units (nothing runs)."""
    prompts = study_prompts(study)
    mixtures = study_mixtures(study, prompts)
    found = study_traffic(study)
    traffic = None if found is None else found[0]
    if found is not None:
        names = {m.name for m in mixtures}
        clash = [m.name for m in found[1] if m.name in names]
        if clash:
            raise StudyError(
                f"{study.source_file}: mixtures.traffic: the mixture name {clash[0]!r} is taken; "
                "give the traffic another name"
            )
        mixtures += found[1]
    pools = {name: traffic.prompts for name in traffic.mixtures} if traffic else {}
    conditions, skipped = study_conditions(study, mixtures)
    streams = {}
    units = []
    for condition in conditions:
        for repeat in range(study.repeats):
            key = (condition.mixture.name, repeat)
            if key not in streams:
                try:
                    pool = pools.get(condition.mixture.name, prompts)
                    streams[key] = tuple(build_stream(condition.mixture, pool, repeat=repeat))
                except MixtureError as err:
                    raise StudyError(f"{study.source_file}: mixtures: {err}") from err
            units.append(
                Unit(
                    condition_id=condition.id,
                    repeat=repeat,
                    config=condition.config,
                    requests=streams[key],
                    run_dir=run_dir_name(condition.id, repeat, study.repeats),
                    batch=condition.batch,
                )
            )
    if not units:
        reasons = "; ".join(f"{s.description}: {s.reason}" for s in skipped)
        raise StudyError(
            f"{study.source_file}: no condition can run ({reasons or 'nothing listed'})"
        )
    units = assign_reuse(units)
    return Plan(
        tuple(prompts), tuple(mixtures), tuple(conditions), tuple(units), tuple(skipped), traffic
    )


def shard_units(units: Sequence[Unit], shard: tuple[int, int] | None) -> list[Unit]:
    """The units of shard ``(i, n)`` (1-based ``i``); all units when ``shard`` is None."""
    if shard is None:
        return list(units)
    i, n = shard
    if not 1 <= i <= n:
        raise StudyError(f"shard {i}/{n}: write i/n with 1 <= i <= n, e.g. --shard 1/2")
    return [u for p, u in enumerate(units) if p % n == i - 1]


def parse_shard(text: str) -> tuple[int, int]:
    """``"1/2"`` -> ``(1, 2)``."""
    left, sep, right = text.partition("/")
    try:
        i, n = int(left), int(right)
    except ValueError:
        i = n = 0
    if not sep or not 1 <= i <= n:
        raise StudyError(f"shard {text!r}: write i/n with 1 <= i <= n, e.g. --shard 1/2")
    return i, n
