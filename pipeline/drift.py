"""Is the model still seeing what it saw when it was approved? Weekly drift against a reference.

An auditor's question is not "did the score change?" (it always does a little) but "did the
inputs or the outputs move further than chance explains?". This module answers it per ISO week,
comparing the live photos of that week with the *training reference* of the version in service
(its scores and photo statistics on its held-out split):

- **malignant scores** and **input statistics** (median brightness of the skin, short side in
  pixels): two-sample Kolmogorov-Smirnov test (``scipy.stats.ks_2samp``, two-sided), with the
  Population Stability Index (PSI) as the effect size;
- **rate of each quality problem** (blur, glare, ...): Fisher's exact test on the 2 x 2 table
  (reference photos with/without the problem vs the week's), exact even for a handful of photos,
  with the rate difference as the effect size.

A week is **flagged** for a measure when its p-value is below ``alpha / m`` (Bonferroni over the
``m`` tests run that week, so that checking ten measures does not raise ten times the false
alarms). Weeks with fewer than ``min_photos`` photos are reported but not tested. PSI reads
conventionally: under 0.1 stable, 0.1 to 0.25 moderate shift, above 0.25 major shift.

Pure functions on plain values: no database, no MLflow, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from scipy import stats

DEFAULT_ALPHA = 0.05
DEFAULT_MIN_PHOTOS = 5
PSI_BINS = 10
#: Floor on a bin's share in the PSI, so that an empty bin gives a large, finite term.
PSI_FLOOR = 1e-4
PSI_MODERATE = 0.1
PSI_MAJOR = 0.25

SCORE = "p_malignant"
BRIGHTNESS = "brightness"
SHORT_SIDE = "short_side"
CONTINUOUS_MEASURES: tuple[str, ...] = (SCORE, BRIGHTNESS, SHORT_SIDE)
MEASURE_LABELS: dict[str, str] = {
    SCORE: "malignant score",
    BRIGHTNESS: "median skin brightness (0-1)",
    SHORT_SIDE: "photo short side (px)",
}


def iso_week(moment: datetime) -> str:
    """``moment``'s ISO week as ``YYYY-Www`` (weeks start on Monday; 2021-01-03 is 2020-W53)."""
    year, week, _ = moment.isocalendar()
    return f"{year}-W{week:02d}"


@dataclass(frozen=True)
class Observation:
    """One live photo: when it was scored, its score, its quality problems and statistics.

    ``p_malignant`` is None for a photo not (yet) scored; ``brightness`` is the quality check's
    ``median_luma`` (0-1); ``short_side`` the smaller of its width and height in pixels.
    """

    at: datetime
    p_malignant: float | None
    problems: tuple[str, ...] = ()
    brightness: float | None = None
    short_side: float | None = None


@dataclass(frozen=True)
class Reference:
    """What the version saw on its held-out split: the yardstick for every week.

    ``values`` maps each continuous measure to its reference sample; ``problem_counts`` how many
    of the ``n_photos`` reference photos had each quality problem.
    """

    version: str
    n_photos: int
    values: dict[str, tuple[float, ...]]
    problem_counts: dict[str, int] = field(default_factory=dict)
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["values"] = {k: list(v) for k, v in self.values.items()}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reference:
        return cls(
            version=str(data["version"]),
            n_photos=int(data["n_photos"]),
            values={k: tuple(float(x) for x in v) for k, v in data["values"].items()},
            problem_counts={k: int(v) for k, v in data.get("problem_counts", {}).items()},
            source=str(data.get("source", "")),
        )

    def problem_rate(self, code: str) -> float:
        return self.problem_counts.get(code, 0) / self.n_photos if self.n_photos else math.nan


def population_stability_index(
    reference: Sequence[float], current: Sequence[float], bins: int = PSI_BINS
) -> float:
    """PSI = sum over bins of (current share - reference share) * ln(current / reference share).

    Bins are the reference's quantiles (``bins`` equal-count bins; fewer when the reference has
    ties, down to two for a constant reference: below it and at-or-above it). Shares are floored
    at :data:`PSI_FLOOR`. NaN when either sample is empty.
    """
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    if ref.size == 0 or cur.size == 0:
        return math.nan
    edges = np.unique(np.quantile(ref, np.linspace(0.0, 1.0, bins + 1))[1:-1])
    if edges.size == 0:
        edges = np.array([ref[0]])
    n_bins = edges.size + 1
    ref_share = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=n_bins) / ref.size
    cur_share = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=n_bins) / cur.size
    ref_share = np.maximum(ref_share, PSI_FLOOR)
    cur_share = np.maximum(cur_share, PSI_FLOOR)
    return float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))


def psi_level(psi: float) -> str:
    """The conventional reading of a PSI: ``stable``, ``moderate`` or ``major``."""
    if math.isnan(psi):
        return "unknown"
    if psi >= PSI_MAJOR:
        return "major"
    if psi >= PSI_MODERATE:
        return "moderate"
    return "stable"


def ks_test(reference: Sequence[float], current: Sequence[float]) -> tuple[float, float]:
    """Two-sided two-sample Kolmogorov-Smirnov test: (statistic D, p-value)."""
    result = stats.ks_2samp(np.asarray(reference, float), np.asarray(current, float))
    return float(result.statistic), float(result.pvalue)


