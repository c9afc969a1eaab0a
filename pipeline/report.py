"""The expert's answer: the conduct to hold, and its export as an HL7 FHIR R4 DiagnosticReport.

A report states a coded diagnosis (:mod:`pipeline.diagnosis`: required for every new report, so
outcomes and figures can be counted; reports written before it have none), one of four conducts
with the delay it needs, plus free text:

- ``reassure``: benign, nothing to do;
- ``monitor``: monitor and re-send photos in ``interval`` months (1-24);
- ``consultation``: see a dermatologist within ``interval`` weeks (1-12);
- ``urgent``: urgent consultation or excision (no delay: as soon as possible).

:func:`fhir_diagnostic_report` builds the FHIR JSON from plain values (no database, no clock), so
the same function serves the API, the PDF's companion export and the tests.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipeline.diagnosis import SNOMED_CT, SNOMED_CT_SYSTEM, DiagnosisCode

Lang = Literal["fr", "en"]

CONDUCT_SYSTEM = "urn:dermtriage:conduct"
PSEUDONYM_SYSTEM = "urn:dermtriage:patient-pseudonym"
CASE_SYSTEM = "urn:dermtriage:case"
RPPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"  # French RPPS identifiers (ANS)
LOINC = "http://loinc.org"
CONSULT_NOTE_LOINC = "11488-4"  # "Consult note"


class Conduct(StrEnum):
    reassure = "reassure"
    monitor = "monitor"
    consultation = "consultation"
    urgent = "urgent"

    @property
    def interval_unit(self) -> str | None:
        """``months`` or ``weeks`` when this conduct needs a delay, else ``None``."""
        return {Conduct.monitor: "months", Conduct.consultation: "weeks"}.get(self)

    @property
    def leads_to_consultation(self) -> bool:
        """Whether the patient is to be seen in person (the activity statistics count this)."""
        return self in (Conduct.consultation, Conduct.urgent)


INTERVAL_LIMITS: dict[Conduct, tuple[int, int]] = {
    Conduct.monitor: (1, 24),
    Conduct.consultation: (1, 12),
}

CONDUCT_LABELS: dict[Lang, dict[Conduct, str]] = {
    "fr": {
        Conduct.reassure: "Rassurer",
        Conduct.monitor: "Surveiller et renvoyer des photos",
        Conduct.consultation: "Consultation dermatologique",
        Conduct.urgent: "Consultation urgente ou exérèse",
    },
    "en": {
        Conduct.reassure: "Reassure",
        Conduct.monitor: "Monitor and re-send photos",
        Conduct.consultation: "Dermatology consultation",
        Conduct.urgent: "Urgent consultation or excision",
    },
}


class ReportContent(BaseModel):
    """What the expert writes. ``interval`` is required exactly when the conduct has a delay.

    ``diagnosis_code`` may be ``None`` here only so that reports stored before the coded
    diagnosis existed can still be exported; :func:`parse_report`, through which every new
    report passes, requires it.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    conduct: Conduct
    diagnosis_code: DiagnosisCode | None = None
    interval: int | None = None
    diagnosis: str = Field(default="", max_length=300)
    text: str = Field(min_length=10, max_length=5000)

    @model_validator(mode="after")
    def _interval_matches_conduct(self) -> ReportContent:
        limits = INTERVAL_LIMITS.get(self.conduct)
        if limits is None:
            if self.interval is not None:
                raise ValueError("interval_not_applicable")
            return self
        low, high = limits
        if self.interval is None or not low <= self.interval <= high:
            raise ValueError(f"interval_out_of_range:{low}:{high}")
        return self


