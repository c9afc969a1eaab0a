"""The expert's report: coded diagnosis and conduct validation, and the FHIR R4 export."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from pipeline.diagnosis import DiagnosisCode
from pipeline.report import (
    Conduct,
    Practitioner,
    ReportContent,
    ReportError,
    conduct_sentence,
    fhir_diagnostic_report,
    parse_report,
)

SUBMITTED = datetime(2025, 3, 3, 9, 30, tzinfo=UTC)
ISSUED = datetime(2025, 3, 4, 16, 0, tzinfo=UTC)


def test_each_conduct_needs_exactly_the_delay_it_speaks_of() -> None:
    sk, nv = {"diagnosis_code": "seborrhoeic_keratosis"}, {"diagnosis_code": "naevus"}
    assert parse_report({"conduct": "reassure", "text": "Kératose séborrhéique typique.", **sk})
    assert parse_report({"conduct": "monitor", "interval": "6", "text": "À surveiller.", **nv})
    with pytest.raises(ReportError) as info:
        parse_report({"conduct": "monitor", "text": "Naevus à surveiller.", **nv}, lang="en")
    assert info.value.errors == {"interval": "A delay between 1 and 24 is required."}
    with pytest.raises(ReportError) as info:
        parse_report({"conduct": "consultation", "interval": 30, "text": "Voir vite.", **nv})
    assert info.value.errors == {"interval": "Délai entre 1 et 12 requis."}
    with pytest.raises(ReportError) as info:
        parse_report(
            {
                "conduct": "urgent",
                "interval": 2,
                "text": "Exérèse rapide.",
                "diagnosis_code": "bcc",
            },
            lang="en",
        )
    assert info.value.errors == {"interval": "This conduct takes no delay."}


def test_missing_conduct_and_short_text_are_reported_by_field() -> None:
    with pytest.raises(ReportError) as info:
        parse_report({"conduct": "", "text": "ok", "diagnosis_code": "bcc"}, lang="en")
    assert set(info.value.errors) == {"conduct", "text"}


def test_a_new_report_needs_a_coded_diagnosis_from_the_list() -> None:
    content = parse_report(
        {"conduct": "urgent", "text": "Exérèse rapide.", "diagnosis_code": "scc"}
    )
    assert content.diagnosis_code is DiagnosisCode.SCC
    for missing in ({}, {"diagnosis_code": ""}, {"diagnosis_code": None}):
        with pytest.raises(ReportError) as info:
            parse_report({"conduct": "urgent", "text": "Exérèse rapide.", **missing}, lang="en")
        assert info.value.errors == {"diagnosis_code": "Choose the diagnosis from the list."}
    with pytest.raises(ReportError) as info:
        parse_report({"conduct": "urgent", "text": "Exérèse rapide.", "diagnosis_code": "mole"})
    assert info.value.errors == {"diagnosis_code": "Choisissez le diagnostic dans la liste."}


def test_the_missing_code_is_reported_with_the_other_field_errors() -> None:
    with pytest.raises(ReportError) as info:
        parse_report({"conduct": "reassure", "text": "ok"})
    assert set(info.value.errors) == {"diagnosis_code", "text"}


def test_conduct_sentences() -> None:
    assert conduct_sentence(Conduct.consultation, 4, "fr") == (
        "Consultation dermatologique sous 4 semaines"
    )
    assert conduct_sentence(Conduct.monitor, 3, "en") == "Monitor and re-send photos in 3 months"
    assert conduct_sentence(Conduct.urgent, None, "en") == "Urgent consultation or excision"


def build(validated: bool, pdf: bytes | None = None) -> dict:
    content = parse_report(
        {
            "conduct": "consultation",
            "interval": 2,
            "diagnosis": "Suspicion de mélanome",
            "diagnosis_code": "melanoma",
            "text": "Lésion asymétrique, polychrome. Exérèse à prévoir.",
        }
    )
    return fhir_diagnostic_report(
        case_id=42,
        patient_pseudonym="PAT-0042",
        submitted_at=SUBMITTED,
        issued_at=ISSUED,
        content=content,
        author=Practitioner("u-reader", "Dr Bernard", rpps="10100000001"),
        validator=Practitioner("u-senior", "Pr Dubois") if validated else None,
        photo_count=2,
        pdf=pdf,
    )


def test_the_fhir_report_is_final_only_once_validated() -> None:
    assert build(validated=False)["status"] == "preliminary"
    final = build(validated=True)
    assert final["status"] == "final"
    assert final["resultsInterpreter"] == [{"display": "Pr Dubois"}]


def test_the_fhir_report_carries_conduct_pseudonym_and_no_identity() -> None:
    resource = build(validated=True, pdf=b"%PDF-1.4 test")
    assert resource["resourceType"] == "DiagnosticReport"
    assert resource["subject"]["identifier"]["value"] == "PAT-0042"
    assert resource["conclusionCode"][1]["coding"][0]["code"] == "consultation"
    delay = resource["conclusionCode"][1]["coding"][0]["extension"][0]["valueQuantity"]
    assert delay == {
        "value": 2,
        "unit": "weeks",
        "system": "http://unitsofmeasure.org",
        "code": "wk",
    }
    assert resource["effectiveDateTime"] == "2025-03-03T09:30:00+00:00"
    assert base64.b64decode(resource["presentedForm"][0]["data"]) == b"%PDF-1.4 test"
    assert resource["text"]["div"].endswith("<p>2 photo(s) examinée(s)</p></div>")
    json.dumps(resource)  # plain JSON all the way down


def test_the_fhir_report_validates_against_the_fhir_models() -> None:
    from fhir.resources.R4B.diagnosticreport import DiagnosticReport

    model = DiagnosticReport.model_validate(build(validated=True, pdf=b"%PDF"))
    assert model.status == "final"
    assert model.conclusionCode[0].coding[0].system == "http://snomed.info/sct"
    assert model.conclusionCode[1].coding[0].code == "consultation"


def test_the_coded_diagnosis_is_the_first_conclusion_code_in_snomed_ct() -> None:
    resource = build(validated=True)
    assert resource["conclusionCode"][0] == {
        "coding": [
            {
                "system": "http://snomed.info/sct",
                "code": "93655004",
                "display": "Malignant melanoma of skin",
            }
        ],
        "text": "Malignant melanoma of skin",
    }
    assert resource["conclusion"].startswith("Malignant melanoma of skin. Suspicion de mélanome.")


def test_the_diagnosis_text_speaks_the_callers_language() -> None:
    content = parse_report(
        {"conduct": "reassure", "text": "Rien à faire.", "diagnosis_code": "bcc"}
    )
    resource = fhir_diagnostic_report(
        case_id=7,
        patient_pseudonym="P-7",
        submitted_at=SUBMITTED,
        issued_at=ISSUED,
        content=content,
        author=Practitioner("a", "A"),
        validator=None,
        diagnosis_label="Carcinome basocellulaire",
    )
    assert resource["conclusionCode"][0]["text"] == "Carcinome basocellulaire"
    assert resource["conclusionCode"][0]["coding"][0]["code"] == "254701007"
    assert resource["conclusion"].startswith("Carcinome basocellulaire. Rassurer")


def test_a_report_written_before_coded_diagnoses_still_exports_with_its_conduct_only() -> None:
    old = ReportContent(conduct="reassure", text="Kératose séborrhéique typique.")
    resource = fhir_diagnostic_report(
        case_id=8,
        patient_pseudonym="P-8",
        submitted_at=SUBMITTED,
        issued_at=ISSUED,
        content=old,
        author=Practitioner("a", "A"),
        validator=None,
    )
    assert [c["coding"][0]["code"] for c in resource["conclusionCode"]] == ["reassure"]


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        fhir_diagnostic_report(
            case_id=1,
            patient_pseudonym="P-1",
            submitted_at=datetime(2025, 1, 1),
            issued_at=ISSUED,
            content=parse_report(
                {"conduct": "reassure", "text": "Rien d'inquiétant.", "diagnosis_code": "naevus"}
            ),
            author=Practitioner("a", "A"),
            validator=None,
        )
