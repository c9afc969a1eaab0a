"""The request questionnaire: what is accepted and the field-level errors for what is not."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.questionnaire import (
    BodySite,
    Fitzpatrick,
    QuestionnaireError,
    from_form,
    label,
    parse_questionnaire,
)


def valid() -> dict[str, Any]:
    return {
        "patient_pseudonym": "PAT-2025-0042",
        "age": 63,
        "sex": "female",
        "fitzpatrick": "II",
        "body_site": "back",
        "duration": "6_12_months",
        "changed_size": True,
        "bleeding": False,
        "clinical_question": "Lésion pigmentée du dos qui grandit, mélanome ?",
        "treatments": "Ramipril",
        "allergies": "",
    }


def test_a_complete_questionnaire_is_accepted() -> None:
    q = parse_questionnaire(valid())
    assert q.fitzpatrick is Fitzpatrick.II
    assert q.body_site is BodySite.back
    assert q.recent_change and not q.itching


def test_every_faulty_field_is_reported_at_once_with_its_path() -> None:
    data = valid()
    data.update(age=150, fitzpatrick="VII", patient_pseudonym="Jean Dupont", clinical_question="?")
    del data["sex"]
    with pytest.raises(QuestionnaireError) as info:
        parse_questionnaire(data, lang="en")
    errors = info.value.errors
    assert set(errors) == {
        "age",
        "fitzpatrick",
        "patient_pseudonym",
        "clinical_question",
        "sex",
    }
    assert errors["age"] == "Must be at most 120."
    assert errors["sex"] == "This field is required."


def test_errors_are_in_french_by_default() -> None:
    data = valid()
    data["age"] = "abc"
    with pytest.raises(QuestionnaireError) as info:
        parse_questionnaire(data)
    assert info.value.errors == {"age": "Nombre entier attendu."}


def test_unknown_fields_are_refused_rather_than_silently_dropped() -> None:
    with pytest.raises(QuestionnaireError) as info:
        parse_questionnaire({**valid(), "patient_name": "Jean Dupont"})
    assert "patient_name" in info.value.errors


def test_a_requester_section_is_dropped_unread() -> None:
    """Who sends the request is the signed-in account: a body naming a colleague (name, RPPS,
    practice), even a malformed one, sets nothing; older clients that send it still work."""
    colleague = {"name": "Dr Paul Leroy", "rpps": "10109876543", "organisation": "MSP"}
    q = parse_questionnaire({**valid(), "requester": colleague})
    assert "requester" not in q.model_dump()
    assert parse_questionnaire({**valid(), "requester": "?"}) == parse_questionnaire(valid())


def test_an_html_form_maps_onto_the_questionnaire() -> None:
    form = {
        "patient_pseudonym": "PAT-7",
        "age": "41",
        "sex": "male",
        "fitzpatrick": "III",
        "body_site": "lower extremity",
        "duration": "1_5_years",
        "bleeding": "on",
        "clinical_question": "Naevus atypique de la jambe ?",
        "requester_name": "Dr Paul Leroy",
        "requester_rpps": "10109876543",
        "requester_organisation": "Maison de santé",
        "requester_email": "p.leroy@example.fr",
        "requester_phone": "01 23 45 67 89",
    }
    q = parse_questionnaire(from_form(form))
    assert q.age == 41 and q.bleeding and not q.changed_size
    # A forged form field naming someone is not part of the questionnaire: the identity is the
    # account's (serving.case_service.create_case).
    assert "requester" not in q.model_dump()


def test_answers_have_french_and_english_labels() -> None:
    assert label("body_site", "lower extremity", "fr") == "Membre inférieur"
    assert label("duration", "over_5_years", "en") == "Over 5 years"
