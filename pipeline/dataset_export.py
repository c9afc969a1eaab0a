"""A validated case as rows of a derm-dev style training set, pseudonymised.

The centre's own cases can train the classifier only if they look like derm-dev
(``metadata.csv`` + ``images/``) and carry nothing that names a person. This module decides, for
one case, which photos become rows and what each row says; the database and file walking live in
``serving/dataset_export.py``.

What a row keeps, and why nothing else:

- ``lesion_id``, ``image_id``: keyed hashes (HMAC-SHA256 with the installation's export key), not
  the case or photo id. Stable from one export to the next, so a lesion never lands in two splits
  when several exports are trained on together, and meaningless without the key, which stays
  with the centre. A lesion is one GP's patient pseudonym and body site: two requests about the
  same mole (a follow-up) are one lesion.
- ``dx``: the reference diagnosis (:func:`pipeline.diagnosis.reference_diagnosis`) mapped to the
  classifier's classes; ``dx_type`` how it was confirmed in derm-dev's words (``histo``,
  ``follow_up``, ``consensus``), ``confirmation`` in ours (``histology``, ``consultation``,
  ``follow_up``, ``expert_report``).
- ``age`` floored to five years (as HAM10000 gives it) and capped at 85; ``sex``;
  ``localization`` (the body site, derm-dev's vocabulary); ``fitzpatrick`` (the skin phototype,
  which derm-dev lacks and the subgroup figures need); ``photo_domain`` (what the modality check
  saw) and ``photo_kind``; ``centre``; ``month`` of submission (``YYYY-MM``, never a day).
- Never: names, RPPS numbers, the patient pseudonym, the clinical question, treatments,
  allergies, the report's text, or any date finer than the month.

Pure: no I/O, no clock, no settings.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum

from pipeline.diagnosis import CLASSIFIER_CLASS, ReferenceDiagnosis

#: The columns of ``metadata.csv``, in order: derm-dev's first, then what live cases add.
METADATA_COLUMNS: tuple[str, ...] = (
    "image_id",
    "lesion_id",
    "dx",
    "malignant",
    "dx_type",
    "confirmation",
    "age",
    "sex",
    "localization",
    "fitzpatrick",
    "photo_domain",
    "photo_kind",
    "centre",
    "month",
    "dataset",
)

#: derm-dev's ``dataset`` column names the collection an image came from: here
#: ``dermtriage-<centre>``, so a centre can be held out whole (``holdout_source``).
DATASET_NAME = "dermtriage"

#: The classes whose images count as malignant, as derm-dev's ``malignant`` column has them.
MALIGNANT_CLASSES = frozenset({"mel", "bcc", "akiec"})

#: How the reference was confirmed, in derm-dev's ``dx_type`` vocabulary. A consultation and the
#: validated expert report are both an expert's reading without histology: HAM10000's ``consensus``.
DX_TYPE: Mapping[str, str] = {
    "histology": "histo",
    "consultation": "consensus",
    "follow_up": "follow_up",
    "expert_report": "consensus",
}

#: Photo kinds that never become rows: an overview photo shows the body, not the lesion.
SKIPPED_KINDS = frozenset({"wide"})

AGE_BAND_YEARS = 5
AGE_CAP = 85


class LeftOut(StrEnum):
    """Why a case or a photo is not in the export (counted in the manifest)."""

    no_reference_diagnosis = "no_reference_diagnosis"
    diagnosis_without_class = "diagnosis_without_class"
    no_usable_photo = "no_usable_photo"
    overview_photo = "overview_photo"
    quality_refused = "quality_refused"
    missing_file = "missing_file"


#: What each reason means, in the manifest, for a reader who never saw this code.
LEFT_OUT_MEANING: Mapping[LeftOut, str] = {
    LeftOut.no_reference_diagnosis: "validated, but neither an outcome nor the report carries a "
    "coded diagnosis other than 'uncertain'",
    LeftOut.diagnosis_without_class: "the reference diagnosis has no classifier class "
    "(other benign, other malignant, inflammatory)",
    LeftOut.no_usable_photo: "every photo of the case was left out (reasons under 'photos')",
    LeftOut.overview_photo: "an overview photo (kind 'wide') shows the body, not the lesion",
    LeftOut.quality_refused: "the photo failed the quality checks at submission",
    LeftOut.missing_file: "the photo's file is missing from the photo store",
}


@dataclass(frozen=True)
class PhotoFacts:
    """What the export needs of one stored photo."""

    photo_id: int
    kind: str
    sha256: str
    quality_acceptable: bool | None
    domain: str | None  # the modality check's verdict on the champion's score, if scored


@dataclass(frozen=True)
class CaseFacts:
    """What the export needs of one consented, validated case (plain values, no ORM)."""

    case_id: int
    requester_id: str
    centre: str
    submitted_at: datetime
    questionnaire: Mapping[str, object]
    photos: Sequence[PhotoFacts]
    reference: ReferenceDiagnosis | None


@dataclass(frozen=True)
class ExportRow:
    """One line of ``metadata.csv``: the columns of :data:`METADATA_COLUMNS`."""

    image_id: str
    lesion_id: str
    dx: str
    malignant: int
    dx_type: str
    confirmation: str
    age: int | None
    sex: str
    localization: str
    fitzpatrick: str
    photo_domain: str
    photo_kind: str
    centre: str
    month: str
    dataset: str

    def as_csv_row(self) -> list[object]:
        values = asdict(self)
        return ["" if values[c] is None else values[c] for c in METADATA_COLUMNS]


@dataclass(frozen=True)
class ExportImage:
    """A row and the stored photo its image is copied from."""

    row: ExportRow
    source_sha256: str


@dataclass(frozen=True)
class CaseExport:
    """The decision for one case: its images, or why it is left out, and which photos were."""

    images: tuple[ExportImage, ...]
    case_left_out: LeftOut | None
    photos_left_out: tuple[LeftOut, ...]


def pseudonym(key: bytes, namespace: str, value: object, *, length: int = 16) -> str:
    """A stable identifier that reveals nothing without ``key``: HMAC-SHA256, hex, truncated.

    ``namespace`` keeps lesion and image identifiers apart even for equal inputs.
    """
    if not key:
        raise ValueError("an empty pseudonymisation key would make identifiers guessable")
    digest = hmac.new(key, f"{namespace}:{value}".encode(), hashlib.sha256).hexdigest()
    return digest[:length]


def month_of(moment: datetime) -> str:
    """``YYYY-MM``: the finest date an export keeps."""
    return f"{moment.year:04d}-{moment.month:02d}"


def age_band(age: object) -> int | None:
    """Age floored to five years and capped at 85 (HAM10000's own precision); None if unknown."""
    if age is None or age == "":
        return None
    years = int(age)  # type: ignore[call-overload]
    if years < 0:
        raise ValueError(f"negative age: {years}")
    return min(years // AGE_BAND_YEARS * AGE_BAND_YEARS, AGE_CAP)


def lesion_pseudonym(key: bytes, facts: CaseFacts) -> str:
    """One GP's patient and body site: a follow-up of the same lesion gets the same id."""
    q = facts.questionnaire
    lesion = f"{facts.requester_id}|{q.get('patient_pseudonym', '')}|{q.get('body_site', '')}"
    return "DTL_" + pseudonym(key, "lesion", lesion)


def export_case(
    facts: CaseFacts, key: bytes, *, missing: frozenset[str] = frozenset()
) -> CaseExport:
    """Decide what one case contributes: a row per usable photo, or the reason it adds none.

    ``missing`` names stored photos (by sha256) whose file the caller could not find.
    """
    photo_reasons = [_photo_left_out(photo, missing) for photo in facts.photos]
    left = tuple(reason for reason in photo_reasons if reason is not None)
    if facts.reference is None:
        return CaseExport((), LeftOut.no_reference_diagnosis, ())
    dx = CLASSIFIER_CLASS.get(facts.reference.code)
    if dx is None:
        return CaseExport((), LeftOut.diagnosis_without_class, ())
    usable = [p for p, reason in zip(facts.photos, photo_reasons, strict=True) if reason is None]
    if not usable:
        return CaseExport((), LeftOut.no_usable_photo, left)
    q = facts.questionnaire
    lesion_id = lesion_pseudonym(key, facts)
    images = tuple(
        ExportImage(
            row=ExportRow(
                image_id="DTI_" + pseudonym(key, "photo", photo.photo_id),
                lesion_id=lesion_id,
                dx=dx,
                malignant=int(dx in MALIGNANT_CLASSES),
                dx_type=DX_TYPE[facts.reference.source],
                confirmation=facts.reference.source,
                age=age_band(q.get("age")),
                sex=str(q.get("sex") or "unknown"),
                localization=str(q.get("body_site") or "unknown"),
                fitzpatrick=str(q.get("fitzpatrick") or ""),
                photo_domain=photo.domain or "unknown",
                photo_kind=photo.kind,
                centre=facts.centre,
                month=month_of(facts.submitted_at),
                dataset=f"{DATASET_NAME}-{facts.centre}",
            ),
            source_sha256=photo.sha256,
        )
        for photo in usable
    )
    return CaseExport(images, None, left)


def _photo_left_out(photo: PhotoFacts, missing: frozenset[str]) -> LeftOut | None:
    if photo.kind in SKIPPED_KINDS:
        return LeftOut.overview_photo
    if photo.quality_acceptable is False:
        return LeftOut.quality_refused
    if photo.sha256 in missing:
        return LeftOut.missing_file
    return None


@dataclass
class Tally:
    """Running counts for the manifest: what went in, and what was left out and why."""

    cases: int = 0
    images: int = 0
    cases_left_out: Counter[str] = field(default_factory=Counter)
    photos_left_out: Counter[str] = field(default_factory=Counter)
    classes: Counter[str] = field(default_factory=Counter)

    def add(self, export: CaseExport) -> None:
        self.photos_left_out.update(reason.value for reason in export.photos_left_out)
        if export.case_left_out is not None:
            self.cases_left_out[export.case_left_out.value] += 1
            return
        self.cases += 1
        self.images += len(export.images)
        self.classes.update(image.row.dx for image in export.images)

    def summary(self) -> dict[str, object]:
        """The manifest's counts: cases and images in, per class, and each reason left out."""
        return {
            "cases": self.cases,
            "images": self.images,
            "images_per_class": dict(sorted(self.classes.items())),
            "left_out": {
                "cases": dict(sorted(self.cases_left_out.items())),
                "photos": dict(sorted(self.photos_left_out.items())),
                "meaning": {reason.value: text for reason, text in LEFT_OUT_MEANING.items()},
            },
        }
