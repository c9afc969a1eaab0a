"""Real-world performance of a model version: how it did on the centre's own, confirmed cases.

The registry's figures come from a held-out split of the training data set. These come from live
cases whose diagnosis is now known (:func:`pipeline.diagnosis.reference_diagnosis`: histology
first, else the validated expert report), so they answer the question an auditor asks of a
deployed model: on *our* patients, how many cancers did it flag, and did the worklist read them
sooner than first come, first served would have?

For one version's scores on those cases, :func:`real_world_figures` gives

- **discrimination**: the malignant AUROC (the worklist is an ordering);
- **the operating point** the product uses (:data:`OPERATING_POINT`): sensitivity, specificity and
  negative predictive value of calling a case *suspected malignant* when its score alone would
  put it at least in the worklist's ``high`` tier (``p >= 0.40``, from
  :data:`pipeline.priority.TIER_THRESHOLDS`);
- **calibration**: expected calibration error over ten equal-width bins, with the bins (a
  reliability diagram: how often a score of 0.3 turned out malignant);
- **the worklist's doing**, from a replay of the recorded arrivals (:func:`queue_timings`): the
  share of cancers that were in the first fifth of their centre's queue when they arrived, and
  the median hours from arrival to first reading for cancers against what first come, first
  served would have given with the same reading capacity (:func:`fcfs_first_readings`); the
  difference is the triage benefit;

each with a 95 % percentile bootstrap interval (stratified: cancers and benign cases each
resampled with replacement, as pROC does; see :meth:`_Sample.resamples`) and the count it is
computed on; then the same by subgroup (skin
phototype, body site, age band, photo domain, centre). :func:`sensitivity_alert` says when the
live sensitivity interval lies wholly below the figure the version was registered with.

Pure: the caller passes plain dataclasses and the clock; nothing here reads a database, a file
or the environment. Bootstrap resamples are drawn from a fixed seed, so a page reads the same
twice.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime

import numpy as np

from pipeline.priority import (
    DEFAULT_DEADLINE_HOURS,
    RISK_WEIGHT,
    TIER_THRESHOLDS,
    WAITING_WEIGHT,
    CaseFacts,
    Tier,
    base_points,
)

#: A case is *suspected malignant* when its score alone puts it at least in the ``high`` tier.
OPERATING_POINT: float = dict(TIER_THRESHOLDS)[Tier.high] / RISK_WEIGHT
FIRST_FIFTH = 0.2
N_BOOTSTRAP = 1000
#: Fewer resamples per subgroup: 30-odd subgroups must not cost 30 times the overall figures.
N_BOOTSTRAP_SUBGROUP = 200
CONFIDENCE = 0.95
CALIBRATION_BINS = 10
DEFAULT_SEED = 20260

UNKNOWN = "unknown"
AGE_BANDS: tuple[str, ...] = ("<30", "30-44", "45-59", "60-74", ">=75", UNKNOWN)
#: The subgroup dimensions, in the order the pages show them.
DIMENSIONS: tuple[str, ...] = ("phototype", "body_site", "age_band", "photo_domain", "centre")
#: Registry figures the live sensitivity is compared with, best match first.
REGISTERED_SENSITIVITY_KEYS: tuple[str, ...] = ("sens_at_operating_point", "sens_at_95_spec")


def age_band(age: object) -> str:
    """The reporting age band of one patient: ``<30``, ``30-44``, ``45-59``, ``60-74``, ``>=75``.

    Missing, non-numeric or negative ages give ``unknown`` (derm-dev leaves some ages empty).
    Shared by the training figures (``training.metrics``) and the live ones, so both tables cut
    patients at the same ages.
    """
    try:
        value = float(age)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return UNKNOWN
    if math.isnan(value) or value < 0:
        return UNKNOWN
    if value < 30:
        return "<30"
    if value < 45:
        return "30-44"
    if value < 60:
        return "45-59"
    if value < 75:
        return "60-74"
    return ">=75"


# --- inputs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueEntry:
    """One case as its centre's worklist saw it: arrival, first reading, fixed priority part.

    ``points`` and ``flagged`` are :func:`pipeline.priority.base_points` of the case (risk,
    uncertainty, red flags): the score at any moment adds only the waiting time. Pass every case
    that entered the queue (read, or still waiting), not only the confirmed ones: they are the
    queue the confirmed cases stood in, and the reading capacity.
    """

    case_id: int
    centre: str
    submitted_at: datetime
    first_read_at: datetime | None
    points: float
    flagged: bool

    @classmethod
    def from_facts(cls, facts: CaseFacts, centre: str) -> QueueEntry:
        points, flagged = base_points(facts)
        return cls(facts.case_id, centre, facts.submitted_at, facts.first_read_at, points, flagged)


@dataclass(frozen=True)
class Timing:
    """Where a case stood in its centre's queue when it arrived, and how long it waited.

    ``position`` is 1 for the head of the queue; ``queue_length`` counts every case waiting for
    a first reading at that moment, itself included. ``hours_fcfs`` is the wait first come, first
    served would have given with the same reading capacity; when the recorded readings run out
    before its turn it is the time waited until ``now`` (a lower bound) and ``fcfs_censored``.
    """

    case_id: int
    position: int
    queue_length: int
    hours_to_first_reading: float | None
    hours_fcfs: float | None
    fcfs_censored: bool = False

    @property
    def in_first_fifth(self) -> bool:
        """Among the first fifth of the queue: fewer than a fifth of it was ahead of the case."""
        return (self.position - 1) < FIRST_FIFTH * self.queue_length


@dataclass(frozen=True)
class LabelledCase:
    """A confirmed case as one version scored it.

    ``malignant`` is the reference diagnosis (``pipeline.diagnosis.is_malignant``; cases whose
    reference is uncertain are left out by the caller), ``p_malignant`` the version's case score,
    ``groups`` the case's subgroup per dimension of :data:`DIMENSIONS`.
    """

    case_id: int
    malignant: bool
    p_malignant: float
    groups: Mapping[str, str] = field(default_factory=dict)


# --- outputs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """A figure, its 95 % bootstrap interval and the number of cases it is computed on.

    ``value`` is None when the figure is undefined for these cases (no cancer for a
    sensitivity...); the interval is None when too few resamples define it.
    """

    value: float | None
    low: float | None
    high: float | None
    n: int

    def to_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


@dataclass(frozen=True)
class ReliabilityBin:
    """One calibration bin ``(lower, upper]``: cases, mean score, share malignant."""

    lower: float
    upper: float
    count: int
    mean_score: float | None
    observed: float | None


@dataclass(frozen=True)
class Figures:
    """One version's real-world figures on one set of confirmed cases."""

    n_cases: int
    n_malignant: int
    auroc: Estimate
    sensitivity: Estimate
    specificity: Estimate
    npv: Estimate
    ece: Estimate
    first_fifth: Estimate
    hours_to_first_reading: Estimate
    hours_fcfs: Estimate
    triage_benefit_hours: Estimate
    reliability: tuple[ReliabilityBin, ...]

    ESTIMATES = (
        "auroc",
        "sensitivity",
        "specificity",
        "npv",
        "ece",
        "first_fifth",
        "hours_to_first_reading",
        "hours_fcfs",
        "triage_benefit_hours",
    )

    def to_dict(self) -> dict[str, object]:
        return {
            "n_cases": self.n_cases,
            "n_malignant": self.n_malignant,
            **{name: getattr(self, name).to_dict() for name in self.ESTIMATES},
            "reliability": [asdict(b) for b in self.reliability],
        }


