"""The evaluation figures, checked against values worked out by hand on small arrays."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import balanced_accuracy_score

from models.network import CLASSES
from pipeline.real_world import OPERATING_POINT
from training.metrics import (
    age_band,
    balanced_accuracy,
    calibration_bins,
    evaluate_predictions,
    expected_calibration_error,
    malignant_auroc,
    malignant_scores,
    per_class_recall,
    sensitivity_at_specificity,
    specificity_at_sensitivity,
    subgroup_table,
    top_label_ece,
)

# 20 benign scores 0, 0.05, ..., 0.95 and 4 malignant ones. Worked out by hand:
# - specificity >= 0.95 allows one benign case above the threshold (the one at 0.95). Threshold 0.93
#   catches 0.99, 0.97, 0.93 and that benign case: sensitivity 3/4 at specificity 19/20 exactly.
# - sensitivity >= 0.95 needs all four malignant cases, threshold <= 0.52: the benign cases at
#   0.55 ... 0.95 (nine of them) are then positive, specificity 11/20.
BENIGN = np.arange(20) / 20
MALIGNANT = np.array([0.99, 0.97, 0.93, 0.52])
Y_ROC = np.r_[np.zeros(20, dtype=int), np.ones(4, dtype=int)]
P_ROC = np.r_[BENIGN, MALIGNANT]


def brute_force_sens_at_spec(y: np.ndarray, p: np.ndarray, target: float) -> float:
    """Reference: try every threshold (each score, and +inf) and count by hand."""
    best = 0.0
    for t in [*np.unique(p), np.inf]:
        positive = p >= t
        sens = (positive & (y == 1)).sum() / (y == 1).sum()
        spec = (~positive & (y == 0)).sum() / (y == 0).sum()
        if spec >= target - 1e-9:
            best = max(best, sens)
    return float(best)


class TestRanking:
    def test_auroc_of_the_textbook_example(self) -> None:
        # Of the 4 (malignant, benign) pairs, 3 are ordered correctly: 0.75.
        assert malignant_auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)

    def test_auroc_counts_ties_as_half(self) -> None:
        assert malignant_auroc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)

    def test_auroc_is_nan_when_only_one_outcome_occurs(self) -> None:
        assert math.isnan(malignant_auroc([1, 1, 1], [0.2, 0.5, 0.9]))
        assert math.isnan(malignant_auroc([], []))

    def test_sensitivity_at_95_specificity_worked_example(self) -> None:
        assert sensitivity_at_specificity(Y_ROC, P_ROC, 0.95) == pytest.approx(0.75)

    def test_sensitivity_at_full_specificity_only_counts_cases_above_every_benign(self) -> None:
        assert sensitivity_at_specificity(Y_ROC, P_ROC, 1.0) == pytest.approx(0.5)

    def test_specificity_at_95_sensitivity_worked_example(self) -> None:
        assert specificity_at_sensitivity(Y_ROC, P_ROC, 0.95) == pytest.approx(11 / 20)

    def test_specificity_at_sensitivity_with_a_tie_at_the_threshold(self) -> None:
        # The last malignant case ties with the benign case at 0.5: calling it positive also calls
        # the ten benign cases 0.5 ... 0.95 positive.
        p = np.r_[BENIGN, [0.99, 0.97, 0.93, 0.5]]
        assert specificity_at_sensitivity(Y_ROC, p, 0.95) == pytest.approx(0.5)

    def test_perfect_separation_reaches_one_on_both(self) -> None:
        y = np.array([0, 0, 0, 1, 1])
        p = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
        assert sensitivity_at_specificity(y, p) == 1.0
        assert specificity_at_sensitivity(y, p) == 1.0

    def test_undefined_without_both_outcomes(self) -> None:
        assert math.isnan(sensitivity_at_specificity([0, 0], [0.1, 0.2]))
        assert math.isnan(specificity_at_sensitivity([1, 1], [0.1, 0.2]))

    def test_rejects_a_target_outside_zero_one(self) -> None:
        with pytest.raises(ValueError, match="specificity"):
            sensitivity_at_specificity(Y_ROC, P_ROC, 95)

    def test_rejects_labels_that_are_not_binary(self) -> None:
        with pytest.raises(ValueError, match="0 and 1"):
            malignant_auroc([0, 2], [0.1, 0.2])

    @settings(max_examples=40, deadline=None)
    @given(
        st.lists(st.tuples(st.booleans(), st.integers(0, 20)), min_size=2, max_size=40),
        st.sampled_from([0.5, 0.8, 0.9, 0.95, 1.0]),
    )
    def test_sensitivity_at_specificity_matches_counting_every_threshold(
        self, cases: list[tuple[bool, int]], target: float
    ) -> None:
        y = np.array([int(c[0]) for c in cases])
        p = np.array([c[1] / 20 for c in cases])
        if y.min() == y.max():
            assert math.isnan(sensitivity_at_specificity(y, p, target))
            return
        assert sensitivity_at_specificity(y, p, target) == pytest.approx(
            brute_force_sens_at_spec(y, p, target)
        )
        # The mirror definition is the same computation with roles and score sign swapped.
        assert specificity_at_sensitivity(y, p, target) == pytest.approx(
            brute_force_sens_at_spec(1 - y, -p, target)
        )


class TestClassification:
    y_true = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 0, 0, 1, 1, 0, 2, 2])

    def test_per_class_recall(self) -> None:
        recalls = per_class_recall(self.y_true, self.y_pred, ["a", "b", "c", "d"])
        assert recalls["a"] == 0.75
        assert recalls["b"] == 0.5
        assert recalls["c"] == 1.0
        assert math.isnan(recalls["d"])  # no case of "d": undefined, not 0

    def test_balanced_accuracy_is_the_mean_recall_of_present_classes(self) -> None:
        assert balanced_accuracy(self.y_true, self.y_pred, 4) == pytest.approx(0.75)
        assert balanced_accuracy(self.y_true, self.y_pred) == pytest.approx(
            balanced_accuracy_score(self.y_true, self.y_pred)
        )

    def test_balanced_accuracy_punishes_predicting_the_majority_class(self) -> None:
        y = np.array([0] * 9 + [1])
        assert balanced_accuracy(y, np.zeros(10, dtype=int)) == pytest.approx(0.5)


class TestCalibration:
    def test_ece_worked_example(self) -> None:
        # Two bins: (0.1, 0.2) -> mean conf 0.15, frequency 0.5; (0.8, 0.9) -> 0.85 vs 0.5.
        assert expected_calibration_error(
            [0, 1, 1, 0], [0.1, 0.2, 0.8, 0.9], n_bins=2
        ) == pytest.approx(0.35)

    def test_ece_weights_bins_by_their_count(self) -> None:
        # Low bin: three cases at 0.1, none positive: gap 0.1. High bin: one at 0.9, positive: 0.1.
        # Then one positive out of three in the low bin: gap 1/3 - 0.1, weighted by 3/4.
        assert expected_calibration_error([0, 0, 0, 1], [0.1] * 3 + [0.9], 2) == pytest.approx(0.1)
        assert expected_calibration_error([1, 0, 0, 1], [0.1] * 3 + [0.9], 2) == pytest.approx(
            0.75 * (1 / 3 - 0.1) + 0.25 * 0.1
        )

    def test_calibrated_scores_have_zero_ece(self) -> None:
        assert expected_calibration_error([1, 0, 0, 0], [0.25] * 4) == pytest.approx(0.0)

    def test_calibration_bins_keep_empty_bins_and_count_every_case(self) -> None:
        bins = calibration_bins([0, 1, 1], [0.0, 0.55, 1.0], n_bins=10)
        assert len(bins) == 10
        assert bins["count"].tolist() == [1, 0, 0, 0, 0, 1, 0, 0, 0, 1]
        assert math.isnan(bins.loc[3, "confidence"])
        assert bins.loc[9, "frequency"] == 1.0

    def test_top_label_ece_worked_example(self) -> None:
        probs = np.array([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])
        y = np.array([0, 1, 1, 2])  # right, wrong, right, right
        # One bin: mean confidence 0.65, accuracy 0.75.
        assert top_label_ece(y, probs, n_bins=1) == pytest.approx(0.10)
        # Ten bins, one case each: mean of |1-0.7|, |0-0.6|, |1-0.5|, |1-0.8|.
        assert top_label_ece(y, probs, n_bins=10) == pytest.approx(0.4)

    def test_rejects_probabilities_outside_zero_one(self) -> None:
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            expected_calibration_error([0, 1], [0.2, 1.3])


@pytest.mark.parametrize(
    ("age", "band"),
    [
        (0, "<30"),
        (29.9, "<30"),
        (30, "30-44"),
        (44, "30-44"),
        (45, "45-59"),
        (60, "60-74"),
        (74.5, "60-74"),
        (75, ">=75"),
        (90, ">=75"),
        (None, "unknown"),
        (float("nan"), "unknown"),
        ("", "unknown"),
        ("abc", "unknown"),
        (-1, "unknown"),
        ("52", "45-59"),
    ],
)
def test_age_band(age: object, band: str) -> None:
    assert age_band(age) == band


def one_hot_probs(pred: list[int], confidence: float = 0.94) -> np.ndarray:
    """Probabilities that put ``confidence`` on the predicted class and share the rest evenly."""
    probs = np.full((len(pred), len(CLASSES)), (1 - confidence) / (len(CLASSES) - 1))
    probs[np.arange(len(pred)), pred] = confidence
    return probs


class TestEvaluatePredictions:
    def test_keys_and_counts(self) -> None:
        y = np.array([0, 1, 4, 5, 5, 2, 6, 3])  # akiec, bcc, mel malignant: three cases
        figures = evaluate_predictions(y, one_hot_probs(y.tolist()), CLASSES)
        expected = {
            "malignant_auroc",
            "sens_at_95_spec",
            "spec_at_95_sens",
            "balanced_accuracy",
            "ece_malignant",
            "ece_top_label",
            "sens_at_operating_point",
            "spec_at_operating_point",
            "n",
            "n_malignant",
        } | {f"recall_{c}" for c in CLASSES}
        assert set(figures) == expected
        assert figures["n"] == 8
        assert figures["n_malignant"] == 3
        assert all(isinstance(v, float) for v in figures.values())

    def test_sensitivity_and_specificity_at_the_products_operating_point(self) -> None:
        """Called malignant when p >= 0.40 (the worklist's high tier): a case predicted as a
        malignant class scores 0.94 + 2 x 0.01 = 0.96, a benign one 3 x 0.01 = 0.03. Three
        cancers, two called (mel, bcc; the second mel read as nv); four benign, one called."""
        y = np.array([4, 4, 1, 5, 5, 5, 2])
        pred = [4, 5, 1, 5, 4, 5, 2]
        figures = evaluate_predictions(y, one_hot_probs(pred), CLASSES)
        assert pytest.approx(0.40) == OPERATING_POINT
        assert figures["sens_at_operating_point"] == pytest.approx(2 / 3)
        assert figures["spec_at_operating_point"] == pytest.approx(3 / 4)

    def test_a_perfect_classifier(self) -> None:
        y = np.array([0, 1, 2, 3, 4, 5, 6, 5, 5])
        figures = evaluate_predictions(y, one_hot_probs(y.tolist()), CLASSES)
        assert figures["malignant_auroc"] == 1.0
        assert figures["sens_at_95_spec"] == 1.0
        assert figures["spec_at_95_sens"] == 1.0
        assert figures["balanced_accuracy"] == 1.0
        assert figures["recall_mel"] == 1.0
        # Always right with confidence 0.94: the top-label gap is 0.06.
        assert figures["ece_top_label"] == pytest.approx(0.06)

    def test_malignant_score_sums_the_three_malignant_classes(self) -> None:
        probs = np.array([[0.1, 0.2, 0.0, 0.0, 0.3, 0.4, 0.0]])
        y_mal, p_mal = malignant_scores(np.array([5]), probs, CLASSES)
        assert y_mal.tolist() == [0]
        assert p_mal[0] == pytest.approx(0.6)

    def test_mistakes_show_in_recall_and_balanced_accuracy(self) -> None:
        y = np.array([4, 4, 5, 5])  # two melanomas, two naevi
        pred = [5, 4, 5, 5]  # one melanoma missed
        figures = evaluate_predictions(y, one_hot_probs(pred), CLASSES)
        assert figures["recall_mel"] == 0.5
        assert figures["recall_nv"] == 1.0
        assert math.isnan(figures["recall_df"])
        assert figures["balanced_accuracy"] == pytest.approx(0.75)

    def test_a_decision_rule_other_than_argmax_drives_recall(self) -> None:
        y = np.array([4, 4, 5, 5])
        probs = one_hot_probs([5, 4, 5, 5])  # argmax misses the first melanoma...
        decided = np.array([4, 4, 5, 5])  # ...a prior-corrected rule catches it
        figures = evaluate_predictions(y, probs, CLASSES, predicted=decided)
        assert figures["recall_mel"] == 1.0
        assert figures["balanced_accuracy"] == 1.0
        # The probabilities are unchanged, so the ranking figures are too.
        assert figures["malignant_auroc"] == evaluate_predictions(y, probs)["malignant_auroc"]
        with pytest.raises(ValueError, match="predicted"):
            evaluate_predictions(y, probs, CLASSES, predicted=np.array([4, 4, 5]))

    def test_rejects_logits(self) -> None:
        with pytest.raises(ValueError, match="logits"):
            evaluate_predictions(np.array([0]), np.array([[2.0, 1, 0, 0, 0, 0, 0]]), CLASSES)

    def test_rejects_a_class_count_mismatch(self) -> None:
        with pytest.raises(ValueError, match="columns"):
            evaluate_predictions(np.array([0]), np.array([[0.5, 0.5]]), CLASSES)


class TestSubgroupTable:
    @pytest.fixture
    def split(self) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
        # Women: two melanomas and two naevi, one melanoma scored low. Men: naevi only.
        # One patient with no recorded sex or age.
        y = np.array([4, 4, 5, 5, 5, 5, 5])
        pred = [4, 5, 5, 5, 5, 5, 5]
        metadata = pd.DataFrame(
            {
                "sex": ["female", "female", "female", "female", "male", "male", None],
                "age": [80, 50, 50, 20, 35, 35, np.nan],
                "localization": ["back", "face", "back", "back", "trunk", "trunk", ""],
                "dx_type": ["histo"] * 4 + ["follow_up"] * 3,
            },
            index=[10, 11, 12, 13, 14, 15, 16],  # not 0..n-1: rows are matched by position
        )
        return y, one_hot_probs(pred), metadata

    def test_one_row_per_subgroup_value_in_reading_order(self, split) -> None:
        y, probs, metadata = split
        table = subgroup_table(y, probs, metadata, CLASSES, min_n=3)
        assert list(zip(table["column"], table["value"], strict=True)) == [
            ("overall", "all"),
            ("sex", "female"),
            ("sex", "male"),
            ("sex", "unknown"),
            ("age_band", "<30"),
            ("age_band", "30-44"),
            ("age_band", "45-59"),
            ("age_band", ">=75"),
            ("age_band", "unknown"),
            ("localization", "back"),
            ("localization", "face"),
            ("localization", "trunk"),
            ("localization", "unknown"),
            ("dx_type", "follow_up"),
            ("dx_type", "histo"),
        ]
        for column in ("sex", "age_band", "localization", "dx_type"):
            assert table.loc[table["column"] == column, "n"].sum() == len(y)

    def test_figures_within_a_subgroup(self, split) -> None:
        y, probs, metadata = split
        table = subgroup_table(y, probs, metadata, CLASSES, min_n=3).set_index(["column", "value"])
        women = table.loc[("sex", "female")]
        assert women["n"] == 4
        assert women["n_malignant"] == 2
        # Malignant scores: caught melanoma 0.96, missed melanoma 0.03, naevi 0.03 each. The missed
        # one ties with both naevi: AUROC = (2 + 0.5 * 2) / 4.
        assert women["malignant_auroc"] == pytest.approx(0.75)
        assert women["balanced_accuracy"] == pytest.approx(0.75)
        assert not women["small_sample"]

    def test_undefined_figures_are_nan_and_small_groups_flagged(self, split) -> None:
        y, probs, metadata = split
        table = subgroup_table(y, probs, metadata, CLASSES, min_n=3).set_index(["column", "value"])
        men = table.loc[("sex", "male")]
        assert men["n_malignant"] == 0
        assert math.isnan(men["malignant_auroc"])
        assert math.isnan(men["sens_at_95_spec"])
        assert men["balanced_accuracy"] == 1.0
        assert men["small_sample"]  # 2 < 3

    def test_decisions_are_split_with_the_subgroups(self, split) -> None:
        y, probs, metadata = split
        decided = np.array([4, 4, 5, 5, 5, 5, 5])  # the missed melanoma is now caught
        table = subgroup_table(y, probs, metadata, CLASSES, min_n=3, predicted=decided)
        women = table.set_index(["column", "value"]).loc[("sex", "female")]
        assert women["balanced_accuracy"] == 1.0

    def test_missing_subgroup_column_is_an_error(self, split) -> None:
        y, probs, metadata = split
        with pytest.raises(ValueError, match="skin_type"):
            subgroup_table(y, probs, metadata, CLASSES, columns=("sex", "skin_type"))

    def test_misaligned_metadata_is_an_error(self, split) -> None:
        y, probs, metadata = split
        with pytest.raises(ValueError, match="rows"):
            subgroup_table(y, probs, metadata.iloc[:3], CLASSES)