class ReportError(ValueError):
    """A report that cannot be saved; ``errors`` maps field -> message."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


_MESSAGES = {
    "missing": {"fr": "Champ obligatoire.", "en": "This field is required."},
    "enum": {"fr": "Choisissez une conduite à tenir.", "en": "Choose a conduct."},
    "diagnosis_code": {
        "fr": "Choisissez le diagnostic dans la liste.",
        "en": "Choose the diagnosis from the list.",
    },
    "string_too_short": {
        "fr": "Trop court (au moins {min_length} caractères).",
        "en": "Too short (at least {min_length} characters).",
    },
    "string_too_long": {
        "fr": "Trop long ({max_length} caractères au plus).",
        "en": "Too long (at most {max_length} characters).",
    },
    "int_parsing": {"fr": "Nombre entier attendu.", "en": "A whole number is expected."},
    "interval_not_applicable": {
        "fr": "Pas de délai pour cette conduite.",
        "en": "This conduct takes no delay.",
    },
    "interval_out_of_range": {
        "fr": "Délai entre {low} et {high} requis.",
        "en": "A delay between {low} and {high} is required.",
    },
}


def parse_report(data: dict[str, Any], lang: Lang = "fr") -> ReportContent:
    """Validate a new report's fields (an empty ``interval`` string counts as none).

    The coded diagnosis is required: a client that does not send one (written before it existed)
    gets a ``diagnosis_code`` error naming the list, never a report saved without it.
    """
    cleaned = dict(data)
    if cleaned.get("interval") in ("", None):
        cleaned["interval"] = None
    if cleaned.get("diagnosis_code") in ("", None):
        cleaned.pop("diagnosis_code", None)
    errors: dict[str, str] = {}
    if "diagnosis_code" not in cleaned:
        errors["diagnosis_code"] = _MESSAGES["diagnosis_code"][lang]
    try:
        content = ReportContent.model_validate(cleaned)
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"]) or "interval"
            kind = error["type"]
            if field == "diagnosis_code":
                errors[field] = _MESSAGES["diagnosis_code"][lang]
                continue
            if kind == "value_error":
                code, *params = str(error["ctx"]["error"]).split(":")
                template = _MESSAGES.get(code, _MESSAGES["missing"])[lang]
                message = template.format(**dict(zip(("low", "high"), params, strict=False)))
                errors.setdefault("interval", message)
                continue
            template = _MESSAGES.get(kind, {"fr": "Valeur invalide.", "en": "Invalid value."})
            errors.setdefault(field, template[lang].format(**(error.get("ctx") or {})))
        raise ReportError(errors) from exc
    if errors:
        raise ReportError(errors)
    return content


def conduct_sentence(conduct: Conduct, interval: int | None, lang: Lang = "fr") -> str:
    """The conduct as one sentence for the GP ("Consultation dermatologique sous 4 semaines")."""
    base = CONDUCT_LABELS[lang][conduct]
    if conduct is Conduct.monitor and interval is not None:
        return f"{base} dans {interval} mois" if lang == "fr" else f"{base} in {interval} months"
    if conduct is Conduct.consultation and interval is not None:
        unit = "semaine" if interval == 1 else "semaines"
        if lang == "fr":
            return f"{base} sous {interval} {unit}"
        return f"{base} within {interval} week{'s' if interval != 1 else ''}"
    return base


@dataclass(frozen=True)
class Practitioner:
    """A person named in the report (author or validator)."""

    id: str
    name: str
    rpps: str | None = None

    def reference(self) -> dict[str, Any]:
        ref: dict[str, Any] = {"display": self.name}
        if self.rpps:
            ref["identifier"] = {"system": RPPS_SYSTEM, "value": self.rpps}
        return ref


def _instant(moment: datetime) -> str:
    """FHIR ``instant``: an ISO 8601 timestamp that must carry its time zone."""
    if moment.tzinfo is None:
        raise ValueError("FHIR instants need an aware datetime")
    return moment.isoformat(timespec="seconds")


def fhir_diagnostic_report(
    *,
    case_id: int,
    patient_pseudonym: str,
    submitted_at: datetime,
    issued_at: datetime,
    content: ReportContent,
    author: Practitioner,
    validator: Practitioner | None,
    photo_count: int = 0,
    pdf: bytes | None = None,
    lang: Lang = "fr",
    diagnosis_label: str | None = None,
) -> dict[str, Any]:
    """An HL7 FHIR R4 ``DiagnosticReport`` resource for the patient's record, as a JSON dict.

    The coded diagnosis, when the report has one, is the first ``conclusionCode``: its SNOMED CT
    concept (system ``http://snomed.info/sct``), with ``diagnosis_label`` (the code's words in
    ``lang``, from the caller's catalogue) as its text, or the SNOMED CT display without one.
    The conduct follows as a second ``conclusionCode``.

    The status is ``final`` once a senior has validated the report, else ``preliminary``. The
    patient is referred to by pseudonym only. It carries the experts' answer and nothing of the
    model's output (score, version): it goes to the requesting GP and the patient's record, and a
    GP never sees the model's output (docs/access.md). ``pdf``, when given, is embedded as the
    ``presentedForm``.
    """
    sentence = conduct_sentence(content.conduct, content.interval, lang)
    conclusion = sentence if not content.diagnosis else f"{content.diagnosis}. {sentence}"
    conclusion_codes: list[dict[str, Any]] = []
    if content.diagnosis_code is not None:
        concept, display = SNOMED_CT[content.diagnosis_code]
        label = diagnosis_label or display
        conclusion = f"{label}. {conclusion}"
        conclusion_codes.append(
            {
                "coding": [{"system": SNOMED_CT_SYSTEM, "code": concept, "display": display}],
                "text": label,
            }
        )
    if content.text:
        conclusion = f"{conclusion}. {content.text}"
    unit = content.conduct.interval_unit
    coding: dict[str, Any] = {
        "system": CONDUCT_SYSTEM,
        "code": content.conduct.value,
        "display": CONDUCT_LABELS["en"][content.conduct],
    }
    conclusion_codes.append({"coding": [coding], "text": sentence})
    resource: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": f"dermtriage-case-{case_id}",
        "language": "fr-FR" if lang == "fr" else "en",
        "identifier": [{"system": CASE_SYSTEM, "value": str(case_id)}],
        "status": "final" if validator is not None else "preliminary",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v2-0074",
                        "code": "OTH",
                        "display": "Other",
                    }
                ],
                "text": "Télédermatologie" if lang == "fr" else "Teledermatology",
            }
        ],
        "code": {
            "coding": [{"system": LOINC, "code": CONSULT_NOTE_LOINC, "display": "Consult note"}],
            "text": "Avis de télédermatologie" if lang == "fr" else "Teledermatology opinion",
        },
        "subject": {
            "identifier": {"system": PSEUDONYM_SYSTEM, "value": patient_pseudonym},
            "display": patient_pseudonym,
        },
        "effectiveDateTime": _instant(submitted_at),
        "issued": _instant(issued_at),
        "performer": [author.reference()],
        "conclusion": conclusion,
        "conclusionCode": conclusion_codes,
    }
    if validator is not None:
        resource["resultsInterpreter"] = [validator.reference()]
    if unit is not None and content.interval is not None:
        coding["extension"] = [
            {
                "url": "urn:dermtriage:conduct-delay",
                "valueQuantity": {
                    "value": content.interval,
                    "unit": unit,
                    "system": "http://unitsofmeasure.org",
                    "code": "mo" if unit == "months" else "wk",
                },
            }
        ]
    notes: list[str] = []
    if photo_count:
        notes.append(
            f"{photo_count} photo(s) examinée(s)" if lang == "fr" else f"{photo_count} photo(s)"
        )
    if notes:
        resource["text"] = {
            "status": "generated",
            "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>'
            + _escape(conclusion)
            + "</p>"
            + "".join(f"<p>{_escape(n)}</p>" for n in notes)
            + "</div>",
        }
    if pdf is not None:
        resource["presentedForm"] = [
            {
                "contentType": "application/pdf",
                "language": resource["language"],
                "data": base64.b64encode(pdf).decode("ascii"),
                "title": f"dermtriage-case-{case_id}.pdf",
            }
        ]
    return resource


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def summary_lines(content: ReportContent, lang: Lang = "fr") -> Sequence[str]:
    """The report's body as lines (conduct, diagnosis, text) for the PDF and the GP page."""
    lines = [conduct_sentence(content.conduct, content.interval, lang)]
    if content.diagnosis:
        lines.append(content.diagnosis)
    lines.append(content.text)
    return lines