@dataclass(frozen=True)
class Subgroup:
    dimension: str
    value: str
    figures: Figures


@dataclass(frozen=True)
class RealWorld:
    """The whole breakdown: every confirmed case, then each subgroup."""

    operating_point: float
    overall: Figures
    subgroups: tuple[Subgroup, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "operating_point": self.operating_point,
            "overall": self.overall.to_dict(),
            "subgroups": [
                {"dimension": s.dimension, "value": s.value, **s.figures.to_dict()}
                for s in self.subgroups
            ],
        }


# --- the queue replay ------------------------------------------------------------------------


def _seconds(moment: datetime | None) -> float:
    return math.inf if moment is None else moment.timestamp()


def _tier_ranks(score: np.ndarray, floor_high: np.ndarray) -> np.ndarray:
    """``pipeline.priority``'s tier (as its rank, 0 = urgent) for each score, vectorised: the
    threshold tiers, then flagged or overdue cases raised to at least ``high``."""
    ranks = np.full(score.shape, len(TIER_THRESHOLDS), dtype=np.int64)
    for rank, (_, threshold) in reversed(list(enumerate(TIER_THRESHOLDS))):
        ranks[score >= threshold] = rank
    high = Tier.high.rank
    return np.where(floor_high & (ranks > high), high, ranks)


