"""Accounts, passwords, sessions, API tokens, CSRF tokens and the sign-in rate limit.

Everything here takes an open SQLAlchemy session and plain values (times, limits), never the
settings or the request, so the HTTP layer (:mod:`serving.deps`, :mod:`serving.routes.auth`) and
the command line (``dermtriage users``) share one implementation.

- Passwords: argon2id (``argon2-cffi``'s defaults, RFC 9106 low-memory profile); a hash made with
  older parameters is upgraded at the next successful sign-in.
- Tokens: 32 random bytes (URL-safe base64) handed to the client once; the database keeps only
  their SHA-256, so a leaked database or backup signs nobody in. A token is refused once expired,
  revoked (sign-out, ``DELETE /api/v1/auth/token``) or when its account is disabled.
- CSRF: the token of a signed-in browser is derived from its session secret (synchroniser token
  that needs no storage and changes with every session); before sign-in, the sign-in form is
  protected by a random pre-session cookie (double submit).
- Rate limit: failed sign-ins are rows; too many for one login, or from one client address,
  within the window answer "too many attempts" until the window has passed. A success clears that
  login's failures. Each attempt claims its row *before* the password is checked, in a short
  transaction serialised per login and per client (:func:`claim_attempt`), so N simultaneous
  attempts check at most the limit's worth of passwords, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import re
import secrets
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from pipeline.workflow import Role
from serving.db.models import AuthToken, LoginFailure, UserAccount
from serving.users import DEMO_PASSWORD, DEMO_USERS, User, find_user

logger = logging.getLogger(__name__)

_hasher = PasswordHasher()
# A real hash to verify against when the login is unknown, so that timing does not reveal
# which logins exist.
_DUMMY_HASH = _hasher.hash("not a password anyone has")

MIN_PASSWORD_CHARS = 10
LOGIN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")


# What the audit trail records about accounts and sign-in (the routes and ``dermtriage users``
# call :func:`serving.audit.record` with these).
SIGN_IN = "auth.sign_in"
SIGN_IN_FAILED = "auth.sign_in_failed"
SIGN_OUT = "auth.sign_out"
TOKEN_ISSUED = "auth.token_issued"
TOKEN_REVOKED = "auth.token_revoked"
ACCOUNT_CREATED = "account.create"
ACCOUNT_DISABLED = "account.disable"
ACCOUNT_UPDATED = "account.update"
PASSWORD_RESET = "account.password_reset"


class TokenKind(StrEnum):
    session = "session"  # a browser's cookie
    api = "api"  # an ``Authorization: Bearer`` token


class AccountError(ValueError):
    """An account cannot be created or changed as asked (the message says why)."""


class TooManyAttemptsError(Exception):
    """Sign-in refused without checking the password: too many recent failures."""

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__("too many failed sign-ins; try again later")
        self.retry_after_seconds = retry_after_seconds


@dataclass(frozen=True)
class RateLimit:
    max_per_login: int
    max_per_client: int
    window: timedelta


# --- passwords and accounts ------------------------------------------------------------------


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def to_user(account: UserAccount) -> User:
    """The plain record routes and services work with."""
    return User(
        id=account.id,
        name=account.name,
        role=Role(account.role),
        organisation=account.organisation,
        email=account.email,
        rpps=account.rpps,
        phone=account.phone,
        centre=account.centre,
    )


#: The account fields that say who a person is (a requester's requests carry them): editable by
#: an administrator or by the person themself, never by a request body.
IDENTITY_FIELDS = ("name", "organisation", "rpps", "email", "phone")
RPPS_PATTERN = re.compile(r"^\d{11}$")
#: Not a login: ``/api/v1/users/me`` means the signed-in person.
RESERVED_LOGINS = frozenset({"me"})


def _check_identity(session: Session, user: User) -> None:
    """Refuse an identity an account may not have: a requester without the RPPS number and the
    practice their requests go out under, a malformed RPPS number, or one another account holds
    (an RPPS number names one professional: two accounts with it would let one sign as the other).
    """
    if not user.name.strip() or len(user.name) > 120:
        raise AccountError("name: 1 to 120 characters")
    if len(user.organisation) > 160:
        raise AccountError("organisation: 160 characters at most")
    if len(user.email) > 254 or len(user.phone or "") > 32:
        raise AccountError("e-mail: 254 characters at most; phone: 32 at most")
    if user.rpps is not None and not RPPS_PATTERN.match(user.rpps):
        raise AccountError("RPPS number: 11 digits")
    if user.role is Role.requester and not (user.rpps and user.organisation.strip()):
        raise AccountError("a requester needs an RPPS number and a practice (organisation)")
    if user.rpps is not None:
        holder = session.scalar(
            select(UserAccount.id).where(UserAccount.rpps == user.rpps, UserAccount.id != user.id)
        )
        if holder is not None:
            raise AccountError(f"RPPS number {user.rpps} belongs to another account")


def create_account(session: Session, user: User, password: str, *, now: datetime) -> UserAccount:
    """A new active account for ``user`` (its ``id`` is the login)."""
    if not user.id or set(user.id) - LOGIN_CHARS or len(user.id) > 64:
        raise AccountError("login: lower-case letters, digits, '-', '_' or '.', 64 at most")
    if user.id in RESERVED_LOGINS:
        raise AccountError(f"login {user.id!r} is reserved")
    if user.role is Role.system:
        raise AccountError("the system role is the service's own, not a person's")
    if user.role in (Role.first_reader, Role.senior, Role.requester) and not user.centre:
        raise AccountError(f"a {user.role.value} needs a centre")
    _check_identity(session, user)
    if len(password) < MIN_PASSWORD_CHARS:
        raise AccountError(f"password: {MIN_PASSWORD_CHARS} characters at least")
    if session.get(UserAccount, user.id) is not None:
        raise AccountError(f"login {user.id!r} is taken")
    account = UserAccount(
        id=user.id,
        name=user.name,
        role=user.role.value,
        organisation=user.organisation,
        centre=user.centre,
        email=user.email,
        rpps=user.rpps,
        phone=user.phone,
        password_hash=hash_password(password),
        active=True,
        created_at=now,
        disabled_at=None,
    )
    session.add(account)
    session.flush()
    logger.info("account %s created (%s)", user.id, user.role.value)
    return account


def _clean(field: str, value: str | None) -> str | None:
    """An identity field as stored: trimmed; an optional one (RPPS, phone) left empty is none."""
    text = (value or "").strip()
    return (text or None) if field in ("rpps", "phone") else text


def update_identity(session: Session, login: str, changes: Mapping[str, str | None]) -> list[str]:
    """Change the identity of account ``login`` (:data:`IDENTITY_FIELDS` only: name, practice,
    RPPS number, e-mail, phone) and return the names of the fields that changed.

    Requests sent from now on carry the new identity; those already sent keep the name and
    practice they were sent under (``serving.case_service.create_case``).
    """
    account = session.get(UserAccount, login)
    if account is None:
        raise AccountError(f"no account {login!r}")
    unknown = sorted(set(changes) - set(IDENTITY_FIELDS))
    if unknown:
        raise AccountError(f"not identity fields: {', '.join(unknown)}")
    current = to_user(account)
    updated = replace(current, **{key: _clean(key, value) for key, value in changes.items()})
    _check_identity(session, updated)
    changed = [key for key in IDENTITY_FIELDS if getattr(updated, key) != getattr(current, key)]
    for key in changed:
        setattr(account, key, getattr(updated, key))
    session.flush()
    if changed:
        logger.info("account %s: %s changed", login, ", ".join(changed))
    return changed


def disable_account(session: Session, login: str, *, now: datetime) -> UserAccount:
    """Disable ``login`` and revoke all its sessions and tokens (idempotent)."""
    account = session.get(UserAccount, login)
    if account is None:
        raise AccountError(f"no account {login!r}")
    if account.active:
        account.active = False
        account.disabled_at = now
    revoke_all(session, login, now=now)
    logger.info("account %s disabled", login)
    return account


def set_password(session: Session, login: str, password: str, *, now: datetime) -> UserAccount:
    """A new password for ``login`` (a reset by an administrator); every session and token of
    the account is revoked, so whoever knew the old password is signed out everywhere."""
    account = session.get(UserAccount, login)
    if account is None:
        raise AccountError(f"no account {login!r}")
    if len(password) < MIN_PASSWORD_CHARS:
        raise AccountError(f"password: {MIN_PASSWORD_CHARS} characters at least")
    account.password_hash = hash_password(password)
    revoke_all(session, login, now=now)
    logger.info("password of %s reset", login)
    return account


def list_accounts(session: Session) -> list[UserAccount]:
    return list(session.scalars(select(UserAccount).order_by(UserAccount.role, UserAccount.id)))


def load_user(session: Session, login: str) -> User | None:
    """The active account ``login`` as a :class:`User`, or ``None``."""
    account = session.get(UserAccount, login)
    return to_user(account) if account is not None and account.active else None


def lookup_user(session: Session | None, user_id: str) -> User | None:
    """Who ``user_id`` is, for names and RPPS numbers on past events and exports: the account
    (disabled ones too, their history stays theirs), else the demo directory's entry."""
    account = session.get(UserAccount, user_id) if session is not None else None
    return to_user(account) if account is not None else find_user(user_id)


