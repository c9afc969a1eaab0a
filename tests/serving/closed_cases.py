"""Closed, validated cases written straight into a real database, for the export's tests.

The export only reads, so its tests build the rows the workflow would have left (case, photos in
the real photo store, the champion's scores with the modality verdict, a validated report with
its coded diagnosis, outcomes) without replaying the workflow for each of dozens of cases.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from serving.db.models import Case, Outcome, Photo, Report, Score
from serving.storage import PhotoStore

#: derm-dev's classes as the expert's coded diagnosis would name them.
CODE_OF_CLASS = {
    "mel": "melanoma",
    "bcc": "bcc",
    "akiec": "ak_bowen",
    "bkl": "seborrhoeic_keratosis",
    "df": "dermatofibroma",
    "nv": "naevus",
    "vasc": "vascular",
}

SUBMITTED = datetime(2026, 3, 14, 9, 26, tzinfo=UTC)


def add_closed_case(
    session: Session,
    store: PhotoStore,
    photos: list[tuple[bytes, str]],
    *,
    report_code: str | None,
    consent: bool = True,
    validated: bool = True,
    outcomes: tuple[tuple[str, str, date], ...] = (),
    patient: str = "PAT-0042",
    body_site: str = "back",
    requester: tuple[str, str] = ("dr-martin", "Dr Claire Martin"),
    submitted_at: datetime = SUBMITTED,
    quality_ok: bool = True,
    domain: str = "dermoscopic",
) -> Case:
    """A closed case whose report carries ``report_code``; ``photos`` are (bytes, kind)."""
    questionnaire: dict[str, Any] = {
        "patient_pseudonym": patient,
        "age": 58,
        "sex": "female",
        "fitzpatrick": "II",
        "body_site": body_site,
        "duration": "6_12_months",
        "clinical_question": "Lésion de Mme Dupont-Secret, avis ?",
        "treatments": "Traitement-Secret",
        "allergies": "",
    }
    closed = submitted_at + timedelta(days=3)
    case = Case(
        status="closed",
        submitted_at=submitted_at,
        updated_at=closed,
        requester_id=requester[0],
        requester_name=requester[1],
        requester_organisation="Cabinet médical des Lilas, Lyon",
        centre="crd-lyon",
        patient_pseudonym=patient,
        questionnaire=questionnaire,
        scoring_state="done",
        scored_at=submitted_at,
        first_read_at=submitted_at + timedelta(hours=5),
        closed_at=closed,
        reuse_consent=consent,
    )
    session.add(case)
    for position, (data, kind) in enumerate(photos):
        digest = store.put(data)
        photo = Photo(
            position=position, kind=kind, sha256=digest, mime="image/jpeg", width=224,
            height=224, size_bytes=len(data), thumbnail_sha256=digest, quality={},
            quality_acceptable=quality_ok, created_at=submitted_at,
        )  # fmt: skip
        case.photos.append(photo)
        session.flush()
        case.scores.append(
            Score(
                photo_id=photo.id, photo_position=position, model_version="test-model/1",
                p_malignant=0.3, uncertainty=0.1, predicted_class="nv",
                probabilities={"nv": 0.7}, superseded=False, created_at=submitted_at,
                role="champion", domain=domain,
            )
        )  # fmt: skip
    case.report = Report(
        conduct="follow_up",
        interval=6,
        diagnosis="Texte libre du rapport secret",
        diagnosis_code=report_code,
        text="Compte rendu secret",
        author_id="dr-bernard",
        author_name="Dr Sophie Bernard",
        written_at=submitted_at + timedelta(days=1),
        validated_by_id="pr-dubois" if validated else None,
        validated_by_name="Pr Hélène Dubois" if validated else None,
        validated_at=submitted_at + timedelta(days=2) if validated else None,
    )
    for code, source, when in outcomes:
        case.outcomes.append(
            Outcome(
                diagnosis_code=code, outcome_date=when, source=source,
                recorded_by_id="dr-bernard", recorded_by_name="Dr Sophie Bernard",
                recorded_at=closed,
            )
        )  # fmt: skip
    session.flush()
    return case
