"""What a route needs, as annotated types: its signature says it (``user: CurrentUser``).

:func:`identify` is the one place that decides who is acting: an ``Authorization: Bearer`` API
token, or the browser's session cookie (``dermtriage_session``), both checked against the
database by :mod:`serving.auth`. ``CurrentUser`` (API: 401 when nobody) and ``PageUser`` (pages:
redirect to sign-in) wrap it and also enforce CSRF protection on unsafe cookie-authenticated
requests (403 without the token), so no state-changing route can forget it. What the user may
then do is :func:`pipeline.access.can`'s answer. See docs/access.md.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import Depends, HTTPException, Path, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BeforeValidator
from sqlalchemy import BigInteger
from sqlalchemy.orm import Session

from pipeline.access import Permission, can
from serving import auth
from serving.db.models import Case, Photo
from serving.runtime import CaseRuntime
from serving.settings import Settings
from serving.storage import PhotoStore
from serving.users import User

SESSION_COOKIE = "dermtriage_session"
CSRF_COOKIE = "dermtriage_csrf"  # the pre-session token of the sign-in form (double submit)
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FORM_MAX_FILES, FORM_MAX_FIELDS, FORM_MAX_FIELD_BYTES = 8, 60, 1024 * 1024
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


@dataclass(frozen=True)
class Identity:
    """Who sent a request and how (``"bearer"`` or ``"session"``), and the secret it showed."""

    user: User
    via: Literal["bearer", "session"]
    token: str


def _bearer(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def identity(request: Request) -> Identity | None:
    """The request's signed-in identity, resolved once per request and kept on ``request.state``.

    An ``Authorization: Bearer`` header wins over a session cookie; a bearer header that does not
    resolve means nobody (it never falls back to the cookie), so a revoked API token cannot ride on
    a browser's session.
    """
    if hasattr(request.state, "identity"):
        return request.state.identity
    found: Identity | None = None
    bearer = _bearer(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    if bearer or cookie:
        runtime = get_runtime(request)
        now = runtime.clock()
        with runtime.database.session() as session:
            if bearer:
                user = auth.resolve_token(session, bearer, auth.TokenKind.api, now=now)
                found = Identity(user, "bearer", bearer) if user else None
            elif cookie:
                user = auth.resolve_token(session, cookie, auth.TokenKind.session, now=now)
                found = Identity(user, "session", cookie) if user else None
    request.state.identity = found
    return found


def identify(request: Request) -> User | None:
    """Who sent this request, or ``None`` (the one place that decides who is acting)."""
    found = identity(request)
    return found.user if found else None


def csrf_expected(request: Request) -> str | None:
    """The CSRF token this browser's forms must carry: its session's, or before sign-in the
    pre-session cookie's (double submit)."""
    found = identity(request)
    if found is not None and found.via == "session":
        return auth.csrf_for_session(found.token)
    return request.cookies.get(CSRF_COOKIE)


async def check_csrf(request: Request, *, form_field: bool) -> None:
    """403 for an unsafe request authenticated by cookie without the right CSRF token.

    The token comes in the ``X-CSRF-Token`` header (scripts, API calls) or, for the pages' HTML
    forms only (``form_field``), the ``csrf_token`` form field; the API never parses a body for it,
    so its routes keep streaming their uploads. Bearer-token calls are exempt: a browser never adds
    that header by itself, so another site cannot forge them.
    """
    if request.method in SAFE_METHODS:
        return
    found = identity(request)
    if found is not None and found.via == "bearer":
        return
    given = request.headers.get(CSRF_HEADER)
    content_type = request.headers.get("content-type", "")
    if (
        given is None
        and form_field
        and content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data"))
    ):
        # Starlette keeps the parsed form for the route, so parse it with limits no looser than
        # any page form's own (the GP's request form: 8 files, 60 fields).
        form = await request.form(
            max_files=FORM_MAX_FILES, max_fields=FORM_MAX_FIELDS, max_part_size=FORM_MAX_FIELD_BYTES
        )
        value = form.get(CSRF_FIELD)
        given = value if isinstance(value, str) else None
    if not auth.csrf_matches(csrf_expected(request), given):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or invalid CSRF token")


async def get_current_user(request: Request) -> User:
    """The acting user for the JSON API: 401 when nobody is signed in, 403 without CSRF token
    on an unsafe cookie-authenticated call."""
    user = await run_in_threadpool(identify, request)
    if user is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "sign in first", headers={"WWW-Authenticate": "Bearer"}
        )
    await check_csrf(request, form_field=False)
    return user


