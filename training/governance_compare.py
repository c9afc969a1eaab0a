"""How far two versions agree on the same live cases: the evidence behind a shadow-mode decision.

Given each case's malignant score under version A (usually the champion) and version B (the
challenger shadowing it), this says how often they put the case in the same priority tier, how
their scores correlate (Spearman's rank correlation: the worklist is an *ordering*), and lists the
cases on which they disagree, worst first. Pure: the scores come from the caller (the service
reads them from its ``scores`` table).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from pipeline.priority import TIER_THRESHOLDS, Tier

#: Scores further apart than this count as a disagreement even within one tier.
DEFAULT_SCORE_GAP = 0.2


def score_tier(p_malignant: float) -> Tier:
    """The priority tier a malignant score alone would give (thresholds of
    :data:`pipeline.priority.TIER_THRESHOLDS`, on the 0-100 scale)."""
    score = 100.0 * p_malignant
    for tier, threshold in TIER_THRESHOLDS:
        if score >= threshold:
            return tier
    return Tier.low


@dataclass(frozen=True)
class PairedScore:
    """One case scored by both versions (the case's score: its riskiest photo)."""

    case_id: int
    a: float
    b: float


@dataclass(frozen=True)
class Disagreement:
    """A case the two versions would triage differently."""

    case_id: int
    a: float
    b: float
    tier_a: str
    tier_b: str
    difference: float


@dataclass(frozen=True)
class Agreement:
    """Summary of two versions on the cases both scored.

    ``same_tier_rate``: share of cases in the same score tier; ``spearman``: rank correlation of
    the scores (NaN under 3 cases or a constant score); ``disagreements``: cases whose tiers
    differ or whose scores differ by more than ``score_gap``, largest difference first.
    """

    n: int
    same_tier_rate: float
    mean_abs_difference: float
    spearman: float
    score_gap: float
    disagreements: tuple[Disagreement, ...]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("same_tier_rate", "mean_abs_difference", "spearman"):
            if not math.isfinite(data[key]):
                data[key] = None
        return data


def agreement(pairs: Sequence[PairedScore], score_gap: float = DEFAULT_SCORE_GAP) -> Agreement:
    """Compare the paired scores (see :class:`Agreement`)."""
    n = len(pairs)
    if n == 0:
        return Agreement(0, math.nan, math.nan, math.nan, score_gap, ())
    a = np.array([p.a for p in pairs], dtype=np.float64)
    b = np.array([p.b for p in pairs], dtype=np.float64)
    tiers_a = [score_tier(x) for x in a]
    tiers_b = [score_tier(x) for x in b]
    same = sum(x == y for x, y in zip(tiers_a, tiers_b, strict=True))
    if n >= 3 and np.ptp(a) > 0 and np.ptp(b) > 0:
        rho = float(stats.spearmanr(a, b).statistic)
    else:
        rho = math.nan
    disagreements = [
        Disagreement(p.case_id, p.a, p.b, ta.value, tb.value, p.b - p.a)
        for p, ta, tb in zip(pairs, tiers_a, tiers_b, strict=True)
        if ta != tb or abs(p.b - p.a) > score_gap
    ]
    disagreements.sort(key=lambda d: (-abs(d.difference), d.case_id))
    return Agreement(
        n=n,
        same_tier_rate=same / n,
        mean_abs_difference=float(np.mean(np.abs(b - a))),
        spearman=rho,
        score_gap=score_gap,
        disagreements=tuple(disagreements),
    )
