"""The GP's photo-check page (``/gp/photo``) and the site root, which leads to it.

The page itself judges nothing: its script sends the chosen photo to ``POST /api/v1/quality``
and shows that verdict, so the page, the API and the command line can never disagree.
Language: ``?lang=fr|en`` switches and is remembered in a cookie; otherwise the browser's
``Accept-Language``, otherwise the service default (French).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from serving.deps import LANG_COOKIE, SettingsDep
from serving.i18n import Language, is_supported, negotiate, strings, translate
from serving.settings import Settings
from serving.templating import render

router = APIRouter(tags=["pages"], include_in_schema=False)

#: How long a language chosen with ``?lang=`` is remembered.
LANG_COOKIE_MAX_AGE = 365 * 24 * 3600


def page_language(request: Request, settings: Settings) -> Language:
    return negotiate(
        query=request.query_params.get("lang"),
        cookie=request.cookies.get(LANG_COOKIE),
        accept_language=request.headers.get("accept-language"),
        default=settings.language,
    )


def remember_language(request: Request, response: Response) -> None:
    """Keep an explicit ``?lang=`` choice for the next pages."""
    chosen = request.query_params.get("lang")
    if is_supported(chosen) and chosen != request.cookies.get(LANG_COOKIE):
        response.set_cookie(
            LANG_COOKIE, str(chosen), max_age=LANG_COOKIE_MAX_AGE, samesite="lax", httponly=True
        )


def megabytes(size: int, lang: Language) -> str:
    """``size`` in MiB as people write it: ``25``, or ``0,5`` in French."""
    text = f"{size / 2**20:.3g}"
    return text.replace(".", ",") if lang == "fr" else text


@router.get("/")
def home(request: Request) -> RedirectResponse:
    """The GP's photo check is the service's front door for now."""
    target = "/gp/photo"
    if request.url.query:
        target += f"?{request.url.query}"
    return RedirectResponse(target, status_code=303)


@router.get("/gp/photo", response_class=HTMLResponse)
def gp_photo(request: Request, settings: SettingsDep) -> HTMLResponse:
    lang = page_language(request, settings)
    max_mb = megabytes(settings.max_upload_bytes, lang)
    script_strings = {
        **strings(lang, "photo."),
        "problems": strings(lang, "problem."),
        "errors": {
            key: translate(f"error.{key}", lang, max_mb=max_mb) for key in strings(lang, "error.")
        },
    }
    response = render(
        request,
        "gp_photo.html",
        lang,
        max_upload_bytes=settings.max_upload_bytes,
        max_mb=max_mb,
        script_strings=script_strings,
    )
    remember_language(request, response)
    return response