def fcfs_first_readings(
    queue: Sequence[QueueEntry],
) -> dict[int, datetime | None]:
    """When each case would have had its first reading had the centre read first come, first
    served, with the same reading capacity: the recorded first-reading moments of the centre,
    in time order, given to its cases in arrival order (ties by case id).

    Nothing else is needed: at the k-th recorded reading at least k cases had arrived (each of the
    k cases actually read had), so the k-th arrival is always there to be read. Cases beyond the
    recorded readings are still waiting under first come, first served: None.
    """
    result: dict[int, datetime | None] = {}
    by_centre: dict[str, list[QueueEntry]] = {}
    for entry in queue:
        by_centre.setdefault(entry.centre, []).append(entry)
    for entries in by_centre.values():
        arrivals = sorted(entries, key=lambda e: (e.submitted_at, e.case_id))
        readings = sorted(e.first_read_at for e in entries if e.first_read_at is not None)
        for k, entry in enumerate(arrivals):
            result[entry.case_id] = readings[k] if k < len(readings) else None
    return result


def queue_timings(
    queue: Sequence[QueueEntry],
    case_ids: Collection[int],
    *,
    now: datetime,
    deadline_hours: float = DEFAULT_DEADLINE_HOURS,
) -> dict[int, Timing]:
    """Replay each centre's queue at the arrival of each case of ``case_ids``.

    At the moment a case arrived, the queue is every case of its centre submitted by then and not
    yet read (first reading later, or none yet). Each is ranked as ``pipeline.priority.rank``
    would have ranked it then (tier, score, earlier submission, case id; its score is its fixed
    points plus the waiting so far); the arriving case has waited 0 h. A test checks this
    replay against ``rank`` itself.
    """
    if deadline_hours <= 0:
        raise ValueError("deadline_hours must be positive")
    wanted = set(case_ids)
    now_s = now.timestamp()
    by_centre: dict[str, list[QueueEntry]] = {}
    for entry in queue:
        by_centre.setdefault(entry.centre, []).append(entry)
    deadline_s = deadline_hours * 3600.0
    timings: dict[int, Timing] = {}
    for centre_entries in by_centre.values():
        if not any(e.case_id in wanted for e in centre_entries):
            continue
        # Arrival order (time, then case id) by one NumPy sort of the centre's columns.
        ids = np.array([e.case_id for e in centre_entries], dtype=np.int64)
        sub = np.array([_seconds(e.submitted_at) for e in centre_entries])
        order = np.lexsort((ids, sub))
        ids, sub = ids[order], sub[order]
        read = np.array([_seconds(e.first_read_at) for e in centre_entries])[order]
        points = np.array([e.points for e in centre_entries])[order]
        flagged = np.array([e.flagged for e in centre_entries], dtype=bool)[order]
        targets = [i for i, case_id in enumerate(ids.tolist()) if case_id in wanted]
        # First come, first served (fcfs_first_readings): the k-th arrival gets the k-th
        # recorded reading; arrivals beyond them are still waiting (inf).
        readings = np.sort(read[np.isfinite(read)])
        fcfs = np.full(ids.size, math.inf)
        fcfs[: readings.size] = readings
        unread = np.flatnonzero(~np.isfinite(read))
        waits = (read - sub)[np.isfinite(read)]
        longest = float(waits.max()) if waits.size else 0.0
        for i in targets:
            t = sub[i]
            # Only cases that arrived within the longest recorded wait can still be waiting
            # (besides those never read), so each arrival looks at a window, not the history.
            lo = int(np.searchsorted(sub, t - longest, side="left"))
            hi = int(np.searchsorted(sub, t, side="right"))
            window = np.arange(lo, hi)
            keep = read[lo:hi] > t
            keep[i - lo] = True
            index = window[keep]
            extra = unread[unread < lo]
            if extra.size:
                index = np.concatenate([extra, index])
            waited = t - sub[index]
            score = points[index] + WAITING_WEIGHT * np.minimum(waited / deadline_s, 1.0)
            tiers = _tier_ranks(score, flagged[index] | (waited >= deadline_s))
            rounded = np.round(score, 6)
            own = int(np.flatnonzero(index == i)[0])
            tier_c, score_c = tiers[own], rounded[own]
            later = (sub[index] < t) | ((sub[index] == t) & (ids[index] < ids[i]))
            ahead = (tiers < tier_c) | (
                (tiers == tier_c) & ((rounded > score_c) | ((rounded == score_c) & later))
            )
            case_id = int(ids[i])
            actual = None if not math.isfinite(read[i]) else (read[i] - t) / 3600.0
            censored = not math.isfinite(fcfs[i])
            fcfs_hours = ((now_s if censored else fcfs[i]) - t) / 3600.0
            timings[case_id] = Timing(
                case_id=case_id,
                position=int(ahead.sum()) + 1,
                queue_length=int(index.size),
                hours_to_first_reading=None if actual is None else float(actual),
                hours_fcfs=max(0.0, float(fcfs_hours)),
                fcfs_censored=censored,
            )
    return timings


