"""Real-world figures: each checked against values worked out by hand on a small fixture.

The classification fixture (seven confirmed cases, three cancers):

    case  cancer  score   called at 0.40
    1     yes     0.90    yes  (true positive)
    2     yes     0.60    yes  (true positive)
    3     yes     0.30    no   (false negative)
    4     no      0.50    yes  (false positive)
    5     no      0.20    no   (true negative)
    6     no      0.10    no   (true negative)
    7     no      0.30    no   (true negative, tied with case 3)

AUROC: of the 3 x 4 cancer/benign pairs, 0.90 and 0.60 outrank all four benign scores (8), 0.30
outranks 0.20 and 0.10 and ties 0.30 (2.5): 10.5 / 12 = 0.875. Sensitivity 2/3, specificity 3/4,
NPV 3 / (3 + 1) = 0.75. ECE over ten bins: |observed - predicted| summed per bin is
0.1 (0.9) + 0.4 (0.6) + 0.4 (0.3 and 0.3: one cancer) + 0.5 (0.5) + 0.2 + 0.1 = 1.7, over 7 cases.

The queue fixture (one centre, deadline 48 h; points are the fixed part of the priority score):

    case  arrives  first read  points  cancer
    A     0 h      10 h        30      no
    B     1 h       2 h        80      yes
    C     3 h       5 h        50      yes
    D     4 h      20 h        10      no

At B's arrival the queue is A (30 + 25 * 1/48: routine) and B (80: urgent): B first of 2. At C's,
B has been read: A (routine) and C (50: high): C first of 2. At D's: C (high), A (routine), D
(low): D third of 3, not in the first fifth. First come, first served with the same readings
(2, 5, 10, 20 h) reads A at 2, B at 5, C at 10, D at 20: the cancers B and C wait 4 and 7 h
instead of 1 and 2 h, medians 5.5 h against 1.5 h, a triage benefit of 4 h.
"""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from pipeline.priority import CaseFacts, RedFlags, ScoringState, rank
from pipeline.real_world import (
    OPERATING_POINT,
    Estimate,
    LabelledCase,
    QueueEntry,
    _auroc_counts,
    _ece_counts,
    _weighted_median,
    _weights,
    age_band,
    fcfs_first_readings,
    queue_timings,
    real_world,
    real_world_figures,
    sensitivity_alert,
)

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


CASES = [
    LabelledCase(1, True, 0.90, {"centre": "lyon", "phototype": "II"}),
    LabelledCase(2, True, 0.60, {"centre": "lyon", "phototype": "IV"}),
    LabelledCase(3, True, 0.30, {"centre": "grenoble", "phototype": "II"}),
    LabelledCase(4, False, 0.50, {"centre": "lyon", "phototype": "II"}),
    LabelledCase(5, False, 0.20, {"centre": "lyon"}),
    LabelledCase(6, False, 0.10, {"centre": "grenoble", "phototype": "IV"}),
    LabelledCase(7, False, 0.30, {"centre": "lyon", "phototype": "II"}),
]

QUEUE = [
    QueueEntry(101, "lyon", at(0), at(10), 30.0, False),
    QueueEntry(102, "lyon", at(1), at(2), 80.0, False),
    QueueEntry(103, "lyon", at(3), at(5), 50.0, False),
    QueueEntry(104, "lyon", at(4), at(20), 10.0, False),
]


def test_the_operating_point_is_where_the_score_alone_makes_a_case_high_priority():
    assert pytest.approx(0.40) == OPERATING_POINT


def test_classification_figures_match_the_hand_computed_values():
    figures = real_world_figures(CASES, n_bootstrap=200)
    assert (figures.n_cases, figures.n_malignant) == (7, 3)
    assert figures.auroc.value == pytest.approx(0.875)
    assert figures.sensitivity.value == pytest.approx(2 / 3)
    assert figures.specificity.value == pytest.approx(3 / 4)
    assert figures.npv.value == pytest.approx(3 / 4)
    assert figures.ece.value == pytest.approx(1.7 / 7)
    assert (figures.auroc.n, figures.sensitivity.n, figures.specificity.n, figures.npv.n) == (
        7,
        3,
        4,
        4,
    )
    assert figures.auroc.value == pytest.approx(
        roc_auc_score([c.malignant for c in CASES], [c.p_malignant for c in CASES])
    )


