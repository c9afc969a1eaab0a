"""The coded diagnosis: one short list shared by the expert's report, the outcome and the figures.

Free text says what the expert thinks; it cannot be counted. So a report and an outcome (what the
lesion turned out to be: histology, consultation or follow-up) both carry one
:class:`DiagnosisCode` from the same twelve, and everything downstream reads that code:

- :data:`SNOMED_CT` gives the code the HL7 FHIR ``DiagnosticReport.conclusionCode`` carries;
- :data:`CLASSIFIER_CLASS` ties the code to the classifier's seven HAM10000 classes, where one
  exists, so the centre's own validated cases can train and test a model;
- :func:`is_malignant` says which codes count as a cancer, exactly as the classifier's
  ``malignant`` score does (``mel + bcc + akiec``), so a real-world sensitivity means what the
  test-set sensitivity meant;
- :func:`reference_diagnosis` picks the diagnosis a case is judged against: histology before a
  consultation, before follow-up, before the expert's own validated report.

Pure: no database, no clock; the words in French and English live in ``serving/i18n.py``
(keys ``diagnosis.<code>`` and ``outcome_source.<source>``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from types import MappingProxyType

SNOMED_CT_SYSTEM = "http://snomed.info/sct"


class DiagnosisCode(StrEnum):
    """An expert's or an outcome's diagnosis; stored as its value, so never rename one."""

    MELANOMA = "melanoma"
    BCC = "bcc"
    SCC = "scc"
    AK_BOWEN = "ak_bowen"
    NAEVUS = "naevus"
    SEBORRHOEIC_KERATOSIS = "seborrhoeic_keratosis"
    DERMATOFIBROMA = "dermatofibroma"
    VASCULAR = "vascular"
    OTHER_BENIGN = "other_benign"
    OTHER_MALIGNANT = "other_malignant"
    INFLAMMATORY = "inflammatory"
    UNCERTAIN = "uncertain"


class OutcomeSource(StrEnum):
    """How the outcome was established, strongest evidence first."""

    HISTOLOGY = "histology"
    CONSULTATION = "consultation"
    FOLLOW_UP = "follow_up"


# (SNOMED CT concept id, preferred term). Checked against published code lists found through the
# reference search (FHIR implementation guides, HL7 mCODE, SNOMED-coded dermatology picklists):
#   verified in two or more independent lists: bcc 254701007, scc 254651007, ak 201101007,
#   skin lesion 95324001, malignant neoplastic disease 363346000.
#   melanoma 93655004 "Malignant melanoma of skin" (a picklist that states it was checked in
#   the IHTSDO browser; 372130007, which some lists give for melanoma, is the broader
#   "Malignant neoplasm of skin" in the lists that quote SNOMED's fully specified names).
#   Found in one list only, not independently verified: naevus 400096001, seborrhoeic keratosis
#   201089006, benign neoplasm of skin 92384009.
#   Not found in any stored list (from memory, to check against the browser before a release):
#   dermatofibroma 403035009, vascular lesion 400210000, disorder of skin 95320005.
# Actinic keratosis carries the shared code (Bowen's disease alone would be 254656002,
# "Squamous cell carcinoma in situ of skin").
SNOMED_CT: Mapping[DiagnosisCode, tuple[str, str]] = MappingProxyType(
    {
        DiagnosisCode.MELANOMA: ("93655004", "Malignant melanoma of skin"),
        DiagnosisCode.BCC: ("254701007", "Basal cell carcinoma of skin"),
        DiagnosisCode.SCC: ("254651007", "Squamous cell carcinoma of skin"),
        DiagnosisCode.AK_BOWEN: ("201101007", "Actinic keratosis"),
        DiagnosisCode.NAEVUS: ("400096001", "Melanocytic naevus"),
        DiagnosisCode.SEBORRHOEIC_KERATOSIS: ("201089006", "Seborrhoeic keratosis"),
        DiagnosisCode.DERMATOFIBROMA: ("403035009", "Dermatofibroma"),
        DiagnosisCode.VASCULAR: ("400210000", "Vascular lesion of skin"),
        DiagnosisCode.OTHER_BENIGN: ("92384009", "Benign neoplasm of skin"),
        DiagnosisCode.OTHER_MALIGNANT: ("363346000", "Malignant neoplastic disease"),
        DiagnosisCode.INFLAMMATORY: ("95320005", "Disorder of skin"),
        DiagnosisCode.UNCERTAIN: ("95324001", "Skin lesion"),
    }
)

# The classifier's classes (HAM10000's seven). HAM10000 files squamous cell carcinoma with
# actinic keratosis and Bowen's disease under ``akiec``, so SCC maps there too; codes with no
# counterpart among the seven (inflammatory, other, uncertain) map to None and never train it.
CLASSIFIER_CLASS: Mapping[DiagnosisCode, str | None] = MappingProxyType(
    {
        DiagnosisCode.MELANOMA: "mel",
        DiagnosisCode.BCC: "bcc",
        DiagnosisCode.SCC: "akiec",
        DiagnosisCode.AK_BOWEN: "akiec",
        DiagnosisCode.NAEVUS: "nv",
        DiagnosisCode.SEBORRHOEIC_KERATOSIS: "bkl",
        DiagnosisCode.DERMATOFIBROMA: "df",
        DiagnosisCode.VASCULAR: "vasc",
        DiagnosisCode.OTHER_BENIGN: None,
        DiagnosisCode.OTHER_MALIGNANT: None,
        DiagnosisCode.INFLAMMATORY: None,
        DiagnosisCode.UNCERTAIN: None,
    }
)

_MALIGNANT = frozenset(
    {
        DiagnosisCode.MELANOMA,
        DiagnosisCode.BCC,
        DiagnosisCode.SCC,
        DiagnosisCode.AK_BOWEN,
        DiagnosisCode.OTHER_MALIGNANT,
    }
)


def is_malignant(code: DiagnosisCode) -> bool | None:
    """Whether ``code`` is a cancer in the classifier's sense (``mel + bcc + akiec``).

    ``uncertain`` answers ``None``: it says the question is still open, so a figure must leave
    the case out rather than count it either way.
    """
    if code == DiagnosisCode.UNCERTAIN:
        return None
    return code in _MALIGNANT


@dataclass(frozen=True)
class ReferenceDiagnosis:
    """The diagnosis a case is judged against, and where it came from.

    ``source`` is an :class:`OutcomeSource` value or ``"expert_report"`` (the validated report).
    """

    code: DiagnosisCode
    source: str  # "histology" | "consultation" | "follow_up" | "expert_report"


EXPERT_REPORT_SOURCE = "expert_report"
_SOURCE_RANK = {
    OutcomeSource.HISTOLOGY: 0,
    OutcomeSource.CONSULTATION: 1,
    OutcomeSource.FOLLOW_UP: 2,
}


def reference_diagnosis(
    outcomes: Sequence[tuple[DiagnosisCode, OutcomeSource, date]],
    validated_report_code: DiagnosisCode | None,
) -> ReferenceDiagnosis | None:
    """The best evidence of what a lesion is, or ``None`` when there is none yet.

    Histology outranks a consultation, which outranks follow-up, which outranks the validated
    expert report; within one source the latest outcome wins (a second biopsy corrects the first).
    ``uncertain`` is never a reference: it says the answer is not known, so the next source down
    is used instead. ``outcomes`` are ``(code, source, date)`` triples in any order.
    """
    known = [
        (code, OutcomeSource(source), when)
        for code, source, when in outcomes
        if code != DiagnosisCode.UNCERTAIN
    ]
    if known:
        # Lowest rank first, then the latest date; ``max`` on (-rank, date) picks exactly that.
        code, source, _ = max(known, key=lambda outcome: (-_SOURCE_RANK[outcome[1]], outcome[2]))
        return ReferenceDiagnosis(code=DiagnosisCode(code), source=source.value)
    if validated_report_code is not None and validated_report_code != DiagnosisCode.UNCERTAIN:
        return ReferenceDiagnosis(
            code=DiagnosisCode(validated_report_code), source=EXPERT_REPORT_SOURCE
        )
    return None