def rate_test(ref_hits: int, ref_n: int, cur_hits: int, cur_n: int) -> float:
    """Two-sided Fisher's exact test p-value: does the week's rate differ from the reference's?"""
    if ref_n <= 0 or cur_n <= 0:
        return math.nan
    table = [[cur_hits, cur_n - cur_hits], [ref_hits, ref_n - ref_hits]]
    return float(stats.fisher_exact(table, alternative="two-sided").pvalue)


@dataclass(frozen=True)
class MeasureShift:
    """One measure in one week compared with the reference.

    ``kind`` is ``distribution`` (KS test, ``statistic`` = D, ``effect`` = PSI) or ``rate``
    (Fisher's exact test, ``statistic`` = the week's rate, ``effect`` = week rate - reference
    rate). ``flagged`` means ``p_value < threshold`` (the Bonferroni-adjusted alpha).
    """

    measure: str
    label: str
    kind: str
    n: int
    week_value: float
    reference_value: float
    statistic: float
    p_value: float
    effect: float
    threshold: float
    flagged: bool


@dataclass(frozen=True)
class WeekDrift:
    """Everything the drift page shows for one ISO week."""

    week: str
    n_photos: int
    n_scored: int
    score_quantiles: dict[str, float]
    problem_rates: dict[str, float]
    tested: bool
    shifts: tuple[MeasureShift, ...]

    @property
    def flagged(self) -> tuple[MeasureShift, ...]:
        return tuple(s for s in self.shifts if s.flagged)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["flagged"] = [s.measure for s in self.flagged]
        return data


def _quantiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    q = np.quantile(np.asarray(values, dtype=np.float64), [0.1, 0.25, 0.5, 0.75, 0.9])
    return {
        "p10": float(q[0]),
        "p25": float(q[1]),
        "median": float(q[2]),
        "p75": float(q[3]),
        "p90": float(q[4]),
        "mean": float(np.mean(values)),
    }


def _values(observations: Sequence[Observation], measure: str) -> list[float]:
    attribute = {SCORE: "p_malignant", BRIGHTNESS: "brightness", SHORT_SIDE: "short_side"}[measure]
    found = (getattr(o, attribute) for o in observations)
    return [float(v) for v in found if v is not None and math.isfinite(float(v))]


def compare_week(
    week: str,
    observations: Sequence[Observation],
    reference: Reference,
    *,
    alpha: float = DEFAULT_ALPHA,
    min_photos: int = DEFAULT_MIN_PHOTOS,
    problem_codes: Sequence[str] = (),
) -> WeekDrift:
    """Test one week's photos against ``reference`` (see the module docstring for the tests).

    ``problem_codes`` are the quality problems to track (those of the reference and of the week
    are added); each continuous measure is tested only when both samples have values.
    """
    if not 0 < alpha < 1:
        raise ValueError("alpha must lie between 0 and 1")
    n = len(observations)
    codes = sorted(
        set(problem_codes)
        | set(reference.problem_counts)
        | {code for o in observations for code in o.problems}
    )
    hits = {code: sum(code in o.problems for o in observations) for code in codes}
    rates = {code: (hits[code] / n if n else math.nan) for code in codes}
    scores = _values(observations, SCORE)
    tested = n >= min_photos

    planned: list[tuple[str, str, Sequence[float], Sequence[float]]] = []
    if tested:
        for measure in CONTINUOUS_MEASURES:
            current, ref = _values(observations, measure), reference.values.get(measure, ())
            if current and ref:
                planned.append((measure, "distribution", ref, current))
        planned += [(code, "rate", (), ()) for code in codes if reference.n_photos > 0]
    threshold = alpha / len(planned) if planned else alpha

    shifts = []
    for measure, kind, ref, current in planned:
        if kind == "distribution":
            statistic, p_value = ks_test(ref, current)
            effect = population_stability_index(ref, current)
            week_value, ref_value = float(np.median(current)), float(np.median(ref))
            count = len(current)
            label = MEASURE_LABELS[measure]
        else:
            ref_hits = reference.problem_counts.get(measure, 0)
            p_value = rate_test(ref_hits, reference.n_photos, hits[measure], n)
            week_value, ref_value = rates[measure], reference.problem_rate(measure)
            statistic, effect, count = week_value, week_value - ref_value, n
            label = f"rate of {measure.replace('_', ' ')}"
        shifts.append(
            MeasureShift(
                measure=measure,
                label=label,
                kind=kind,
                n=count,
                week_value=week_value,
                reference_value=ref_value,
                statistic=statistic,
                p_value=p_value,
                effect=effect,
                threshold=threshold,
                flagged=bool(p_value < threshold),
            )
        )
    return WeekDrift(
        week=week,
        n_photos=n,
        n_scored=len(scores),
        score_quantiles=_quantiles(scores),
        problem_rates=rates,
        tested=tested,
        shifts=tuple(shifts),
    )


def weekly_drift(
    observations: Iterable[Observation],
    reference: Reference,
    *,
    alpha: float = DEFAULT_ALPHA,
    min_photos: int = DEFAULT_MIN_PHOTOS,
    problem_codes: Sequence[str] = (),
) -> list[WeekDrift]:
    """One :class:`WeekDrift` per ISO week that has photos, oldest week first."""
    by_week: dict[str, list[Observation]] = {}
    for observation in observations:
        by_week.setdefault(iso_week(observation.at), []).append(observation)
    return [
        compare_week(
            week,
            by_week[week],
            reference,
            alpha=alpha,
            min_photos=min_photos,
            problem_codes=problem_codes,
        )
        for week in sorted(by_week)
    ]