# --- the figures and their bootstrap ---------------------------------------------------------


#: Score resolution of the bootstrap's AUROC and calibration resamples (1/200); the point
#: figures use the exact scores, and the intervals are shifted by what the rounding moved them.
_GRID = 200


def _weights(rng: np.random.Generator, rows: int, m: int) -> np.ndarray:
    """``rows`` bootstrap resamples of ``m`` items as multiplicities (each row sums to ``m``),
    as 32-bit counts: half the memory traffic of floats in the cumulative sums that follow."""
    picks = rng.integers(0, m, size=(rows, m)) + (np.arange(rows) * m)[:, None]
    counts = np.bincount(picks.ravel(), minlength=rows * m).reshape(rows, m)
    return counts.astype(np.int32)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _weighted_median(weights: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The median of each row's resample (``weights``: whole multiplicities; ``values`` sorted
    ascending; the mean of the two middle values for an even count), NaN for an empty resample."""
    if values.size == 0:
        return np.full(weights.shape[0], np.nan)
    cum = np.cumsum(weights, axis=1, dtype=np.int32)  # multiplicities: whole numbers
    total = cum[:, -1]
    k1 = (total + 1) // 2
    k2 = np.minimum(total // 2 + 1, total)
    i1 = np.argmax(cum >= k1[:, None], axis=1)
    i2 = np.argmax(cum >= k2[:, None], axis=1)
    median = (values[i1] + values[i2]) / 2.0
    return np.where(total > 0, median, np.nan)


def _auroc_counts(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """AUROC of each row, from cancer and benign counts per score (columns in ascending score
    order, shared by both): each cancer beats the benign cases below its score, ties count half."""
    below = np.cumsum(neg, axis=1) - neg
    pairs = (pos * (below + 0.5 * neg)).sum(axis=1)
    return _ratio(pairs, pos.sum(axis=1) * neg.sum(axis=1))


def _ece_counts(pos: np.ndarray, neg: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """ECE of each row, from cancer and benign counts per score value ``grid`` (ascending)."""
    if grid.size == 0:
        return np.full(pos.shape[0], np.nan)
    bins = np.digitize(grid, np.linspace(0.0, 1.0, CALIBRATION_BINS + 1)[1:-1], right=True)
    starts = np.flatnonzero(np.r_[True, bins[1:] != bins[:-1]])
    both = pos + neg
    count = np.add.reduceat(both, starts, axis=1)
    malignant = np.add.reduceat(pos, starts, axis=1)
    score_sum = np.add.reduceat(both * grid, starts, axis=1)
    return _ratio(np.abs(malignant - score_sum).sum(axis=1), count.sum(axis=1))


@dataclass(frozen=True)
class _Sample:
    """The arrays the figures read: scores and outcome, and the cancers' worklist timings."""

    y: np.ndarray
    p: np.ndarray
    fifth: np.ndarray
    wait_actual: np.ndarray
    wait_fcfs: np.ndarray

    @classmethod
    def build(cls, cases: Sequence[LabelledCase], timings: Mapping[int, Timing]) -> _Sample:
        return _Columns.read(cases, timings).sample()

    @property
    def called(self) -> np.ndarray:
        return self.p >= OPERATING_POINT

    def counts(self) -> dict[str, int]:
        n, n_pos = int(self.y.size), int(self.y.sum())
        n_waits = int(self.wait_actual.size)
        return {
            "auroc": n,
            "sensitivity": n_pos,
            "specificity": n - n_pos,
            "npv": int((~self.called).sum()),
            "ece": n,
            "first_fifth": int(self.fifth.size),
            "hours_to_first_reading": n_waits,
            "hours_fcfs": n_waits,
            "triage_benefit_hours": n_waits,
        }

    def point(self) -> dict[str, float]:
        """Every figure on the cases as they are (exact scores)."""
        y, p, called = self.y, self.p, self.called
        grid, inverse = np.unique(p, return_inverse=True)
        pos = np.bincount(inverse[y], minlength=grid.size)[None, :].astype(np.float64)
        neg = np.bincount(inverse[~y], minlength=grid.size)[None, :].astype(np.float64)
        tn, fn = float((~y & ~called).sum()), float((y & ~called).sum())
        actual = float(np.median(self.wait_actual)) if self.wait_actual.size else math.nan
        fcfs = float(np.median(self.wait_fcfs)) if self.wait_fcfs.size else math.nan
        return {
            "auroc": float(_auroc_counts(pos, neg)[0]) if p.size else math.nan,
            "sensitivity": float(_ratio(np.array(float((y & called).sum())), y.sum())),
            "specificity": float(_ratio(np.array(tn), (~y).sum())),
            "npv": float(_ratio(np.array(tn), np.array(tn + fn))),
            "ece": float(_ece_counts(pos, neg, grid)[0]) if p.size else math.nan,
            "first_fifth": float(self.fifth.mean()) if self.fifth.size else math.nan,
            "hours_to_first_reading": actual,
            "hours_fcfs": fcfs,
            "triage_benefit_hours": fcfs - actual,
        }

    def resamples(
        self, rng: np.random.Generator, rows: int, point: Mapping[str, float]
    ) -> dict[str, np.ndarray]:
        """Every figure on ``rows`` stratified bootstrap resamples: cancers and benign cases each
        drawn with replacement, their numbers kept (as pROC does for the AUROC).

        A figure that depends only on how many cases fall in a few categories (sensitivity:
        cancers called or missed) is drawn from those categories' multinomial, which is the
        same distribution as resampling the cases and far cheaper. AUROC and calibration draw
        Poisson counts per score rounded to 1/200 (the Poisson bootstrap, Hanley & MacGibbon
        2006: 10,000 cases in milliseconds), shifted by what the rounding moved the point
        figure. The waits resample the cancers' (real, first come first served) pairs.
        """
        y, called = self.y, self.called
        n_pos, n_neg = int(y.sum()), int((~y).sum())
        sens = rng.binomial(n_pos, (y & called).sum() / n_pos, rows) if n_pos else None
        spec = rng.binomial(n_neg, (~y & ~called).sum() / n_neg, rows) if n_neg else None
        codes = np.rint(self.p * _GRID).astype(np.int64)
        grid, inverse = np.unique(codes, return_inverse=True)
        pos_n = np.bincount(inverse[y], minlength=grid.size).astype(np.float64)
        neg_n = np.bincount(inverse[~y], minlength=grid.size).astype(np.float64)
        pos = rng.poisson(pos_n, size=(rows, grid.size)).astype(np.float64)
        neg = rng.poisson(neg_n, size=(rows, grid.size)).astype(np.float64)
        auroc_shift = point["auroc"] - _auroc_counts(pos_n[None, :], neg_n[None, :])[0]
        ece_shift = point["ece"] - _ece_counts(pos_n[None, :], neg_n[None, :], grid / _GRID)[0]
        nan = np.full(rows, np.nan)
        tp = nan if sens is None else sens.astype(np.float64)
        tn = nan if spec is None else spec.astype(np.float64)
        fn = np.zeros(rows) if sens is None else n_pos - tp
        fifth = (
            rng.binomial(self.fifth.size, self.fifth.mean(), rows) / self.fifth.size
            if self.fifth.size
            else nan
        )
        order_a = np.argsort(self.wait_actual, kind="stable")
        order_f = np.argsort(self.wait_fcfs, kind="stable")
        w = _weights(rng, rows, int(self.wait_actual.size))
        actual = _weighted_median(w[:, order_a], self.wait_actual[order_a])
        fcfs = _weighted_median(w[:, order_f], self.wait_fcfs[order_f])
        tn_or_zero = np.zeros(rows) if spec is None else tn
        return {
            "auroc": _auroc_counts(pos, neg) + auroc_shift,
            "sensitivity": _ratio(tp, np.full(rows, float(n_pos))),
            "specificity": _ratio(tn, np.full(rows, float(n_neg))),
            "npv": _ratio(tn_or_zero, tn_or_zero + fn),
            "ece": _ece_counts(pos, neg, grid / _GRID) + ece_shift,
            "first_fifth": fifth,
            "hours_to_first_reading": actual,
            "hours_fcfs": fcfs,
            "triage_benefit_hours": fcfs - actual,
        }

    def reliability(self) -> tuple[ReliabilityBin, ...]:
        edges = np.linspace(0.0, 1.0, CALIBRATION_BINS + 1)
        bins = np.digitize(self.p, edges[1:-1], right=True)
        result = []
        for k in range(CALIBRATION_BINS):
            inside = bins == k
            count = int(inside.sum())
            result.append(
                ReliabilityBin(
                    lower=float(edges[k]),
                    upper=float(edges[k + 1]),
                    count=count,
                    mean_score=float(self.p[inside].mean()) if count else None,
                    observed=float(self.y[inside].mean()) if count else None,
                )
            )
        return tuple(result)