def test_reliability_bins_say_how_often_each_score_band_was_a_cancer():
    bins = {round(b.lower, 1): b for b in real_world_figures(CASES, n_bootstrap=0).reliability}
    assert len(bins) == 10
    assert (bins[0.2].count, bins[0.2].mean_score, bins[0.2].observed) == (2, 0.3, 0.5)
    assert (bins[0.4].count, bins[0.4].observed) == (1, 0.0)
    assert bins[0.7].count == 0 and bins[0.7].observed is None


def test_every_figure_carries_a_bootstrap_interval_around_it_and_reads_the_same_twice():
    figures = real_world_figures(CASES, n_bootstrap=300)
    for name in ("auroc", "sensitivity", "specificity", "npv", "ece"):
        estimate: Estimate = getattr(figures, name)
        assert estimate.low is not None and estimate.high is not None, name
        assert estimate.low <= estimate.value <= estimate.high, name
    assert real_world_figures(CASES, n_bootstrap=300) == figures
    assert figures.sensitivity.low < figures.sensitivity.high  # 3 cancers: a wide interval


def test_without_bootstrap_there_is_no_interval_and_an_undefined_figure_is_none():
    benign_only = [c for c in CASES if not c.malignant]
    figures = real_world_figures(benign_only, n_bootstrap=100)
    assert figures.sensitivity == Estimate(None, None, None, 0)
    assert figures.auroc.value is None
    assert figures.specificity.value == pytest.approx(3 / 4)
    assert real_world_figures(CASES, n_bootstrap=0).auroc.low is None


def test_the_queue_replay_matches_the_hand_computed_positions_and_waits():
    timings = queue_timings(QUEUE, {101, 102, 103, 104}, now=at(100))
    assert (timings[102].position, timings[102].queue_length) == (1, 2)
    assert (timings[103].position, timings[103].queue_length) == (1, 2)
    assert (timings[104].position, timings[104].queue_length) == (3, 3)
    assert (timings[101].position, timings[101].queue_length) == (1, 1)
    assert timings[103].in_first_fifth and not timings[104].in_first_fifth
    assert [timings[i].hours_to_first_reading for i in (101, 102, 103, 104)] == [10, 1, 2, 16]
    assert [timings[i].hours_fcfs for i in (101, 102, 103, 104)] == [2, 4, 7, 16]


def test_triage_benefit_is_the_fcfs_median_wait_of_cancers_minus_the_real_one():
    timings = queue_timings(QUEUE, {101, 102, 103, 104}, now=at(100))
    cases = [
        LabelledCase(101, False, 0.2),
        LabelledCase(102, True, 0.8),
        LabelledCase(103, True, 0.5),
        LabelledCase(104, False, 0.1),
    ]
    figures = real_world_figures(cases, timings, n_bootstrap=200)
    assert figures.first_fifth == Estimate(1.0, 1.0, 1.0, 2)
    assert figures.hours_to_first_reading.value == pytest.approx(1.5)
    assert figures.hours_fcfs.value == pytest.approx(5.5)
    assert figures.triage_benefit_hours.value == pytest.approx(4.0)
    assert figures.triage_benefit_hours.n == 2
    assert 3.0 <= figures.triage_benefit_hours.low <= 4.0 <= figures.triage_benefit_hours.high


def test_fcfs_gives_the_kth_recorded_reading_to_the_kth_arrival_and_none_beyond():
    queue = [*QUEUE, QueueEntry(105, "lyon", at(30), None, 90.0, False)]
    queue.append(QueueEntry(201, "grenoble", at(0), at(50), 40.0, False))
    fcfs = fcfs_first_readings(queue)
    assert fcfs[101] == at(2) and fcfs[104] == at(20) and fcfs[105] is None
    assert fcfs[201] == at(50)  # each centre reads its own cases
    timing = queue_timings(queue, {105}, now=at(40))[105]
    assert timing.fcfs_censored and timing.hours_fcfs == 10.0
    assert timing.hours_to_first_reading is None


