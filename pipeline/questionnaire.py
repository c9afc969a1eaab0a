"""The questionnaire a GP fills in with a teledermatology request, validated field by field.

A request is accepted whole or not at all: :func:`parse_questionnaire` either returns a valid
:class:`Questionnaire` or raises :class:`QuestionnaireError` whose ``errors`` maps each faulty field
(dotted path) to a short message in French or English saying what to fix.
The form, the JSON API and the demo seeding all go through this one model.

Who sends the request is not asked here: the requester's name, RPPS number and practice are
properties of the signed-in account (docs/access.md), so a GP cannot send a request in a
colleague's name. A ``requester`` section that a client still sends (:data:`ACCOUNT_FIELDS`) is
dropped unread, so older clients keep working and the body can never set it.

Pure: no I/O, no clock, no settings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Lang = Literal["fr", "en"]


class Sex(StrEnum):
    female = "female"
    male = "male"
    other = "other"


class Fitzpatrick(StrEnum):
    """Skin phototype (Fitzpatrick I-VI): how the skin reacts to the sun; informs melanoma risk."""

    I = "I"  # noqa: E741 - the phototype's own name
    II = "II"
    III = "III"
    IV = "IV"
    V = "V"
    VI = "VI"


class BodySite(StrEnum):
    """Body sites, the same vocabulary as the derm-dev metadata (``localization``)."""

    scalp = "scalp"
    face = "face"
    ear = "ear"
    neck = "neck"
    chest = "chest"
    abdomen = "abdomen"
    back = "back"
    trunk = "trunk"
    upper_extremity = "upper extremity"
    lower_extremity = "lower extremity"
    hand = "hand"
    foot = "foot"
    acral = "acral"
    genital = "genital"
    other = "other"


class Duration(StrEnum):
    """How long the lesion has been there, in the coarse bins a patient can actually answer."""

    under_1_month = "under_1_month"
    months_1_6 = "1_6_months"
    months_6_12 = "6_12_months"
    years_1_5 = "1_5_years"
    over_5_years = "over_5_years"
    unknown = "unknown"


LABELS: dict[str, dict[str, dict[str, str]]] = {
    "sex": {
        "fr": {"female": "Femme", "male": "Homme", "other": "Autre"},
        "en": {"female": "Female", "male": "Male", "other": "Other"},
    },
    "body_site": {
        "fr": {
            "scalp": "Cuir chevelu",
            "face": "Visage",
            "ear": "Oreille",
            "neck": "Cou",
            "chest": "Thorax",
            "abdomen": "Abdomen",
            "back": "Dos",
            "trunk": "Tronc",
            "upper extremity": "Membre supérieur",
            "lower extremity": "Membre inférieur",
            "hand": "Main",
            "foot": "Pied",
            "acral": "Paume / plante",
            "genital": "Région génitale",
            "other": "Autre",
        },
        "en": {
            "scalp": "Scalp",
            "face": "Face",
            "ear": "Ear",
            "neck": "Neck",
            "chest": "Chest",
            "abdomen": "Abdomen",
            "back": "Back",
            "trunk": "Trunk",
            "upper extremity": "Upper limb",
            "lower extremity": "Lower limb",
            "hand": "Hand",
            "foot": "Foot",
            "acral": "Palm / sole",
            "genital": "Genital area",
            "other": "Other",
        },
    },
    "duration": {
        "fr": {
            "under_1_month": "Moins d'un mois",
            "1_6_months": "1 à 6 mois",
            "6_12_months": "6 à 12 mois",
            "1_5_years": "1 à 5 ans",
            "over_5_years": "Plus de 5 ans",
            "unknown": "Inconnue",
        },
        "en": {
            "under_1_month": "Under a month",
            "1_6_months": "1 to 6 months",
            "6_12_months": "6 to 12 months",
            "1_5_years": "1 to 5 years",
            "over_5_years": "Over 5 years",
            "unknown": "Unknown",
        },
    },
}


def label(field: str, value: str, lang: Lang = "fr") -> str:
    """The human wording of an enumerated answer (``label("sex", "female", "fr") == "Femme"``)."""
    return LABELS.get(field, {}).get(lang, {}).get(value, value)


_PSEUDONYM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{2,39}$")

#: Sections that clients used to send and that are now the signed-in account's: dropped unread.
ACCOUNT_FIELDS = frozenset({"requester"})


class Questionnaire(BaseModel):
    """Everything the expert needs besides the photos. Booleans default to "no"."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    patient_pseudonym: str = Field(pattern=_PSEUDONYM.pattern)
    age: int = Field(ge=0, le=120)
    sex: Sex
    fitzpatrick: Fitzpatrick
    body_site: BodySite
    duration: Duration
    changed_size: bool = False
    changed_colour: bool = False
    changed_shape: bool = False
    bleeding: bool = False
    itching: bool = False
    personal_history_skin_cancer: bool = False
    family_history_skin_cancer: bool = False
    immunosuppression: bool = False
    treatments: str = Field(default="", max_length=1000)
    allergies: str = Field(default="", max_length=500)
    clinical_question: str = Field(min_length=10, max_length=2000)
    # The patient agreed that the photos may be reused to improve the tool. Default no: only an
    # explicit yes lets a validated case into a training set (``dermtriage dataset export``).
    # Stored on the case (``cases.reuse_consent``), not in its questionnaire JSON.
    reuse_consent: bool = False

    @property
    def recent_change(self) -> bool:
        """Any reported change in size, colour or shape (the "E" of ABCDE)."""
        return self.changed_size or self.changed_colour or self.changed_shape