def seed_demo_accounts(
    session: Session, *, now: datetime, only: Collection[str] | None = None
) -> int:
    """Create the demo directory's accounts (all, or those in ``only``) that do not exist yet,
    with the password :data:`~serving.users.DEMO_PASSWORD`; returns how many were created."""
    existing = set(session.scalars(select(UserAccount.id)))
    created = 0
    for user in DEMO_USERS:
        if user.id not in existing and (only is None or user.id in only):
            create_account(session, user, DEMO_PASSWORD, now=now)
            created += 1
    return created


# --- sign-in and its rate limit --------------------------------------------------------------


#: Expired failure rows removed per sign-in attempt (housekeeping, bounded work per request).
PURGE_BATCH = 100


def _lock_key(kind: str, value: str) -> int:
    """A stable 64-bit key for PostgreSQL's advisory locks (Python's ``hash`` changes per run)."""
    digest = hashlib.sha256(f"dermtriage-sign-in\0{kind}\0{value}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _serialise_claims(session: Session, login: str, client: str) -> None:
    """Make the claims of one login, or of one client, wait for each other until commit.

    PostgreSQL: transaction-scoped advisory locks, login first then client (always in that order,
    so two claims never wait for each other in a cycle). SQLite needs nothing here: the claim's
    first statement is a write, which takes the database's single write lock until commit, so no
    other claim can insert or commit between this claim's insert and its count.
    """
    if session.get_bind().dialect.name == "postgresql":
        for key in (_lock_key("login", login), _lock_key("client", client)):
            session.execute(select(func.pg_advisory_xact_lock(key)))


def claim_attempt(
    session: Session, login: str, client: str, *, now: datetime, limit: RateLimit
) -> None:
    """Reserve this sign-in attempt's place in the limit, or raise :class:`TooManyAttemptsError`.

    The attempt is written as a failure row *before* its password is checked (it stays one if the
    password is wrong; a success clears it with the login's other failures), then the rows of the
    window are counted, this one included, and the transaction commits. Claims of the same login
    or client are serialised (:func:`_serialise_claims`), so each count sees every earlier claim
    and a race of N attempts checks exactly as many passwords as the limit has room for; the
    others are refused without checking, and their rows rolled back. The caller's session must
    have nothing pending: this commits it.
    """
    since = now - limit.window
    _serialise_claims(session, login, client)
    session.add(LoginFailure(login=login, client=client, at=now))
    session.flush()
    for column, value, most in (
        (LoginFailure.login, login, limit.max_per_login),
        (LoginFailure.client, client, limit.max_per_client),
    ):
        count, oldest = session.execute(
            select(func.count(), func.min(LoginFailure.at)).where(
                column == value, LoginFailure.at > since
            )
        ).one()
        if count > most:
            session.rollback()
            oldest_at = oldest if oldest.tzinfo else oldest.replace(tzinfo=now.tzinfo)
            wait = (oldest_at + limit.window - now).total_seconds()
            raise TooManyAttemptsError(max(1, math.ceil(wait)))
    # Failures older than the window count for nothing any more: drop some as we go. Rows another
    # claim is dropping are skipped rather than waited for (PostgreSQL; SQLite has one writer).
    expired = (
        select(LoginFailure.id)
        .where(LoginFailure.at <= since)
        .order_by(LoginFailure.id)
        .limit(PURGE_BATCH)
        .with_for_update(skip_locked=True)
    )
    session.execute(delete(LoginFailure).where(LoginFailure.id.in_(expired)))
    session.commit()


def authenticate(
    session: Session,
    login: str,
    password: str,
    *,
    client: str,
    now: datetime,
    limit: RateLimit,
) -> User | None:
    """The account's user when ``password`` is right and the account active, else ``None``.

    Raises :class:`TooManyAttemptsError` before checking anything when the login or the client
    has failed too often lately. The attempt is counted first (:func:`claim_attempt`, which
    commits the session): a wrong password leaves it counted as a failure, a right one clears the
    login's failures (the caller commits that).
    """
    login = (login or "").strip().lower()[:64]
    client = (client or "unknown")[:64]
    claim_attempt(session, login, client, now=now, limit=limit)
    account = session.get(UserAccount, login) if login else None
    ok = False
    try:
        ok = _hasher.verify(account.password_hash if account else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok or account is None or not account.active:
        logger.info("failed sign-in for login %r", login)
        return None
    if _hasher.check_needs_rehash(account.password_hash):
        account.password_hash = hash_password(password)
    session.execute(delete(LoginFailure).where(LoginFailure.login == login))
    return to_user(account)


# --- tokens ----------------------------------------------------------------------------------


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(
    session: Session, user: User, kind: TokenKind, *, now: datetime, lifetime: timedelta
) -> tuple[str, datetime]:
    """A new secret for ``user`` (returned once, never stored) and its expiry."""
    token = secrets.token_urlsafe(32)
    expires = now + lifetime
    # Rows of tokens long expired only take room: a day past expiry they go.
    session.execute(delete(AuthToken).where(AuthToken.expires_at < now - timedelta(days=1)))
    session.add(
        AuthToken(
            token_hash=token_digest(token),
            user_id=user.id,
            kind=kind.value,
            created_at=now,
            expires_at=expires,
            revoked_at=None,
        )
    )
    return token, expires


def resolve_token(session: Session, token: str, kind: TokenKind, *, now: datetime) -> User | None:
    """The active user a live ``token`` of ``kind`` belongs to, or ``None``."""
    if not token or len(token) > 256:
        return None
    row = session.get(AuthToken, token_digest(token))
    if row is None or row.kind != kind.value or row.revoked_at is not None:
        return None
    if row.expires_at <= now:
        return None
    return load_user(session, row.user_id)


def revoke_token(session: Session, token: str, *, now: datetime) -> bool:
    """Revoke one token (sign-out); ``False`` when it was unknown or already revoked."""
    row = session.get(AuthToken, token_digest(token)) if token else None
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = now
    return True


def revoke_all(session: Session, login: str, *, now: datetime) -> int:
    rows: Sequence[AuthToken] = session.scalars(
        select(AuthToken).where(AuthToken.user_id == login, AuthToken.revoked_at.is_(None))
    ).all()
    for row in rows:
        row.revoked_at = now
    return len(rows)


# --- CSRF ------------------------------------------------------------------------------------


def csrf_for_session(session_token: str) -> str:
    """The CSRF token of a signed-in browser: bound to its session secret, unguessable without
    it (the session cookie is HttpOnly), and different for every session."""
    return hashlib.sha256(b"dermtriage-csrf\0" + session_token.encode()).hexdigest()


def new_presession_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_matches(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))
