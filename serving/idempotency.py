"""Submitting a case exactly once, however often the GP's phone retries.

A phone on a bad network sends a request, loses the answer, and sends it again. With an
``Idempotency-Key`` header (any client-chosen token, the same on every retry), the retry gets the
case the first attempt created instead of a duplicate:

- the key is stored on the case, unique per requester (database constraint
  ``uq_cases_requester_idempotency_key``); a retry finds it and is answered with that case;
- two identical requests racing each other both try to insert; the constraint lets one win, and
  the loser's transaction rolls back (removing the files only it wrote) and answers with the
  winner's case;
- the same key sent with a *different* request (other photos or questionnaire) is refused
  (:class:`IdempotencyMismatchError`), as the IETF draft on the header recommends, so a client bug
  cannot silently drop a case.

Without the header every request creates a case, as before.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pipeline.questionnaire import Questionnaire
from serving import case_service as svc
from serving.db.models import Case
from serving.db.session import Database
from serving.storage import PhotoStore
from serving.users import User

logger = logging.getLogger(__name__)

HEADER = "Idempotency-Key"

#: Printable ASCII without spaces, 1 to 128 characters (a UUID fits; so does a ULID).
KEY_PATTERN = r"^[\x21-\x7e]{1,128}$"
_KEY = re.compile(KEY_PATTERN)


class IdempotencyMismatchError(Exception):
    """The key was already used by this requester for a different request."""

    code = "idempotency_key_reused"

    def __init__(self, case_id: int) -> None:
        super().__init__(
            f"this Idempotency-Key already created case {case_id} from a different request; "
            "use a new key for a new request"
        )
        self.case_id = case_id


def valid_key(value: str) -> bool:
    return bool(_KEY.match(value))


def request_fingerprint(questionnaire: dict[str, Any], photos: Sequence[svc.PhotoUpload]) -> str:
    """SHA-256 of what makes two requests the same: the questionnaire and each photo (kind and
    bytes, in order). Field order in the JSON does not matter."""
    digest = hashlib.sha256()
    digest.update(json.dumps(questionnaire, sort_keys=True, ensure_ascii=False).encode())
    for photo in photos:
        digest.update(b"\x00" + photo.kind.encode() + b"\x00")
        digest.update(hashlib.sha256(photo.data).digest())
    return digest.hexdigest()


def find_case(session: Session, requester_id: str, key: str) -> Case | None:
    query = select(Case).where(Case.requester_id == requester_id, Case.idempotency_key == key)
    return session.scalars(query).one_or_none()


@dataclass(frozen=True)
class Submission:
    """The case a submission created (``replayed`` false) or found (``replayed`` true)."""

    case_id: int
    replayed: bool


def _replay(database: Database, user: User, key: str, fingerprint: str) -> Submission | None:
    with database.session() as session:
        existing = find_case(session, user.id, key)
        if existing is None:
            return None
        if existing.request_sha256 != fingerprint:
            raise IdempotencyMismatchError(existing.id)
        logger.info("idempotent replay of case %s", existing.id)
        return Submission(existing.id, replayed=True)


def submit_once(
    database: Database,
    store: PhotoStore,
    user: User,
    questionnaire: Questionnaire,
    raw_questionnaire: dict[str, Any],
    photos: Sequence[svc.PhotoUpload],
    *,
    key: str | None,
    now: datetime,
    max_bytes: int,
    max_pixels: int,
    lang: svc.Lang,
) -> Submission:
    """Create the case in one committed transaction, or find the one ``key`` already created.

    When this returns, the case's rows are committed and its photo files fsync'ed: the caller may
    acknowledge it. Raises the case service's errors for a refused request (nothing written),
    and :class:`IdempotencyMismatchError`.
    """
    fingerprint = request_fingerprint(raw_questionnaire, photos) if key else None
    if key is not None and fingerprint is not None:
        found = _replay(database, user, key, fingerprint)
        if found is not None:
            return found
    try:
        with database.session() as session:
            case = svc.create_case(
                session,
                store,
                user,
                questionnaire,
                photos,
                now=now,
                max_bytes=max_bytes,
                max_pixels=max_pixels,
                lang=lang,
                idempotency_key=key,
                request_sha256=fingerprint,
            )
            case_id = case.id
    except IntegrityError:
        if key is None or fingerprint is None:
            raise
        found = _replay(database, user, key, fingerprint)  # a racing twin won: answer with it
        if found is None:
            raise
        return found
    return Submission(case_id, replayed=False)
