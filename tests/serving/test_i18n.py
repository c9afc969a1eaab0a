"""Which language a page speaks, and that every page text exists in both languages."""

from __future__ import annotations

import string

import pytest

from serving.i18n import (
    CATALOGUE,
    SUPPORTED_LANGUAGES,
    negotiate,
    parse_accept_language,
    strings,
    translate,
)


def test_every_text_exists_in_every_language_with_the_same_fields() -> None:
    for key, texts in CATALOGUE.items():
        assert set(texts) == set(SUPPORTED_LANGUAGES), key
        fields = {
            lang: {name for _, name, _, _ in string.Formatter().parse(text) if name}
            for lang, text in texts.items()
        }
        assert fields["fr"] == fields["en"], key
        assert all(text.strip() for text in texts.values()), key


def test_an_unknown_key_fails_loudly_instead_of_showing_nothing() -> None:
    with pytest.raises(KeyError):
        translate("photo.no_such_text", "fr")


def test_fields_are_filled() -> None:
    assert (
        translate("photo.formats", "en", max_mb="25") == "JPEG, PNG or HEIC (iPhone), up to 25 MB."
    )


def test_strings_for_a_script_drop_the_prefix() -> None:
    problems = strings("fr", "problem.")

    assert problems["blur"] == "Netteté insuffisante"
    assert "problem.blur" not in problems


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, []),
        ("", []),
        ("fr-FR", ["fr"]),
        ("en-GB,en;q=0.9,fr;q=0.8", ["en", "en", "fr"]),
        ("de;q=0.9, fr;q=0.95, en;q=0.1", ["fr", "de", "en"]),
        ("fr;q=0, en", ["en"]),
        ("*;q=0.5, EN-us", ["en", "*"]),
        ("fr;q=abc, en;q=0.2", ["en"]),
    ],
)
def test_accept_language_is_read_by_preference(header: str | None, expected: list[str]) -> None:
    assert parse_accept_language(header) == expected


def test_an_explicit_choice_beats_the_cookie_which_beats_the_browser() -> None:
    assert negotiate(query="en", cookie="fr", accept_language="fr") == "en"
    assert negotiate(query=None, cookie="en", accept_language="fr") == "en"
    assert negotiate(query=None, cookie=None, accept_language="en-US,fr;q=0.5") == "en"


def test_unsupported_values_fall_through_to_the_service_default() -> None:
    assert negotiate(query="de", cookie="xx", accept_language="de, es") == "fr"
    assert negotiate(query=None, cookie=None, accept_language=None, default="en") == "en"