async def get_page_user(request: Request) -> User:
    """The acting user for a page: a redirect to the sign-in page when nobody is signed in; a
    form post without a valid CSRF token gets 403."""
    user = await run_in_threadpool(identify, request)
    if user is None:
        if request.method not in SAFE_METHODS:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "sign in first")
        target = quote(str(request.url.path), safe="/")
        raise HTTPException(
            status.HTTP_303_SEE_OTHER, headers={"Location": f"/login?next={target}"}
        )
    await check_csrf(request, form_field=True)
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]
PageUser = Annotated[User, Depends(get_page_user)]
OptionalUser = Annotated[User | None, Depends(identify)]


# --- the client's address --------------------------------------------------------------------


def _trusted(address: str, proxies: Iterable[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(proxy, strict=False) for proxy in proxies)


def client_address(request: Request) -> str:
    """The address a request comes from, as the sign-in rate limit counts it.

    The TCP peer, unless the peer is one of ``DERMTRIAGE_TRUSTED_PROXIES``: then the right-most
    ``X-Forwarded-For`` hop that is not a trusted proxy (hops left of it were written by the
    client and prove nothing). Without trusted proxies (the default) the header is ignored, so a
    client cannot reset its count by rotating it. ``dermtriage serve`` gives uvicorn the same
    list (:func:`serving.commands.serve.uvicorn_options`); when uvicorn has already replaced the
    peer with the forwarded client, that client is not a proxy and is returned as it is.
    """
    peer = request.client.host if request.client else "unknown"
    proxies = request.app.state.settings.trusted_proxies
    if not proxies or not _trusted(peer, proxies):
        return peer
    hops = [
        hop.strip()
        for header in request.headers.getlist("x-forwarded-for")
        for hop in header.split(",")
        if hop.strip()
    ]
    for hop in reversed(hops):
        if not _trusted(hop, proxies):
            return hop
    return hops[0] if hops else peer


def require(permission: Permission, user: User) -> None:
    """403 unless ``user`` holds the case-independent ``permission`` (see pipeline.access)."""
    if not can(user, permission):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"a {user.role.value} may not do this")


def get_lang(request: Request) -> Literal["fr", "en"]:
    """``?lang=`` first, then the language cookie, then the service's default (French)."""
    for value in (request.query_params.get("lang"), request.cookies.get(LANG_COOKIE)):
        if value in ("fr", "en"):
            return value  # type: ignore[return-value]
    return request.app.state.settings.language


Lang = Annotated[Literal["fr", "en"], Depends(get_lang)]


# --- ids in paths and queries ----------------------------------------------------------------


def column_max(column: Any) -> int:
    """The largest value ``column`` holds on every supported database: a ``BigInteger`` is 64-bit
    signed everywhere; an ``Integer`` is 64-bit on SQLite but 32-bit (``integer``) on PostgreSQL,
    so its portable range is the smaller one."""
    return 2**63 - 1 if isinstance(column.type, BigInteger) else 2**31 - 1


#: Ids that a row of ``cases`` / ``photos`` can have. A number outside them is refused (422)
#: before any query: past 64 bits the database driver cannot even bind it (a 500 on SQLite).
CASE_ID_MAX = column_max(Case.__table__.c.id)
PHOTO_ID_MAX = column_max(Photo.__table__.c.id)
#: MLflow's ``model_versions.version`` is an ``Integer`` column.
MODEL_VERSION_MAX = 2**31 - 1
#: Pages of a listing: far past any real listing, and ``page * page_size`` stays a 64-bit OFFSET.
PAGE_MAX = 1_000_000


def case_id_in_range(value: int) -> bool:
    """Whether ``value`` can be a case's id (for ids read from free text, such as a filter)."""
    return 1 <= value <= CASE_ID_MAX


CaseId = Annotated[int, Path(ge=1, le=CASE_ID_MAX, description="A case's id.")]
PhotoId = Annotated[int, Path(ge=1, le=PHOTO_ID_MAX, description="A photo's id.")]
CaseIdQuery = Annotated[int | None, Query(ge=1, le=CASE_ID_MAX, description="A case's id.")]
PageNumber = Annotated[int, Query(ge=1, le=PAGE_MAX)]


def _checked_version(value: Any) -> str:
    """A version number in ``1 .. MODEL_VERSION_MAX`` as text; anything else is a 422."""
    text = str(value).strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 10):
        raise ValueError("a model version is a whole number")
    number = int(text)
    if not 1 <= number <= MODEL_VERSION_MAX:
        raise ValueError(f"a model version is between 1 and {MODEL_VERSION_MAX}")
    return str(number)


def _optional_version(value: Any) -> str | None:
    return None if value is None or str(value).strip() == "" else _checked_version(value)


#: A registered model version: a number in the registry's range, handed to the route as the
#: registry names it, as text (``"3"``).
ModelVersion = Annotated[
    str,
    Path(description="A registered model version (1, 2, ...)."),
    BeforeValidator(_checked_version),
]
ModelVersionQuery = Annotated[str, Query(), BeforeValidator(_checked_version)]
OptionalModelVersionQuery = Annotated[str | None, Query(), BeforeValidator(_optional_version)]