@dataclass(frozen=True)
class _Columns:
    """Every case's figures inputs as arrays, read once from the cases; a subgroup's sample is
    then a boolean mask over them (:meth:`sample`) instead of a second pass over the objects.

    ``fifth``, ``actual`` and ``fcfs`` are meaningful where ``timed`` (a cancer with a queue
    position) and ``waited`` (a cancer with both waits) say so.
    """

    y: np.ndarray
    p: np.ndarray
    timed: np.ndarray
    waited: np.ndarray
    fifth: np.ndarray
    actual: np.ndarray
    fcfs: np.ndarray

    @classmethod
    def read(cls, cases: Sequence[LabelledCase], timings: Mapping[int, Timing]) -> _Columns:
        y = np.array([c.malignant for c in cases], dtype=bool)
        p = np.array([c.p_malignant for c in cases], dtype=np.float64)
        if ((p < 0) | (p > 1) | ~np.isfinite(p)).any():
            raise ValueError("p_malignant must lie in [0, 1]")
        found = [timings.get(c.case_id) if c.malignant else None for c in cases]

        def hours(value: float | None) -> float:
            return math.nan if value is None else value

        return cls(
            y=y,
            p=p,
            timed=np.array([t is not None for t in found], dtype=bool),
            waited=np.array(
                [
                    t is not None
                    and t.hours_to_first_reading is not None
                    and t.hours_fcfs is not None
                    for t in found
                ],
                dtype=bool,
            ),
            fifth=np.array([t is not None and t.in_first_fifth for t in found], dtype=bool),
            actual=np.array(
                [math.nan if t is None else hours(t.hours_to_first_reading) for t in found],
                dtype=np.float64,
            ),
            fcfs=np.array(
                [math.nan if t is None else hours(t.hours_fcfs) for t in found],
                dtype=np.float64,
            ),
        )

    def sample(self, mask: np.ndarray | None = None) -> _Sample:
        """The sample of the cases under ``mask`` (all of them without one)."""
        keep = np.ones(self.y.shape, dtype=bool) if mask is None else mask
        timed, waited = self.timed & keep, self.waited & keep
        return _Sample(
            y=self.y[keep],
            p=self.p[keep],
            fifth=self.fifth[timed],
            wait_actual=self.actual[waited],
            wait_fcfs=self.fcfs[waited],
        )


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _figures(sample: _Sample, n_bootstrap: int, seed: int) -> Figures:
    point = sample.point()
    rng = np.random.default_rng(seed)
    draws = sample.resamples(rng, n_bootstrap, point) if n_bootstrap and sample.y.size else {}
    counts = sample.counts()
    estimates: dict[str, Estimate] = {}
    tail = (1.0 - CONFIDENCE) / 2.0 * 100.0
    for name in Figures.ESTIMATES:
        value = _finite(point[name])
        low = high = None
        if value is not None and name in draws:
            finite = draws[name][np.isfinite(draws[name])]
            # An interval from fewer than half the resamples would claim more than it knows.
            if finite.size >= max(1, n_bootstrap // 2):
                low, high = (float(x) for x in np.percentile(finite, [tail, 100.0 - tail]))
        estimates[name] = Estimate(value, low, high, counts[name])
    return Figures(
        n_cases=int(sample.y.size),
        n_malignant=int(sample.y.sum()),
        reliability=sample.reliability(),
        **estimates,
    )


def real_world_figures(
    cases: Sequence[LabelledCase],
    timings: Mapping[int, Timing] | None = None,
    *,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int = DEFAULT_SEED,
) -> Figures:
    """The figures of one version on ``cases`` (see the module docstring).

    ``timings`` (from :func:`queue_timings`) feed the worklist figures; cancers without one
    are left out of those. With ``n_bootstrap = 0`` there are no intervals.
    """
    return _figures(_Sample.build(cases, timings or {}), n_bootstrap, seed)


def real_world(
    cases: Sequence[LabelledCase],
    timings: Mapping[int, Timing] | None = None,
    *,
    dimensions: Iterable[str] = DIMENSIONS,
    n_bootstrap: int = N_BOOTSTRAP,
    n_bootstrap_subgroup: int = N_BOOTSTRAP_SUBGROUP,
    seed: int = DEFAULT_SEED,
) -> RealWorld:
    """:func:`real_world_figures` on every case (``n_bootstrap`` resamples), then on each subgroup
    of each dimension (``n_bootstrap_subgroup``; cases without a value for a dimension fall in
    ``unknown``), values in alphabetical order.

    The cases are read into arrays once; a subgroup is a mask over them.
    """
    columns = _Columns.read(cases, timings or {})
    subgroups: list[Subgroup] = []
    for dimension in dimensions:
        values = np.array([case.groups.get(dimension) or UNKNOWN for case in cases], dtype=object)
        for value in sorted(set(values.tolist())):
            sample = columns.sample(values == value)
            figures = _figures(sample, n_bootstrap_subgroup, seed)
            subgroups.append(Subgroup(dimension, value, figures))
    overall = _figures(columns.sample(), n_bootstrap, seed)
    return RealWorld(OPERATING_POINT, overall, tuple(subgroups))


# --- the alert -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SensitivityAlert:
    """The live sensitivity's whole 95 % interval lies below the registered figure."""

    registered_metric: str
    registered: float
    live: Estimate

    def to_dict(self) -> dict[str, object]:
        return {
            "registered_metric": self.registered_metric,
            "registered": self.registered,
            "live": self.live.to_dict(),
        }


def registered_sensitivity(metrics: Mapping[str, float]) -> tuple[str, float] | None:
    """The registry figure the live sensitivity answers to: the test sensitivity at the product's
    operating point when the version carries it, else its sensitivity at 95 % specificity (the
    figure every version is registered with, and the promotion gates compare)."""
    for key in REGISTERED_SENSITIVITY_KEYS:
        value = metrics.get(key)
        if value is not None and math.isfinite(value):
            return key, float(value)
    return None


def sensitivity_alert(
    figures: Figures, registered_metrics: Mapping[str, float]
) -> SensitivityAlert | None:
    """An alert when the upper end of the live sensitivity interval is below the registered
    figure: chance alone would rarely put it there, so the model catches fewer cancers on the
    centre's patients than it did on its test split. None otherwise, or without an interval."""
    registered = registered_sensitivity(registered_metrics)
    live = figures.sensitivity
    if registered is None or live.high is None:
        return None
    key, value = registered
    if live.high < value:
        return SensitivityAlert(key, value, live)
    return None
