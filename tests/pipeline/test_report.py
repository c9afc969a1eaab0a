"""The expert's report: conduct validation and the FHIR R4 DiagnosticReport export."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from pipeline.report import (
    Conduct,
    Practitioner,
    ReportError,
    conduct_sentence,
    fhir_diagnostic_report,
    parse_report,
)

SUBMITTED = datetime(2025, 3, 3, 9, 30, tzinfo=UTC)
ISSUED = datetime(2025, 3, 4, 16, 0, tzinfo=UTC)


def test_each_conduct_needs_exactly_the_delay_it_speaks_of() -> None:
    assert parse_report({"conduct": "reassure", "text": "Kératose séborrhéique typique."})
    assert parse_report({"conduct": "monitor", "interval": "6", "text": "Naevus à surveiller."})
    with pytest.raises(ReportError) as info:
        parse_report({"conduct": "monitor", "text": "Naevus à surveiller."}, lang="en")
    assert info.value.errors == {"interval": "A delay between 1 and 24 is required."}
    with pytest.raises(ReportError) as info:
        parse_report({"conduct": "consultation", "interval": 30, "text": "Voir rapidement."})
    assert info.value.errors == {"interval": "Délai entre 1 et 12 requis."}
    with pytest.raises(ReportError) as info:
        parse_report({"conduct": "urgent", "interval": 2, "text": "Exérèse rapide."}, lang="en")
    assert info.value.errors == {"interval": "This conduct takes no delay."}


def test_missing_conduct_and_short_text_are_reported_by_field() -> None:
    with pytest.raises(ReportError) as info:
        parse_report({"conduct": "", "text": "ok"}, lang="en")
    assert set(info.value.errors) == {"conduct", "text"}


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
    assert resource["conclusionCode"][0]["coding"][0]["code"] == "consultation"
    delay = resource["conclusionCode"][0]["coding"][0]["extension"][0]["valueQuantity"]
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
    assert model.conclusionCode[0].coding[0].code == "consultation"


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        fhir_diagnostic_report(
            case_id=1,
            patient_pseudonym="P-1",
            submitted_at=datetime(2025, 1, 1),
            issued_at=ISSUED,
            content=parse_report({"conduct": "reassure", "text": "Rien d'inquiétant."}),
            author=Practitioner("a", "A"),
            validator=None,
        )
