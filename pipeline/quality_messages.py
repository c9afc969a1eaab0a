"""What a GP reads when a photo has a problem: one short sentence per code, saying how to retake.

French is the default (our users are French GPs); English is for the API's other clients. Kept
apart from the checks so wording can change without touching the thresholds, and vice versa.
"""

from __future__ import annotations

LANGUAGES = ("fr", "en")

MESSAGES: dict[str, dict[str, str]] = {
    "blur": {
        "fr": "Photo floue : tenez l'appareil immobile, faites la mise au point sur la lésion "
        "(touchez-la à l'écran) et reprenez la photo.",
        "en": "The photo is blurred: hold the phone still, tap the lesion on screen to focus, "
        "and take it again.",
    },
    "underexposed": {
        "fr": "Photo trop sombre : éclairez davantage la zone (lumière du jour ou lampe) "
        "et reprenez la photo.",
        "en": "The photo is too dark: add light (daylight or a lamp) and take it again.",
    },
    "overexposed": {
        "fr": "Photo trop claire (surexposée) : réduisez l'éclairage direct ou désactivez le flash "
        "et reprenez la photo.",
        "en": "The photo is too bright (overexposed): reduce direct light or turn off the flash, "
        "and take it again.",
    },
    "low_resolution": {
        "fr": "Résolution trop faible : envoyez la photo originale, pas une capture d'écran "
        "ni une image réduite.",
        "en": "The resolution is too low: send the original photo, not a screenshot or a "
        "reduced copy.",
    },
    "not_skin": {
        "fr": "Aucune peau reconnue sur l'image : photographiez directement la lésion cutanée "
        "(pas un document ni un écran).",
        "en": "No skin recognised in the image: photograph the skin lesion itself "
        "(not a document or a screen).",
    },
    "framing": {
        "fr": "Cadrage à revoir : centrez la lésion, entière, avec un peu de peau saine autour.",
        "en": "Reframe the photo: centre the whole lesion, with a margin of healthy skin "
        "around it.",
    },
    "glare": {
        "fr": "Reflets sur la lésion : changez l'angle de prise de vue ou coupez le flash "
        "et reprenez la photo.",
        "en": "Glare on the lesion: change the angle or turn off the flash, and take it again.",
    },
    "colour_cast": {
        "fr": "Couleurs faussées par l'éclairage : reprenez la photo à la lumière du jour, "
        "sans filtre.",
        "en": "Colours are distorted by the lighting: take the photo again in daylight, "
        "without a filter.",
    },
    "unreadable_file": {
        "fr": "Fichier illisible : envoyez une photo au format JPEG, PNG ou HEIC.",
        "en": "The file cannot be read: send a JPEG, PNG or HEIC photo.",
    },
}


def message(code: str, lang: str = "fr") -> str:
    """The retake advice for ``code`` in ``lang`` (``fr`` default, ``en``).

    Raises ``KeyError`` for an unknown code and ``ValueError`` for an unknown language: both are
    programming errors, not user input.
    """
    if lang not in LANGUAGES:
        raise ValueError(f"unsupported language {lang!r}; expected one of {LANGUAGES}")
    return MESSAGES[code][lang]
