"""Signing in and out (pages and API) and the administrators' account API.

- ``GET /login`` / ``POST /login``: the sign-in form (login + password, CSRF-protected by a
  pre-session cookie); success opens a server-side session in an HttpOnly, SameSite=Lax cookie.
- ``POST /logout``: revokes the session (CSRF-protected like every form).
- ``POST /api/v1/auth/token``: login + password in JSON, a bearer token out;
  ``DELETE /api/v1/auth/token`` revokes the token that authenticates the call;
  ``GET /api/v1/auth/me``: who the token or session belongs to.
- ``/api/v1/users``: list, create and disable accounts (admins only); ``PATCH
  /api/v1/users/{login}`` (admins) and ``PATCH /api/v1/users/me`` (the person themself) change an
  account's identity: name, practice, RPPS number, e-mail, phone. A requester's requests carry it
  (never what a request body says), so this is where a GP's identity is corrected.

Failed sign-ins are rate limited (429) by :func:`serving.auth.authenticate`; see docs/access.md.
Sign-ins (failed ones too), sign-outs, token issue and revocation and account changes go to the
audit trail (:func:`serving.audit.record`), in the same transaction as the change they record.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request, Response, status
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field

from pipeline.access import Permission
from pipeline.workflow import Role
from serving import audit, auth
from serving.db.models import UserAccount
from serving.deps import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    CurrentUser,
    Now,
    OptionalUser,
    PageUser,
    SessionDep,
    SettingsDep,
    client_address,
    identity,
    require,
)
from serving.routes.worklist_pages import home_for, page_lang, render
from serving.settings import Settings
from serving.users import User

logger = logging.getLogger(__name__)

router = APIRouter(tags=["auth"])

TEXTS = {
    "fr": {
        "login": "Identifiant",
        "password": "Mot de passe",
        "submit": "Se connecter",
        "wrong": "Identifiant ou mot de passe incorrect.",
        "too_many": "Trop de tentatives échouées : réessayez dans {minutes} min.",
        "expired": "Le formulaire a expiré : réessayez.",
    },
    "en": {
        "login": "Login",
        "password": "Password",
        "submit": "Sign in",
        "wrong": "Wrong login or password.",
        "too_many": "Too many failed attempts: try again in {minutes} min.",
        "expired": "The form expired: please try again.",
    },
}


def _audit_failure(session: Any, login: str, now: datetime, via: str, reason: str) -> None:
    """A refused sign-in, under the login that was tried (nobody is signed in to act as)."""
    actor = audit.AuditActor(id=(login or "-").strip().lower()[:64], role="unauthenticated")
    details = {"via": via, "reason": reason}
    audit.record(session, actor, auth.SIGN_IN_FAILED, details=details, at=now)


def _rate_limit(settings: Settings) -> auth.RateLimit:
    return auth.RateLimit(
        max_per_login=settings.login_max_failures,
        max_per_client=settings.login_max_failures_per_client,
        window=timedelta(minutes=settings.login_window_minutes),
    )


def _client(request: Request) -> str:
    """The address the rate limit counts: the TCP peer, or the forwarded client only behind a
    proxy named in ``DERMTRIAGE_TRUSTED_PROXIES`` (:func:`serving.deps.client_address`)."""
    return client_address(request)


def _safe_next(target: str) -> str | None:
    """Only a path on this site (no ``//host`` or scheme), so sign-in cannot redirect away."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return None


# --- pages -----------------------------------------------------------------------------------


def _login_page(
    request: Request,
    settings: Settings,
    user: User | None,
    *,
    next_url: str,
    login: str = "",
    error: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    lang = page_lang(request, settings)
    token = request.cookies.get(CSRF_COOKIE) or auth.new_presession_token()
    response = render(
        request,
        "sign_in.html",
        lang,
        user,
        status_code=status_code,
        texts=TEXTS[lang],
        next=next_url,
        login=login,
        error=error,
        login_csrf=token,
    )
    if request.cookies.get(CSRF_COOKIE) != token:
        response.set_cookie(
            CSRF_COOKIE, token, httponly=True, samesite="lax", secure=settings.secure_cookies
        )
    return response


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
def login_page(
    request: Request, settings: SettingsDep, user: OptionalUser, next: str = ""
) -> HTMLResponse:
    return _login_page(request, settings, user, next_url=next)


@router.post("/login", response_model=None, include_in_schema=False)
def login(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    now: Now,
    login: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    """Check the password; open a session, or show the form again with the reason."""
    lang = page_lang(request, settings)
    if not auth.csrf_matches(request.cookies.get(CSRF_COOKIE), csrf_token):
        return _login_page(
            request, settings, None, next_url=next, login=login,
            error=TEXTS[lang]["expired"], status_code=status.HTTP_403_FORBIDDEN,
        )  # fmt: skip
    try:
        user = auth.authenticate(
            session, login, password, client=_client(request), now=now,
            limit=_rate_limit(settings),
        )  # fmt: skip
    except auth.TooManyAttemptsError as exc:
        _audit_failure(session, login, now, "form", "rate_limited")
        response = _login_page(
            request, settings, None, next_url=next, login=login,
            error=TEXTS[lang]["too_many"].format(minutes=-(-exc.retry_after_seconds // 60)),
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
        )  # fmt: skip
        response.headers["Retry-After"] = str(exc.retry_after_seconds)
        return response
    if user is None:
        _audit_failure(session, login, now, "form", "wrong_credentials")
        return _login_page(
            request, settings, None, next_url=next, login=login,
            error=TEXTS[lang]["wrong"], status_code=status.HTTP_401_UNAUTHORIZED,
        )  # fmt: skip
    token, _expires = auth.issue_token(
        session, user, auth.TokenKind.session, now=now,
        lifetime=timedelta(hours=settings.session_hours),
    )  # fmt: skip
    response = RedirectResponse(
        _safe_next(next) or home_for(user), status_code=status.HTTP_303_SEE_OTHER
    )
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(settings.session_hours * 3600),
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
    )
    response.delete_cookie(CSRF_COOKIE)
    audit.record(session, user, auth.SIGN_IN, details={"via": "form"}, at=now)
    logger.info("user %s signed in", user.id)
    return response


@router.post("/logout", include_in_schema=False)
def logout(request: Request, user: PageUser, session: SessionDep, now: Now) -> RedirectResponse:
    """Revoke this browser's session (the cookie alone would be kept by a copy) and forget it."""
    found = identity(request)
    if found is not None:
        auth.revoke_token(session, found.token, now=now)
    audit.record(session, user, auth.SIGN_OUT, at=now)
    response = RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)
    response.delete_cookie(SESSION_COOKIE)
    logger.info("user %s signed out", user.id)
    return response


# --- API tokens ------------------------------------------------------------------------------


class Credentials(BaseModel):
    login: str = Field(max_length=64)
    password: str = Field(max_length=1024)


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_at: datetime


class UserOut(BaseModel):
    id: str
    name: str
    role: Role
    organisation: str
    centre: str | None
    email: str
    rpps: str | None = None
    phone: str | None = None


def _user_out(user: User) -> UserOut:
    return UserOut(
        id=user.id, name=user.name, role=user.role, organisation=user.organisation,
        centre=user.centre, email=user.email, rpps=user.rpps, phone=user.phone,
    )  # fmt: skip


@router.post(
    "/api/v1/auth/token",
    response_model=TokenOut,
    summary="Exchange a login and password for a bearer token",
    responses={401: {"description": "Wrong login or password."},
               429: {"description": "Too many failed attempts; see Retry-After."}},
)  # fmt: skip
def issue_api_token(
    credentials: Credentials, request: Request, session: SessionDep, settings: SettingsDep,
    now: Now,
) -> TokenOut:  # fmt: skip
    try:
        user = auth.authenticate(
            session, credentials.login, credentials.password, client=_client(request),
            now=now, limit=_rate_limit(settings),
        )  # fmt: skip
    except auth.TooManyAttemptsError as exc:
        _audit_failure(session, credentials.login, now, "api", "rate_limited")
        session.commit()
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS, "too many failed attempts",
            headers={"Retry-After": str(exc.retry_after_seconds)},
        ) from exc  # fmt: skip
    if user is None:
        # The failure row must be kept although the request fails: commit it, then refuse.
        _audit_failure(session, credentials.login, now, "api", "wrong_credentials")
        session.commit()
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong login or password")
    token, expires = auth.issue_token(
        session, user, auth.TokenKind.api, now=now,
        lifetime=timedelta(days=settings.api_token_days),
    )  # fmt: skip
    audit.record(session, user, auth.TOKEN_ISSUED, at=now)
    logger.info("API token issued to %s", user.id)
    return TokenOut(access_token=token, expires_at=expires)


@router.delete("/api/v1/auth/token", status_code=status.HTTP_204_NO_CONTENT)
def revoke_api_token(request: Request, user: CurrentUser, session: SessionDep, now: Now) -> None:
    """Revoke the bearer token this call carries (a browser signs out with ``POST /logout``)."""
    found = identity(request)
    if found is None or found.via != "bearer":
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "call this with the bearer token")
    auth.revoke_token(session, found.token, now=now)
    audit.record(session, user, auth.TOKEN_REVOKED, at=now)


@router.get("/api/v1/auth/me", response_model=UserOut)
def who_am_i(user: CurrentUser) -> UserOut:
    return _user_out(user)


# --- account administration ------------------------------------------------------------------


class NewUser(BaseModel):
    id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=120)
    role: Role
    organisation: str = Field(max_length=160)
    centre: str | None = Field(default=None, max_length=64)
    email: str = Field(max_length=254)
    rpps: str | None = Field(default=None, pattern=r"^\d{11}$")
    phone: str | None = Field(default=None, max_length=32)
    password: str = Field(max_length=1024)


