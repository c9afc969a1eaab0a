"""The web pages' words in French (the default: our users are French GPs) and English.

One catalogue, keyed by a stable name, so a template says ``t("photo.take")`` and never holds a
sentence; a missing key or language fails loudly (``KeyError``) instead of showing a blank.
The retake advice for each quality problem is *not* here: it comes with the result from
:mod:`pipeline.quality_messages`, so the API, the command line and the page say the same thing.

Which language a request gets is decided by :func:`negotiate`, in this order: an explicit
``?lang=`` choice, the remembered choice (cookie), the browser's ``Accept-Language``, then the
service's configured default.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal, cast

Language = Literal["fr", "en"]
SUPPORTED_LANGUAGES: tuple[Language, ...] = ("fr", "en")
DEFAULT_LANGUAGE: Language = "fr"

CATALOGUE: dict[str, dict[Language, str]] = {
    # --- shell --------------------------------------------------------------------------------
    "app.name": {"fr": "DermTriage", "en": "DermTriage"},
    "app.tagline": {
        "fr": "Téléexpertise dermatologique",
        "en": "Teledermatology",
    },
    "lang.switch_label": {"fr": "Langue", "en": "Language"},
    "lang.fr": {"fr": "Français", "en": "Français"},
    "lang.en": {"fr": "English", "en": "English"},
    "footer.disclaimer": {
        "fr": "Cette vérification porte sur la qualité de la photo, pas sur la lésion : elle ne "
        "remplace pas l'avis du dermatologue.",
        "en": "This check is about the photo's quality, not the lesion: it does not replace the "
        "dermatologist's opinion.",
    },
    "footer.privacy": {
        "fr": "Aucune photo n'est conservée à cette étape.",
        "en": "No photo is kept at this step.",
    },
    # --- GP photo check -----------------------------------------------------------------------
    "photo.page_title": {
        "fr": "Vérifier la photo d'une lésion",
        "en": "Check a photo of a lesion",
    },
    "photo.lead": {
        "fr": "Prenez ou choisissez la photo : vous saurez aussitôt si le dermatologue pourra "
        "l'exploiter, et sinon comment la reprendre.",
        "en": "Take or choose the photo: you will know at once whether the dermatologist can use "
        "it, and if not, how to retake it.",
    },
    "photo.take": {"fr": "Prendre une photo", "en": "Take a photo"},
    "photo.choose": {"fr": "Choisir un fichier", "en": "Choose a file"},
    "photo.formats": {
        "fr": "JPEG, PNG ou HEIC (iPhone), {max_mb} Mo au plus.",
        "en": "JPEG, PNG or HEIC (iPhone), up to {max_mb} MB.",
    },
    "photo.checking": {"fr": "Analyse de la photo…", "en": "Checking the photo…"},
    "photo.preview_alt": {"fr": "Aperçu de la photo choisie", "en": "Preview of the chosen photo"},
    "photo.preview_unavailable": {
        "fr": "Aperçu indisponible pour ce format",
        "en": "No preview for this format",
    },
    "photo.result_heading": {"fr": "Résultat", "en": "Result"},
    "photo.verdict_ok": {"fr": "Photo exploitable", "en": "Photo is usable"},
    "photo.verdict_ok_detail": {
        "fr": "Netteté, exposition et cadrage conviennent : vous pouvez l'envoyer.",
        "en": "Sharpness, exposure and framing are fine: you can send it.",
    },
    "photo.verdict_retake": {"fr": "Photo à reprendre", "en": "Please retake the photo"},
    "photo.verdict_retake_detail": {
        "fr": "Le dermatologue ne pourrait pas l'interpréter de façon fiable. Pour la reprendre :",
        "en": "The dermatologist could not read it reliably. To retake it:",
    },
    "photo.retry": {"fr": "Vérifier une autre photo", "en": "Check another photo"},
    "photo.file_label": {"fr": "Fichier", "en": "File"},
    "photo.size_label": {"fr": "Dimensions", "en": "Size"},
    "photo.tips_heading": {
        "fr": "Pour une photo exploitable du premier coup",
        "en": "For a usable photo the first time",
    },
    "photo.tip_light": {
        "fr": "Lumière du jour, sans flash ni reflet.",
        "en": "Daylight, no flash and no reflections.",
    },
    "photo.tip_distance": {
        "fr": "À 10–15 cm, l'appareil parallèle à la peau.",
        "en": "10–15 cm away, phone parallel to the skin.",
    },
    "photo.tip_framing": {
        "fr": "La lésion entière, au centre, avec de la peau saine autour.",
        "en": "The whole lesion, centred, with healthy skin around it.",
    },
    "photo.tip_focus": {
        "fr": "Touchez la lésion à l'écran pour faire la mise au point, puis restez immobile.",
        "en": "Tap the lesion on screen to focus, then hold still.",
    },
    # --- problem titles (the advice itself comes with the result) -----------------------------
    "problem.blur": {"fr": "Netteté insuffisante", "en": "Not sharp enough"},
    "problem.underexposed": {"fr": "Photo trop sombre", "en": "Too dark"},
    "problem.overexposed": {"fr": "Photo trop claire", "en": "Too bright"},
    "problem.low_resolution": {"fr": "Résolution trop faible", "en": "Resolution too low"},
    "problem.not_skin": {"fr": "Peau non reconnue", "en": "No skin recognised"},
    "problem.framing": {"fr": "Cadrage", "en": "Framing"},
    "problem.glare": {"fr": "Reflets", "en": "Glare"},
    "problem.colour_cast": {"fr": "Couleurs faussées", "en": "Colour cast"},
    "problem.unreadable_file": {"fr": "Fichier illisible", "en": "Unreadable file"},
    "problem.other": {"fr": "Problème", "en": "Problem"},
    # --- coded diagnosis (pipeline.diagnosis) and how an outcome was established ---------------
    "diagnosis.melanoma": {"fr": "Mélanome", "en": "Melanoma"},
    "diagnosis.bcc": {"fr": "Carcinome basocellulaire", "en": "Basal cell carcinoma"},
    "diagnosis.scc": {"fr": "Carcinome épidermoïde", "en": "Squamous cell carcinoma"},
    "diagnosis.ak_bowen": {
        "fr": "Kératose actinique / maladie de Bowen",
        "en": "Actinic keratosis / Bowen's disease",
    },
    "diagnosis.naevus": {"fr": "Nævus", "en": "Naevus"},
    "diagnosis.seborrhoeic_keratosis": {
        "fr": "Kératose séborrhéique / kératose bénigne",
        "en": "Seborrhoeic keratosis / benign keratosis",
    },
    "diagnosis.dermatofibroma": {"fr": "Dermatofibrome", "en": "Dermatofibroma"},
    "diagnosis.vascular": {"fr": "Lésion vasculaire", "en": "Vascular lesion"},
    "diagnosis.other_benign": {"fr": "Autre lésion bénigne", "en": "Other benign lesion"},
    "diagnosis.other_malignant": {"fr": "Autre lésion maligne", "en": "Other malignant lesion"},
    "diagnosis.inflammatory": {
        "fr": "Inflammatoire ou autre non tumoral",
        "en": "Inflammatory or other non-tumour",
    },
    "diagnosis.uncertain": {
        "fr": "Incertain (consultation nécessaire)",
        "en": "Uncertain (needs a consultation)",
    },
    "outcome_source.histology": {"fr": "Histologie", "en": "Histology"},
    "outcome_source.consultation": {"fr": "Consultation", "en": "Consultation"},
    "outcome_source.follow_up": {"fr": "Suivi", "en": "Follow-up"},
    "outcome_source.expert_report": {"fr": "Compte rendu validé", "en": "Validated report"},
    # --- errors the page can meet before any verdict ------------------------------------------
    "error.too_large": {
        "fr": "Ce fichier dépasse {max_mb} Mo : envoyez la photo d'origine en JPEG ou HEIC, "
        "sans la convertir.",
        "en": "This file is over {max_mb} MB: send the original JPEG or HEIC photo, unconverted.",
    },
    "error.missing_file": {
        "fr": "Aucune photo reçue : choisissez à nouveau la photo.",
        "en": "No photo was received: choose the photo again.",
    },
    "error.network": {
        "fr": "Le serveur ne répond pas : vérifiez la connexion puis réessayez.",
        "en": "The server does not answer: check the connection and try again.",
    },
    "error.generic": {
        "fr": "La vérification a échoué. Réessayez dans un instant.",
        "en": "The check failed. Please try again in a moment.",
    },
}


def is_supported(value: str | None) -> bool:
    return value in SUPPORTED_LANGUAGES


def translate(key: str, lang: Language, **values: object) -> str:
    """The text for ``key`` in ``lang``, with ``{name}`` fields filled from ``values``."""
    text = CATALOGUE[key][lang]
    return text.format(**values) if values else text


def translator(lang: Language) -> Callable[..., str]:
    """``t(key, **values)`` bound to one language, as templates call it."""

    def t(key: str, **values: object) -> str:
        return translate(key, lang, **values)

    return t


def strings(lang: Language, prefix: str) -> dict[str, str]:
    """Every entry whose key starts with ``prefix``, without it: what a page's script needs."""
    return {
        key.removeprefix(prefix): texts[lang]
        for key, texts in CATALOGUE.items()
        if key.startswith(prefix)
    }


def parse_accept_language(header: str | None) -> list[str]:
    """Primary language tags of an ``Accept-Language`` header, preferred first (``q=0`` dropped).

    ``"en-GB,en;q=0.9,fr;q=0.8"`` gives ``["en", "en", "fr"]``; ties keep the header's order.
    """
    if not header:
        return []
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate(header.split(",")):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        primary = tag.strip().split("-")[0].lower()
        if primary and quality > 0:
            ranked.append((-quality, position, primary))
    return [primary for _, _, primary in sorted(ranked)]


def negotiate(
    *,
    query: str | None,
    cookie: str | None,
    accept_language: str | None,
    default: Language = DEFAULT_LANGUAGE,
) -> Language:
    """The language to answer in: explicit choice, remembered choice, browser, service default."""
    candidates: Iterable[str | None] = (query, cookie, *parse_accept_language(accept_language))
    for candidate in candidates:
        if is_supported(candidate):
            return cast(Language, candidate)
    return default
