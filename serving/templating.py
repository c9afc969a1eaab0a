"""Server-rendered pages: one Jinja2 environment and the context every page template receives.

Every page extends ``base.html``, which needs ``lang`` (the ``<html lang>`` and the language
switch) and ``t`` (the :mod:`serving.i18n` translator); :func:`render` supplies both so a route
only passes what is specific to its page. Autoescaping is on for ``.html`` templates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from serving.i18n import SUPPORTED_LANGUAGES, Language, translator

PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"
STATIC_DIR = PACKAGE_DIR / "static"

templates = Jinja2Templates(directory=TEMPLATES_DIR)


def render(
    request: Request,
    template: str,
    lang: Language,
    *,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """Render ``template`` in ``lang`` with the shared page context plus ``context``."""
    page_context: dict[str, Any] = {
        "lang": lang,
        "languages": SUPPORTED_LANGUAGES,
        "t": translator(lang),
        **context,
    }
    return templates.TemplateResponse(request, template, page_context, status_code=status_code)