class AccountOut(UserOut):
    active: bool
    created_at: datetime
    disabled_at: datetime | None


def _account_out(account: UserAccount) -> AccountOut:
    return AccountOut(
        **_user_out(auth.to_user(account)).model_dump(),
        active=account.active,
        created_at=account.created_at,
        disabled_at=account.disabled_at,
    )


@router.get("/api/v1/users", response_model=list[AccountOut])
def list_users(user: CurrentUser, session: SessionDep) -> list[AccountOut]:
    require(Permission.manage_users, user)
    return [_account_out(a) for a in auth.list_accounts(session)]


@router.post("/api/v1/users", response_model=AccountOut, status_code=status.HTTP_201_CREATED)
def create_user(body: NewUser, user: CurrentUser, session: SessionDep, now: Now) -> AccountOut:
    require(Permission.manage_users, user)
    fields: dict[str, Any] = body.model_dump(exclude={"password"})
    try:
        account = auth.create_account(session, User(**fields), body.password, now=now)
    except auth.AccountError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    details = {"login": account.id, "role": account.role}
    audit.record(session, user, auth.ACCOUNT_CREATED, details=details, at=now)
    return _account_out(account)


class IdentityIn(BaseModel):
    """New values for an account's identity; fields left out keep theirs. Role, centre and login
    are not identity: an administrator decides them when creating the account."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=120)
    organisation: str | None = Field(default=None, max_length=160)
    rpps: str | None = Field(default=None, pattern=r"^\d{11}$")
    email: str | None = Field(default=None, max_length=254)
    phone: str | None = Field(default=None, max_length=32)


def _update_identity(
    session: Any, actor: User, login: str, body: IdentityIn, now: datetime
) -> AccountOut:
    """Apply ``body`` to ``login``'s identity; 404 no such account, 422 refused (a requester
    without RPPS or practice, an RPPS number another account holds). The audit trail names the
    fields that changed, never their values."""
    try:
        changed = auth.update_identity(session, login, body.model_dump(exclude_unset=True))
    except auth.AccountError as exc:
        missing = session.get(UserAccount, login) is None
        code = status.HTTP_404_NOT_FOUND if missing else status.HTTP_422_UNPROCESSABLE_CONTENT
        raise HTTPException(code, str(exc)) from exc
    if changed:
        details = {"login": login, "fields": changed}
        audit.record(session, actor, auth.ACCOUNT_UPDATED, details=details, at=now)
    account = session.get(UserAccount, login)
    return _account_out(account)


@router.patch("/api/v1/users/me", response_model=AccountOut)
def update_my_identity(
    body: IdentityIn, user: CurrentUser, session: SessionDep, now: Now
) -> AccountOut:
    """Correct one's own name, practice, RPPS number, e-mail or phone (every signed-in person).

    A GP's requests carry this identity; the ones already sent keep the name and practice they
    were sent under.
    """
    return _update_identity(session, user, user.id, body, now)


@router.patch("/api/v1/users/{login}", response_model=AccountOut)
def update_identity(
    login: str, body: IdentityIn, user: CurrentUser, session: SessionDep, now: Now
) -> AccountOut:
    """An administrator corrects someone's name, practice, RPPS number, e-mail or phone."""
    require(Permission.manage_users, user)
    return _update_identity(session, user, login, body, now)


@router.post("/api/v1/users/{login}/disable", response_model=AccountOut)
def disable_user(login: str, user: CurrentUser, session: SessionDep, now: Now) -> AccountOut:
    require(Permission.manage_users, user)
    if login == user.id:
        raise HTTPException(status.HTTP_409_CONFLICT, "an administrator cannot disable themself")
    try:
        account = auth.disable_account(session, login, now=now)
    except auth.AccountError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    audit.record(session, user, auth.ACCOUNT_DISABLED, details={"login": account.id}, at=now)
    return _account_out(account)
