"""The coded diagnosis: its codes, what each counts as, and which diagnosis a case is judged by."""

from __future__ import annotations

from datetime import date

import pytest

from pipeline.diagnosis import (
    CLASSIFIER_CLASS,
    SNOMED_CT,
    DiagnosisCode,
    OutcomeSource,
    ReferenceDiagnosis,
    is_malignant,
    reference_diagnosis,
)
from serving.i18n import SUPPORTED_LANGUAGES, translate

HAM10000_CLASSES = {"akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"}

H = OutcomeSource.HISTOLOGY
C = OutcomeSource.CONSULTATION
F = OutcomeSource.FOLLOW_UP
D = DiagnosisCode


def test_the_list_is_the_twelve_the_issue_fixed_with_stable_stored_values() -> None:
    assert [code.value for code in DiagnosisCode] == [
        "melanoma",
        "bcc",
        "scc",
        "ak_bowen",
        "naevus",
        "seborrhoeic_keratosis",
        "dermatofibroma",
        "vascular",
        "other_benign",
        "other_malignant",
        "inflammatory",
        "uncertain",
    ]
    assert [source.value for source in OutcomeSource] == ["histology", "consultation", "follow_up"]


def test_every_code_has_one_distinct_snomed_concept_with_a_display() -> None:
    assert set(SNOMED_CT) == set(DiagnosisCode)
    concepts = [concept for concept, _ in SNOMED_CT.values()]
    assert len(set(concepts)) == len(concepts)
    for concept, display in SNOMED_CT.values():
        assert concept.isdigit() and 6 <= len(concept) <= 18  # SNOMED CT identifiers
        assert display.strip()


def test_the_cancers_carry_their_skin_cancer_concepts() -> None:
    assert SNOMED_CT[D.BCC][0] == "254701007"
    assert SNOMED_CT[D.SCC][0] == "254651007"
    assert SNOMED_CT[D.AK_BOWEN][0] == "201101007"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (D.MELANOMA, "mel"),
        (D.BCC, "bcc"),
        (D.SCC, "akiec"),
        (D.AK_BOWEN, "akiec"),
        (D.NAEVUS, "nv"),
        (D.SEBORRHOEIC_KERATOSIS, "bkl"),
        (D.DERMATOFIBROMA, "df"),
        (D.VASCULAR, "vasc"),
        (D.OTHER_BENIGN, None),
        (D.OTHER_MALIGNANT, None),
        (D.INFLAMMATORY, None),
        (D.UNCERTAIN, None),
    ],
)
def test_each_code_maps_to_the_classifier_class_ham10000_would_file_it_under(
    code: DiagnosisCode, expected: str | None
) -> None:
    assert CLASSIFIER_CLASS[code] == expected


def test_every_classifier_class_is_reached_by_some_code() -> None:
    assert {c for c in CLASSIFIER_CLASS.values() if c} == HAM10000_CLASSES


def test_malignant_means_what_the_classifiers_malignant_score_means() -> None:
    malignant = {code for code in DiagnosisCode if is_malignant(code) is True}
    assert malignant == {D.MELANOMA, D.BCC, D.SCC, D.AK_BOWEN, D.OTHER_MALIGNANT}
    # Every classifier class of a malignant code is one the score sums (mel + bcc + akiec) ...
    assert {CLASSIFIER_CLASS[code] for code in malignant} - {None} == {"mel", "bcc", "akiec"}
    # ... and no benign code maps into them.
    benign = {code for code in DiagnosisCode if is_malignant(code) is False}
    assert not {CLASSIFIER_CLASS[code] for code in benign} & {"mel", "bcc", "akiec"}


def test_uncertain_is_neither_malignant_nor_benign() -> None:
    assert is_malignant(D.UNCERTAIN) is None


def test_histology_outranks_a_later_consultation_and_the_report() -> None:
    outcomes = [
        (D.NAEVUS, C, date(2025, 6, 1)),
        (D.MELANOMA, H, date(2025, 3, 1)),
        (D.NAEVUS, F, date(2025, 9, 1)),
    ]
    assert reference_diagnosis(outcomes, D.NAEVUS) == ReferenceDiagnosis(D.MELANOMA, "histology")


def test_the_latest_histology_corrects_an_earlier_one() -> None:
    outcomes = [(D.DERMATOFIBROMA, H, date(2025, 1, 10)), (D.BCC, H, date(2025, 2, 20))]
    assert reference_diagnosis(outcomes, None) == ReferenceDiagnosis(D.BCC, "histology")
    assert reference_diagnosis(list(reversed(outcomes)), None) == ReferenceDiagnosis(
        D.BCC, "histology"
    )


def test_consultation_outranks_follow_up() -> None:
    outcomes = [(D.NAEVUS, F, date(2026, 1, 1)), (D.SEBORRHOEIC_KERATOSIS, C, date(2025, 1, 1))]
    assert reference_diagnosis(outcomes, D.NAEVUS) == ReferenceDiagnosis(
        D.SEBORRHOEIC_KERATOSIS, "consultation"
    )


def test_follow_up_outranks_the_report() -> None:
    outcomes = [(D.NAEVUS, F, date(2026, 1, 1))]
    assert reference_diagnosis(outcomes, D.MELANOMA) == ReferenceDiagnosis(D.NAEVUS, "follow_up")


def test_without_an_outcome_the_validated_report_is_the_reference() -> None:
    assert reference_diagnosis([], D.BCC) == ReferenceDiagnosis(D.BCC, "expert_report")


def test_uncertain_never_counts_and_the_next_source_down_is_used() -> None:
    outcomes = [(D.UNCERTAIN, H, date(2026, 3, 1)), (D.NAEVUS, C, date(2025, 1, 1))]
    assert reference_diagnosis(outcomes, D.MELANOMA) == ReferenceDiagnosis(D.NAEVUS, "consultation")
    assert reference_diagnosis([(D.UNCERTAIN, H, date(2026, 3, 1))], D.MELANOMA) == (
        ReferenceDiagnosis(D.MELANOMA, "expert_report")
    )
    assert reference_diagnosis([(D.UNCERTAIN, H, date(2026, 3, 1))], D.UNCERTAIN) is None


def test_no_evidence_at_all_gives_no_reference() -> None:
    assert reference_diagnosis([], None) is None


def test_values_read_back_from_the_database_as_plain_strings_are_accepted() -> None:
    outcomes = [("melanoma", "histology", date(2025, 3, 1))]
    assert reference_diagnosis(outcomes, "naevus") == ReferenceDiagnosis(D.MELANOMA, "histology")  # type: ignore[arg-type]
    assert reference_diagnosis([("uncertain", "histology", date(2025, 3, 1))], None) is None  # type: ignore[list-item]


@pytest.mark.parametrize("lang", SUPPORTED_LANGUAGES)
def test_every_code_and_source_has_a_label_in_each_language(lang: str) -> None:
    for code in DiagnosisCode:
        assert translate(f"diagnosis.{code.value}", lang)  # type: ignore[arg-type]
    for source in [*OutcomeSource, "expert_report"]:
        assert translate(f"outcome_source.{source}", lang)  # type: ignore[arg-type]
    assert translate("diagnosis.bcc", "fr") == "Carcinome basocellulaire"
