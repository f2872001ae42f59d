"""A cost model of one target on one machine: seconds per verify, draft and prefill forward.

Under greedy decoding the round structure of every request (how many tokens each round drafted
and verified) is exact and repeatable; only the seconds are noisy. Pricing every round with one
cost curve, calibrated once for the whole study, gives *modelled* seconds that do not depend on
which stream happened to run when (see docs/metrics.md, "Cost accounting"):

- ``verify(rows)``: one target forward verifying ``rows`` tokens (``rows = drafted + 1``);
- ``draft(drafter, tokens)``: one drafting step of ``drafter`` that proposed ``tokens`` tokens;
- ``prefill(prompt_tokens)``: one prefill forward over a prompt of that many tokens,
  ``prefill_intercept_s + prefill_s_per_token * n + prefill_s_per_token2 * n**2`` (at least 0):
  a prefill's attention grows with the square of the prompt, so a line through prompts of 34 to
  1,012 tokens priced the short ones at 0 and the long ones 30% low (the 2026-12-07 demo).

Curves are tables: ``verify_s[i]`` is the cost of ``i + 1`` rows, ``draft_s[d][i]`` the cost of
``i`` drafted tokens. A value past the end of a table is extrapolated along the line through its
last two points (a one-point table is flat). Pure Python (no torch, no polars): policies and
metadata writers import it freely; :func:`specviz.metrics.accounting.fit_cost_model` fits one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from specviz.errors import SpecvizError

COST_MODEL_VERSION = 1
# the keys of :meth:`CostModel.to_dict` (a study file's cost_model table may hold no others)
COST_MODEL_KEYS = frozenset(
    {
        "version",
        "verify_s",
        "draft_s",
        "prefill_intercept_s",
        "prefill_s_per_token",
        "prefill_s_per_token2",
        "source",
        "samples",
    }
)


class CostModelError(SpecvizError):
    """A cost model is malformed, or asked for a cost it cannot give."""


def _curve_at(curve: Sequence[float], index: int, what: str) -> float:
    if index < 0:
        raise CostModelError(f"{what}: index {index} is negative")
    if not curve:
        raise CostModelError(f"{what}: no measured cost")
    if index < len(curve):
        return curve[index]
    if len(curve) == 1:
        return curve[0]
    step = curve[-1] - curve[-2]
    return curve[-1] + step * (index - len(curve) + 1)


def _check_curve(curve: Sequence[float], what: str) -> tuple[float, ...]:
    values = tuple(float(v) for v in curve)
    if not values:
        raise CostModelError(f"{what}: the curve is empty")
    bad = [v for v in values if not (math.isfinite(v) and v >= 0.0)]
    if bad:
        raise CostModelError(f"{what}: costs must be finite seconds >= 0 (got {bad[0]})")
    return values


@dataclass(frozen=True)
class CostModel:
    """Seconds per forward of one target on one machine (see the module docstring)."""

    verify_s: tuple[float, ...]
    draft_s: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    prefill_intercept_s: float = 0.0
    prefill_s_per_token: float = 0.0
    prefill_s_per_token2: float = 0.0
    source: str = ""
    samples: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "verify_s", _check_curve(self.verify_s, "verify_s"))
        draft = {str(d): _check_curve(c, f"draft_s[{d}]") for d, c in self.draft_s.items()}
        object.__setattr__(self, "draft_s", dict(sorted(draft.items())))
        object.__setattr__(self, "samples", dict(self.samples))

    def verify(self, rows: int) -> float:
        """Seconds of one target forward verifying ``rows`` tokens (``rows >= 1``)."""
        if rows < 1:
            raise CostModelError(f"verify: rows must be >= 1 (got {rows})")
        return _curve_at(self.verify_s, rows - 1, "verify")

    def draft(self, drafter: str, tokens: int) -> float:
        """Seconds of one drafting step of ``drafter`` proposing ``tokens`` tokens.

        The baseline (``none``) drafts nothing and costs 0; another drafter without a curve
        raises :class:`CostModelError`.
        """
        if drafter == "none":
            return 0.0
        curve = self.draft_s.get(drafter)
        if curve is None:
            known = ", ".join(self.draft_s) or "none"
            raise CostModelError(f"draft: no cost curve for drafter {drafter!r} (known: {known})")
        return _curve_at(curve, tokens, f"draft[{drafter}]")

    def prefill(self, prompt_tokens: int) -> float:
        """Seconds of one prefill forward over ``prompt_tokens`` tokens."""
        if prompt_tokens < 0:
            raise CostModelError(f"prefill: prompt_tokens must be >= 0 (got {prompt_tokens})")
        n = prompt_tokens
        line = self.prefill_intercept_s + self.prefill_s_per_token * n
        return max(0.0, line + self.prefill_s_per_token2 * n * n)

    def round(self, drafter: str, drafted: int, *, drafter_called: bool = True) -> float:
        """Seconds of one verify round: drafting (when the drafter was called) + verifying."""
        draft = self.draft(drafter, drafted) if drafter_called else 0.0
        return draft + self.verify(drafted + 1)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (run.json, study metadata); :meth:`from_dict` reads it back."""
        return {
            "version": COST_MODEL_VERSION,
            "verify_s": list(self.verify_s),
            "draft_s": {d: list(c) for d, c in self.draft_s.items()},
            "prefill_intercept_s": self.prefill_intercept_s,
            "prefill_s_per_token": self.prefill_s_per_token,
            "prefill_s_per_token2": self.prefill_s_per_token2,
            "source": self.source,
            "samples": dict(self.samples),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CostModel:
        """The model :meth:`to_dict` wrote; a malformed dict raises :class:`CostModelError`."""
        if data.get("version") != COST_MODEL_VERSION:
            raise CostModelError(
                f"cost model version {data.get('version')!r} is not {COST_MODEL_VERSION}: "
                "recompute it with this specviz version"
            )
        try:
            return cls(
                verify_s=tuple(data["verify_s"]),
                draft_s={d: tuple(c) for d, c in data.get("draft_s", {}).items()},
                prefill_intercept_s=float(data.get("prefill_intercept_s", 0.0)),
                prefill_s_per_token=float(data.get("prefill_s_per_token", 0.0)),
                prefill_s_per_token2=float(data.get("prefill_s_per_token2", 0.0)),
                source=str(data.get("source", "")),
                samples={str(k): int(v) for k, v in data.get("samples", {}).items()},
            )
        except (KeyError, TypeError, ValueError) as err:
            raise CostModelError(f"not a cost model: {err}") from err


def curve_model(
    verify: Sequence[float], draft: Sequence[float] | None, drafter: str, source: str = "given"
) -> CostModel:
    """A cost model from two plain lists: ``verify[n-1]`` one forward over n rows and
    ``draft[n-1]`` drafting n tokens with ``drafter`` (zeros when ``draft`` is None).

    The short form of ``--verify-costs``/``--draft-costs`` and of run directories recorded before
    the one cost model (``cost_curve`` in run.json, ``verify_costs`` in the policy).
    """
    drafts = (0.0, *(draft if draft is not None else (0.0,) * (len(verify) - 1)))
    return CostModel(verify_s=tuple(verify), draft_s={drafter: drafts}, source=source)
