"""The difference between two studies' estimates, with its interval.

Two studies (float32 vs bf16, two models, two workloads) are independent samples: each
estimate comes with its own bootstrap 95% interval, and the resamples are not shared. The
interval of the difference ``d = b - a`` is built from the two intervals by MOVER (the method
of variance estimates recovery; Zou & Donner 2008, Newcombe 1998), which keeps each interval's
asymmetry::

    low  = d - sqrt((b - b_low)^2 + (a_high - a)^2)
    high = d + sqrt((b_high - b)^2 + (a - a_low)^2)

For symmetric normal intervals it is the usual ``d +- sqrt(h_a^2 + h_b^2)``. An interval that
excludes zero says the two studies differ at about the 95% level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Difference:
    """``value = b - a`` and its MOVER 95% interval."""

    value: float
    low: float
    high: float

    @property
    def established(self) -> bool:
        """Whether the interval excludes zero."""
        return self.low > 0 or self.high < 0


def difference(
    a: float, a_low: float, a_high: float, b: float, b_low: float, b_high: float
) -> Difference:
    """``b - a`` with its interval (module docstring: MOVER from the two 95% intervals)."""
    d = b - a
    low = d - math.sqrt((b - b_low) ** 2 + (a_high - a) ** 2)
    high = d + math.sqrt((b_high - b) ** 2 + (a - a_low) ** 2)
    return Difference(d, low, high)
