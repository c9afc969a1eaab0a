"""What a route needs, as annotated types: its signature says it (``user: CurrentUser``).

:func:`identify` is the one place that decides who is acting; ``CurrentUser`` (API: 401 when
nobody) and ``PageUser`` (pages: redirect to sign-in) wrap it. For now it reads the demo user
picked on the sign-in page from the ``dermtriage_user`` cookie; real sign-in (passwords, sessions,
CSRF) replaces :func:`identify` and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy.orm import Session

from serving.runtime import CaseRuntime
from serving.settings import Settings
from serving.storage import PhotoStore
from serving.users import User, find_user

USER_COOKIE = "dermtriage_user"
LANG_COOKIE = "dermtriage_lang"


def get_runtime(request: Request) -> CaseRuntime:
    runtime = getattr(request.app.state, "case_runtime", None)
    if runtime is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "case service is starting")
    return runtime


Runtime = Annotated[CaseRuntime, Depends(get_runtime)]


def get_session(runtime: Runtime) -> Iterator[Session]:
    """One unit of work per request: committed if the route returns, rolled back if it raises.

    Scoped to the route function, so the commit happens *before* the response is sent: a client
    told "done" (or redirected to the next page) always finds the change in the database.
    """
    with runtime.database.session() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def get_store(runtime: Runtime) -> PhotoStore:
    return runtime.store


StoreDep = Annotated[PhotoStore, Depends(get_store)]


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def get_now(runtime: Runtime) -> datetime:
    return runtime.clock()


Now = Annotated[datetime, Depends(get_now)]


def identify(request: Request) -> User | None:
    """Who sent this request, or ``None``. The single seam that real sign-in replaces."""
    return find_user(request.cookies.get(USER_COOKIE))


def get_current_user(request: Request) -> User:
    """The acting user for the JSON API: 401 when nobody is signed in."""
    user = identify(request)
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "sign in first")
    return user


def get_page_user(request: Request) -> User:
    """The acting user for a page: a redirect to the sign-in page when nobody is signed in."""
    user = identify(request)
    if user is None:
        target = quote(str(request.url.path), safe="/")
        raise HTTPException(
            status.HTTP_303_SEE_OTHER, headers={"Location": f"/login?next={target}"}
        )
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]
PageUser = Annotated[User, Depends(get_page_user)]
OptionalUser = Annotated[User | None, Depends(identify)]


def get_lang(request: Request) -> Literal["fr", "en"]:
    """``?lang=`` first, then the language cookie, then the service's default (French)."""
    for value in (request.query_params.get("lang"), request.cookies.get(LANG_COOKIE)):
        if value in ("fr", "en"):
            return value  # type: ignore[return-value]
    return request.app.state.settings.language


Lang = Annotated[Literal["fr", "en"], Depends(get_lang)]