class QuestionnaireError(ValueError):
    """A questionnaire that cannot be accepted; ``errors`` maps field path -> message."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


_MESSAGES: dict[str, dict[str, str]] = {
    "missing": {"fr": "Champ obligatoire.", "en": "This field is required."},
    "string_too_short": {
        "fr": "Trop court (au moins {min_length} caractères).",
        "en": "Too short (at least {min_length} characters).",
    },
    "string_too_long": {
        "fr": "Trop long ({max_length} caractères au plus).",
        "en": "Too long (at most {max_length} characters).",
    },
    "greater_than_equal": {"fr": "Doit être au moins {ge}.", "en": "Must be at least {ge}."},
    "less_than_equal": {"fr": "Doit être au plus {le}.", "en": "Must be at most {le}."},
    "int_parsing": {"fr": "Nombre entier attendu.", "en": "A whole number is expected."},
    "int_type": {"fr": "Nombre entier attendu.", "en": "A whole number is expected."},
    "int_from_float": {"fr": "Nombre entier attendu.", "en": "A whole number is expected."},
    "bool_parsing": {"fr": "Oui ou non attendu.", "en": "Yes or no expected."},
    "bool_type": {"fr": "Oui ou non attendu.", "en": "Yes or no expected."},
    "enum": {"fr": "Choisissez une valeur de la liste.", "en": "Choose a value from the list."},
    "extra_forbidden": {"fr": "Champ inconnu.", "en": "Unknown field."},
    "string_type": {"fr": "Texte attendu.", "en": "Text expected."},
    "model_type": {"fr": "Section attendue.", "en": "A section is expected."},
}

_PATTERN_MESSAGES: dict[str, dict[str, str]] = {
    "patient_pseudonym": {
        "fr": "3 à 40 caractères : lettres, chiffres, « . », « - » ou « _ » (pas le nom du "
        "patient).",
        "en": "3 to 40 characters: letters, digits, '.', '-' or '_' (not the patient's name).",
    },
}

_FALLBACK = {"fr": "Valeur invalide.", "en": "Invalid value."}


def field_errors(exc: ValidationError, lang: Lang = "fr") -> dict[str, str]:
    """Field path -> one message in ``lang`` for each error (the first one when several)."""
    errors: dict[str, str] = {}
    for error in exc.errors():
        path = ".".join(str(part) for part in error["loc"]) or "__root__"
        if path in errors:
            continue
        kind = error["type"]
        if kind == "string_pattern_mismatch":
            message = _PATTERN_MESSAGES.get(path, _FALLBACK)[lang]
        elif kind in _MESSAGES:
            message = _MESSAGES[kind][lang].format(**(error.get("ctx") or {}))
        else:
            message = _FALLBACK[lang]
        errors[path] = message
    return errors


def parse_questionnaire(data: Mapping[str, Any], lang: Lang = "fr") -> Questionnaire:
    """Validate ``data`` (JSON-like); raise :class:`QuestionnaireError` with every field's error.

    Any :data:`ACCOUNT_FIELDS` section is dropped first, whatever it holds: who requests is the
    signed-in account's business (``serving.case_service.create_case``), never the body's.
    """
    answers = {key: value for key, value in data.items() if key not in ACCOUNT_FIELDS}
    try:
        return Questionnaire.model_validate(answers)
    except ValidationError as exc:
        raise QuestionnaireError(field_errors(exc, lang)) from exc


BOOLEAN_FIELDS: tuple[str, ...] = (
    "changed_size",
    "changed_colour",
    "changed_shape",
    "bleeding",
    "itching",
    "personal_history_skin_cancer",
    "family_history_skin_cancer",
    "immunosuppression",
    "reuse_consent",
)


def from_form(form: Mapping[str, str]) -> dict[str, Any]:
    """Shape flat HTML form fields into questionnaire data.

    Checkboxes are absent when unticked (so "no"). Fields the questionnaire does not have (the
    CSRF token, photo slots, a forged ``requester_name``) are left out. Values are kept as
    strings: validation converts and checks them.
    """
    data: dict[str, Any] = {}
    for key, value in form.items():
        if key in BOOLEAN_FIELDS:
            data[key] = value not in ("", "0", "false", "off", "no")
        elif key in Questionnaire.model_fields:
            data[key] = value
    for key in BOOLEAN_FIELDS:
        data.setdefault(key, False)
    return data