def test_the_replay_ranks_each_arrival_exactly_as_the_priority_policy_would_have():
    rng = random.Random(5)
    facts = []
    for case_id in range(1, 61):
        submitted = at(rng.uniform(0, 120))
        read = submitted + timedelta(hours=rng.uniform(0.5, 70)) if rng.random() < 0.9 else None
        scored = rng.random() < 0.85
        facts.append(
            CaseFacts(
                case_id=case_id,
                submitted_at=submitted,
                scoring=ScoringState.done if scored else ScoringState.pending,
                p_malignant=round(rng.random(), 2) if scored else None,
                uncertainty=round(rng.random(), 2) if scored else None,
                quality_ok=rng.random() < 0.9,
                red_flags=RedFlags(bleeding=rng.random() < 0.2, changed_size=rng.random() < 0.3),
                first_read_at=read,
            )
        )
    queue = [QueueEntry.from_facts(f, "lyon") for f in facts]
    timings = queue_timings(queue, [f.case_id for f in facts], now=at(300))
    for case in facts:
        t = case.submitted_at
        waiting = [
            dataclasses.replace(f, first_read_at=None)
            for f in facts
            if f.case_id == case.case_id
            or (f.submitted_at <= t and (f.first_read_at is None or f.first_read_at > t))
        ]
        order = [p.case_id for p in rank(waiting, t)]
        timing = timings[case.case_id]
        assert timing.queue_length == len(order)
        assert timing.position == order.index(case.case_id) + 1


def test_the_resample_arithmetic_equals_recomputing_each_resample_by_hand():
    rng = np.random.default_rng(3)
    grid = np.round(np.sort(rng.random(25)), 3)
    pos = rng.integers(0, 4, size=(5, grid.size)).astype(float)
    neg = rng.integers(0, 6, size=(5, grid.size)).astype(float)
    auroc, ece = _auroc_counts(pos, neg), _ece_counts(pos, neg, grid)
    for row in range(5):
        y = np.r_[np.ones(int(pos[row].sum())), np.zeros(int(neg[row].sum()))].astype(bool)
        p = np.r_[np.repeat(grid, pos[row].astype(int)), np.repeat(grid, neg[row].astype(int))]
        assert auroc[row] == pytest.approx(roc_auc_score(y, p))
        cases = [LabelledCase(i, bool(y[i]), float(p[i])) for i in range(len(y))]
        assert ece[row] == pytest.approx(real_world_figures(cases, n_bootstrap=0).ece.value)
    values = np.sort(rng.integers(1, 90, size=30).astype(float))
    weights = _weights(np.random.default_rng(9), 6, values.size)
    medians = _weighted_median(weights, values)
    for row in range(6):
        assert medians[row] == np.median(np.repeat(values, weights[row].astype(int)))


def test_subgroups_cut_by_each_dimension_and_put_missing_values_under_unknown():
    found = real_world(
        CASES, n_bootstrap=50, n_bootstrap_subgroup=50, dimensions=("centre", "phototype")
    )
    groups = {(s.dimension, s.value): s.figures for s in found.subgroups}
    assert set(groups) == {
        ("centre", "grenoble"),
        ("centre", "lyon"),
        ("phototype", "II"),
        ("phototype", "IV"),
        ("phototype", "unknown"),
    }
    assert groups[("centre", "grenoble")].n_cases == 2
    assert groups[("centre", "lyon")].sensitivity.value == pytest.approx(1.0)
    assert groups[("phototype", "II")].npv.value == pytest.approx(1 / 2)
    assert found.overall.auroc.value == pytest.approx(0.875)


def test_an_alert_when_the_whole_sensitivity_interval_lies_below_the_registered_figure():
    weak = [LabelledCase(i, True, 0.1) for i in range(30)] + [
        LabelledCase(100 + i, True, 0.9) for i in range(10)
    ]
    figures = real_world_figures(weak, n_bootstrap=300)
    assert figures.sensitivity.value == pytest.approx(0.25)
    alert = sensitivity_alert(figures, {"sens_at_95_spec": 0.72, "malignant_auroc": 0.94})
    assert alert is not None and alert.registered_metric == "sens_at_95_spec"
    assert alert.registered == 0.72 and alert.live.high < 0.72
    operating = {"sens_at_operating_point": 0.30, "sens_at_95_spec": 0.72}
    assert sensitivity_alert(figures, operating) is None  # 0.30 lies inside the interval
    assert sensitivity_alert(figures, {}) is None
    assert (
        sensitivity_alert(real_world_figures(CASES, n_bootstrap=300), {"sens_at_95_spec": 0.7})
        is None
    )


@pytest.mark.parametrize(
    ("age", "band"),
    [(29.9, "<30"), (30, "30-44"), (59, "45-59"), (74, "60-74"), (75, ">=75"), (None, "unknown")],
)
def test_age_bands_are_those_of_the_training_figures(age, band):
    assert age_band(age) == band
