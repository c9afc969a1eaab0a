"""One validated case as rows of a pseudonymised, derm-dev style training set."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from pipeline.dataset_export import (
    METADATA_COLUMNS,
    CaseFacts,
    LeftOut,
    PhotoFacts,
    Tally,
    age_band,
    export_case,
    month_of,
    pseudonym,
)
from pipeline.diagnosis import DiagnosisCode, ReferenceDiagnosis

KEY = b"k" * 32

QUESTIONNAIRE: dict[str, Any] = {
    "patient_pseudonym": "PAT-0042",
    "age": 58,
    "sex": "female",
    "fitzpatrick": "II",
    "body_site": "back",
    "duration": "6_12_months",
    "clinical_question": "Lésion pigmentée de Mme Dupont, avis ?",
    "treatments": "Doliprane",
    "allergies": "pénicilline",
}


def photo(photo_id: int, kind: str = "close_up", ok: bool | None = True) -> PhotoFacts:
    return PhotoFacts(photo_id, kind, f"{photo_id:064x}", ok, "dermoscopic")


def case(
    *,
    case_id: int = 7,
    code: DiagnosisCode | None = DiagnosisCode.MELANOMA,
    source: str = "histology",
    photos: tuple[PhotoFacts, ...] = (photo(1), photo(2, "dermoscopy")),
    **answers: Any,
) -> CaseFacts:
    return CaseFacts(
        case_id=case_id,
        requester_id="dr-martin",
        centre="crd-lyon",
        submitted_at=datetime(2026, 3, 14, 9, 26, tzinfo=UTC),
        questionnaire={**QUESTIONNAIRE, **answers},
        photos=photos,
        reference=None if code is None else ReferenceDiagnosis(code, source),
    )


def test_a_histology_confirmed_melanoma_gives_one_row_per_photo_in_derm_devs_words() -> None:
    export = export_case(case(), KEY)
    assert export.case_left_out is None and export.photos_left_out == ()
    rows = [image.row for image in export.images]
    assert [image.source_sha256 for image in export.images] == [f"{1:064x}", f"{2:064x}"]
    first = rows[0]
    assert (first.dx, first.malignant, first.dx_type, first.confirmation) == (
        "mel", 1, "histo", "histology"
    )  # fmt: skip
    assert (first.age, first.sex, first.localization, first.fitzpatrick) == (
        55,
        "female",
        "back",
        "II",
    )
    assert (first.photo_domain, first.photo_kind, first.centre) == (
        "dermoscopic",
        "close_up",
        "crd-lyon",
    )
    assert (first.month, first.dataset) == ("2026-03", "dermtriage-crd-lyon")
    assert rows[0].lesion_id == rows[1].lesion_id  # two photos of one lesion
    assert rows[0].image_id != rows[1].image_id
    assert len(first.as_csv_row()) == len(METADATA_COLUMNS)


def test_nothing_that_names_or_dates_a_person_reaches_a_row() -> None:
    row = export_case(case(), KEY).images[0].row.as_csv_row()
    text = "|".join(str(value) for value in row)
    for secret in ("PAT-0042", "Dupont", "Doliprane", "pénicilline", "dr-martin", "2026-03-14"):
        assert secret not in text
    assert 58 not in row and 7 not in row  # the exact age, the case id


@pytest.mark.parametrize(
    ("code", "source", "dx", "dx_type"),
    [
        (DiagnosisCode.SCC, "histology", "akiec", "histo"),  # HAM10000 files SCC under akiec
        (DiagnosisCode.NAEVUS, "follow_up", "nv", "follow_up"),
        (DiagnosisCode.SEBORRHOEIC_KERATOSIS, "consultation", "bkl", "consensus"),
        (DiagnosisCode.DERMATOFIBROMA, "expert_report", "df", "consensus"),
    ],
)
def test_the_reference_diagnosis_maps_to_the_classifiers_class_and_derm_devs_dx_type(
    code: DiagnosisCode, source: str, dx: str, dx_type: str
) -> None:
    row = export_case(case(code=code, source=source), KEY).images[0].row
    assert (row.dx, row.dx_type, row.confirmation) == (dx, dx_type, source)
    assert row.malignant == int(dx in {"mel", "bcc", "akiec"})


def test_cases_without_a_class_are_left_out_with_the_reason() -> None:
    assert export_case(case(code=None), KEY).case_left_out == LeftOut.no_reference_diagnosis
    for code in (DiagnosisCode.INFLAMMATORY, DiagnosisCode.OTHER_BENIGN,
                 DiagnosisCode.OTHER_MALIGNANT):  # fmt: skip
        export = export_case(case(code=code), KEY)
        assert export.case_left_out == LeftOut.diagnosis_without_class and not export.images


def test_overview_refused_and_missing_photos_are_left_out_one_by_one() -> None:
    photos = (photo(1), photo(2, "wide"), photo(3, ok=False), photo(4), photo(5, ok=None))
    export = export_case(case(photos=photos), KEY, missing=frozenset({f"{4:064x}"}))
    assert [i.source_sha256 for i in export.images] == [f"{1:064x}", f"{5:064x}"]
    assert export.photos_left_out == (
        LeftOut.overview_photo, LeftOut.quality_refused, LeftOut.missing_file
    )  # fmt: skip
    nothing = export_case(case(photos=(photo(2, "wide"),)), KEY)
    assert nothing.case_left_out == LeftOut.no_usable_photo


def test_identifiers_are_stable_keyed_and_a_follow_up_is_the_same_lesion() -> None:
    first = export_case(case(case_id=7), KEY).images[0].row
    follow_up = export_case(case(case_id=99, photos=(photo(11),)), KEY).images[0].row
    other_site = export_case(case(case_id=100, photos=(photo(12),), body_site="face"), KEY)
    assert follow_up.lesion_id == first.lesion_id
    assert other_site.images[0].row.lesion_id != first.lesion_id
    assert export_case(case(), KEY).images[0].row == first  # stable from one export to the next
    assert export_case(case(), b"another key of 32 bytes........").images[0].row.lesion_id != (
        first.lesion_id
    )
    assert pseudonym(KEY, "lesion", 1) != pseudonym(KEY, "photo", 1)
    with pytest.raises(ValueError):
        pseudonym(b"", "lesion", 1)


def test_dates_keep_the_month_and_ages_five_years() -> None:
    assert month_of(datetime(2026, 12, 31, 23, 59, tzinfo=UTC)) == "2026-12"
    assert [age_band(a) for a in (0, 4, 5, 58, 84, 85, 103)] == [0, 0, 5, 55, 80, 85, 85]
    assert age_band(None) is None and age_band("") is None
    with pytest.raises(ValueError):
        age_band(-1)


def test_the_tally_counts_what_went_in_and_why_the_rest_did_not() -> None:
    tally = Tally()
    tally.add(export_case(case(photos=(photo(1), photo(2, "wide"))), KEY))
    tally.add(export_case(case(code=DiagnosisCode.INFLAMMATORY), KEY))
    tally.add(export_case(case(code=None), KEY))
    summary = tally.summary()
    assert (summary["cases"], summary["images"]) == (1, 1)
    assert summary["images_per_class"] == {"mel": 1}
    left = summary["left_out"]
    assert isinstance(left, dict)
    assert left["cases"] == {"diagnosis_without_class": 1, "no_reference_diagnosis": 1}
    assert left["photos"] == {"overview_photo": 1}
    assert set(left["meaning"]) == {reason.value for reason in LeftOut}
