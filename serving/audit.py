"""The audit trail in the database: record an event, verify the chain, list events.

:func:`record` is the one way in. It writes the event in the caller's session, so the event
commits or rolls back with the change it records: no change without its event, no event without
its change. Writers take turns on the chain's head row (``audit_head``): its first statement is an
UPDATE of that row, which on PostgreSQL locks it until the transaction ends and on SQLite takes the
database's write lock, so two writers can never give two events the same predecessor.

The chain itself (canonical form, hashing, verification) is pure and lives in
:mod:`pipeline.audit_chain`; see docs/audit.md for what is recorded and how to check it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import Select, func, insert, select, update
from sqlalchemy.orm import Session

from pipeline.audit_chain import (
    GENESIS_HASH,
    ChainBreak,
    ChainEvent,
    Verification,
    check_details,
    seal,
)
from pipeline.audit_chain import verify as verify_events
from serving.db.models import AuditEvent, AuditHead, Case

logger = logging.getLogger(__name__)

HEAD_ID = 1
VERIFY_BATCH = 2000

# What the service records (docs/audit.md lists them). Reads of patient data:
CASE_READ = "case.read"  # the case's detail (API or page)
CASE_HISTORY_READ = "case.history.read"
PHOTO_READ = "case.photo.read"  # a photo or its thumbnail
SALIENCY_READ = "case.saliency.read"
CASE_EXPORT = "case.export"  # the report as PDF or FHIR
WORKLIST_READ = "worklist.read"  # one event per listing, with how many cases it showed
REQUESTS_READ = "requests.read"  # a requester's own list
AUDIT_READ = "audit.read"
# Changes: "case.<workflow action>" (case.submit, case.start_review, case.message, ...), and
CASE_SCORE = "case.score"
CASE_SCORE_FAILED = "case.score_failed"
PHOTO_QUALITY = "case.photo.quality"


class Actor(Protocol):
    """Whoever acts: :class:`serving.users.User`, or an :class:`AuditActor` for scripts."""

    @property
    def id(self) -> str: ...

    @property
    def role(self) -> Any: ...


@dataclass(frozen=True)
class AuditActor:
    """An actor that is not a signed-in user (a command run by an operator, a job)."""

    id: str
    role: str


def _role_name(role: Any) -> str:
    return str(getattr(role, "value", role))


def record(
    session: Session,
    actor: Actor,
    action: str,
    case_id: int | None = None,
    model_version: str | None = None,
    details: Mapping[str, Any] | None = None,
    *,
    at: datetime | None = None,
) -> ChainEvent:
    """Append one event to the trail inside ``session``'s transaction and return it, sealed.

    ``details`` is a small JSON object of ids, counts and codes: never a name, a pseudonym, a
    questionnaire answer or a message (``pipeline.audit_chain.check_details`` refuses the obvious
    keys and anything over 4 KB). ``at`` defaults to now (UTC); pass the service's clock.
    """
    clean = check_details(details)
    moment = (at or datetime.now(UTC)).astimezone(UTC)
    session.flush()  # the change being recorded is written (and row-locked) before the head
    head = AuditHead.__table__
    row = session.execute(
        update(head)
        .where(head.c.id == HEAD_ID)
        .values(seq=head.c.seq + 1)
        .returning(head.c.seq, head.c.hash)
    ).one_or_none()
    if row is None:
        raise RuntimeError("the audit trail has no head row: run the database migrations")
    event = seal(
        ChainEvent(
            seq=row.seq,
            at=moment,
            actor_id=actor.id,
            actor_role=_role_name(actor.role),
            action=action,
            case_id=case_id,
            model_version=model_version,
            details=clean,
            prev_hash=row.hash,
        )
    )
    session.execute(
        insert(AuditEvent.__table__).values(
            seq=event.seq,
            at=event.at,
            actor_id=event.actor_id,
            actor_role=event.actor_role,
            action=event.action,
            case_id=event.case_id,
            model_version=event.model_version,
            details=event.details,
            prev_hash=event.prev_hash,
            hash=event.hash,
        )
    )
    session.execute(update(head).where(head.c.id == HEAD_ID).values(hash=event.hash))
    logger.debug("audit event %d: %s by %s", event.seq, action, actor.id)
    return event


def change_details(
    from_status: str | None, to_status: str | None, detail: Mapping[str, Any] | None = None
) -> dict[str, Any] | None:
    """Audit details of a workflow change: the statuses, plus the numbers the case event carries
    (photo count, message length, scores). Strings are left out on purpose: a case event's free
    values (a conduct, an error text) may speak about the patient."""
    out: dict[str, Any] = {}
    if from_status:
        out["from"] = from_status
    if to_status:
        out["to"] = to_status
    for key, value in (detail or {}).items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = value
    return out or None


def record_photo_quality(session: Session, actor: Actor, case: Case, *, at: datetime) -> None:
    """One :data:`PHOTO_QUALITY` event per photo of a new case: its verdict, problem codes and
    the fitted parts of the checks that judged it (as a score records its model's version)."""
    for photo in case.photos:
        quality = photo.quality or {}
        codes = [p.get("code") for p in quality.get("problems", []) if isinstance(p, dict)]
        details = {
            "photo_id": photo.id,
            "position": photo.position,
            "acceptable": photo.quality_acceptable,
            "problems": codes,
        }
        if isinstance(quality.get("checks"), dict):
            details["checks"] = quality["checks"]
        record(session, actor, PHOTO_QUALITY, case_id=case.id, details=details, at=at)


def record_listing(
    session: Session, actor: Actor, action: str, cases: Sequence[Case], *, via: str
) -> None:
    """One event for a list of cases shown (a worklist page): which ones, not what they hold."""
    ids = [case.id for case in cases]
    record(session, actor, action, details={"via": via, "shown": len(ids), "case_ids": ids})


def to_chain_event(row: Any) -> ChainEvent:
    """An :class:`AuditEvent` (or a row of its columns) as the chain's value type."""
    return ChainEvent(
        seq=row.seq,
        at=row.at,
        actor_id=row.actor_id,
        actor_role=row.actor_role,
        action=row.action,
        case_id=row.case_id,
        model_version=row.model_version,
        details=row.details,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def _stream(
    session: Session, batch: int = VERIFY_BATCH, after: int | None = None
) -> Iterator[ChainEvent]:
    """Every event (after sequence number ``after``) in sequence order, a batch at a time
    (constant memory, short queries).

    Plain rows, not ORM objects, so a long walk fills no identity map in the caller's session.
    With no ``after`` there is no lower bound: a forged event numbered 0 or below is seen too.
    """
    table = AuditEvent.__table__
    while True:
        query = select(table).order_by(table.c.seq).limit(batch)
        if after is not None:
            query = query.where(table.c.seq > after)
        rows = session.execute(query).all()
        if not rows:
            return
        for row in rows:
            yield to_chain_event(row)
        after = rows[-1].seq


@dataclass(frozen=True)
class Anchor:
    """A (sequence number, hash) pair kept outside the database, e.g. printed by a past verify."""

    seq: int
    hash: str

    @classmethod
    def parse(cls, text: str) -> Anchor:
        """``"1234:ab12..."`` -> ``Anchor(1234, "ab12...")``."""
        seq, sep, digest = text.partition(":")
        if not sep or not seq.isdigit() or len(digest) != 64:
            raise ValueError(f"an anchor is SEQ:SHA256HEX, not {text!r}")
        return cls(int(seq), digest.lower())

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash}"


@dataclass(frozen=True)
class ChainStatus:
    """What :func:`verify` found: the walk over the events, then the head and anchor checks."""

    walk: Verification
    head_seq: int | None
    head_hash: str | None
    first_break: ChainBreak | None

    @property
    def intact(self) -> bool:
        return self.first_break is None

    @property
    def count(self) -> int:
        return self.walk.checked

    @property
    def anchor(self) -> Anchor:
        """The head reached, to keep outside the database (detects a later truncation)."""
        return Anchor(self.walk.head_seq, self.walk.head_hash)


def verify(
    session: Session, anchors: Sequence[Anchor] = (), *, since: Anchor | None = None
) -> ChainStatus:
    """Check the whole stored chain, then that it ends where the head row says, then ``anchors``.

    The walk names the first edited, missing or inserted event. An intact walk that stops short of
    the head means the newest events were removed ("truncated"); events beyond the head were
    inserted behind the recorder's back. An anchor whose event is gone or hashes differently means
    the chain was cut or rebuilt since the anchor was taken.

    ``since``: walk only the events after this already verified point (it is checked as an
    anchor too). Cheap, but blind to edits *before* it; :class:`ChainMonitor` pairs it with
    regular full walks.
    """
    if since is None:
        walk = verify_events(_stream(session))
    else:
        anchors = [since, *anchors]
        walk = verify_events(
            _stream(session, after=since.seq), start_seq=since.seq + 1, start_prev_hash=since.hash
        )
    head = session.get(AuditHead, HEAD_ID)
    head_seq, head_hash = (head.seq, head.hash) if head is not None else (None, None)
    broken = walk.first_break
    if broken is None and head is None:
        broken = ChainBreak(walk.head_seq + 1, "no_head", "the audit_head row is missing")
    elif broken is None and (walk.head_seq, walk.head_hash) != (head_seq, head_hash):
        assert head_seq is not None
        if walk.head_seq < head_seq:
            broken = ChainBreak(
                walk.head_seq + 1,
                "truncated",
                f"the chain ends at event {walk.head_seq} but its head is at event {head_seq}: "
                f"events {walk.head_seq + 1}..{head_seq} were removed",
            )
        else:
            broken = ChainBreak(
                walk.head_seq,
                "beyond_head",
                f"the chain ends at event {walk.head_seq}, beyond its head ({head_seq}): "
                "events were written without the recorder",
            )
    if broken is None:
        for anchor in sorted(anchors, key=lambda a: a.seq):
            stored = session.scalar(select(AuditEvent.hash).where(AuditEvent.seq == anchor.seq))
            if stored != anchor.hash:
                broken = ChainBreak(
                    anchor.seq,
                    "anchor",
                    f"event {anchor.seq} no longer matches the anchor kept for it "
                    f"({'missing' if stored is None else 'different hash'}): the chain was "
                    "cut or rebuilt",
                )
                break
    if broken is not None:
        logger.warning("audit chain broken at event %d: %s", broken.seq, broken.reason)
    return ChainStatus(walk, head_seq, head_hash, broken)


@dataclass(frozen=True)
class MonitoredStatus:
    """A chain status for a page: ``full`` when the whole chain was walked for it, else only the
    events after the last full walk (done at ``full_at``, monotonic clock aside)."""

    status: ChainStatus
    full: bool
    full_at: datetime


class ChainMonitor:
    """Chain status for pages, without walking a million events on every view.

    The whole chain is walked when asked (``full=True``), on first use, and whenever the last full
    walk is older than ``full_every_s``; in between, only the events after the head that walk
    reached (an anchor, so a cut or rebuild of it shows). An edit to an older event therefore
    shows at the next full walk, at most ``full_every_s`` later. Thread-safe: one per app.
    """

    def __init__(self, full_every_s: float = 300.0) -> None:
        self.full_every_s = full_every_s
        self._lock = threading.Lock()
        self._anchor: Anchor | None = None
        self._full_at: datetime | None = None
        self._full_monotonic = 0.0

    def check(self, session: Session, *, full: bool = False) -> MonitoredStatus:
        with self._lock:
            anchor, full_at = self._anchor, self._full_at
            stale = time.monotonic() - self._full_monotonic > self.full_every_s
        if full or anchor is None or full_at is None or stale:
            status = verify(session)
            full_at = datetime.now(UTC)
            if status.intact:
                with self._lock:
                    self._anchor, self._full_at = status.anchor, full_at
                    self._full_monotonic = time.monotonic()
            return MonitoredStatus(status, True, full_at)
        status = verify(session, since=anchor)
        if not status.intact:
            with self._lock:  # the next view walks everything again
                self._anchor = None
        return MonitoredStatus(status, False, full_at)


@dataclass(frozen=True)
class AuditFilters:
    """What an auditor narrows the list by; every field is optional."""

    actor_id: str | None = None
    action: str | None = None  # exact, or a prefix ending in "." or "*" ("case.", "case.*")
    case_id: int | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive

    def apply(self, query: Select[Any]) -> Select[Any]:
        if self.actor_id:
            query = query.where(AuditEvent.actor_id == self.actor_id)
        if self.action:
            if self.action.endswith(("*", ".")):
                query = query.where(AuditEvent.action.startswith(self.action.rstrip("*")))
            else:
                query = query.where(AuditEvent.action == self.action)
        if self.case_id is not None:
            query = query.where(AuditEvent.case_id == self.case_id)
        if self.since is not None:
            query = query.where(AuditEvent.at >= self.since)
        if self.until is not None:
            query = query.where(AuditEvent.at < self.until)
        return query

    def as_details(self) -> dict[str, Any]:
        """The filters as audit details (to record who looked for what)."""
        out: dict[str, Any] = {}
        for key in ("actor_id", "action", "case_id"):
            if getattr(self, key) not in (None, ""):
                out[key] = getattr(self, key)
        for key in ("since", "until"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key).isoformat()
        return out


@dataclass(frozen=True)
class EventPage:
    events: list[ChainEvent]
    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


def list_events(
    session: Session, filters: AuditFilters | None = None, *, page: int = 1, page_size: int = 50
) -> EventPage:
    """One page of the events matching ``filters``, newest first."""
    filters = filters or AuditFilters()
    page = max(1, page)
    total = session.scalar(filters.apply(select(func.count()).select_from(AuditEvent))) or 0
    query = filters.apply(select(AuditEvent)).order_by(AuditEvent.seq.desc())
    rows = session.scalars(query.offset((page - 1) * page_size).limit(page_size))
    return EventPage([to_chain_event(r) for r in rows], total, page, page_size)


def event_out(event: ChainEvent) -> dict[str, Any]:
    """An event as JSON (the API and ``dermtriage audit list --json``)."""
    return {
        "seq": event.seq,
        "at": event.at.astimezone(UTC).isoformat(),
        "actor_id": event.actor_id,
        "actor_role": event.actor_role,
        "action": event.action,
        "case_id": event.case_id,
        "model_version": event.model_version,
        "details": event.details,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


def status_out(status: ChainStatus) -> dict[str, Any]:
    broken = status.first_break
    return {
        "intact": status.intact,
        "events": status.count,
        "head": {"seq": status.head_seq, "hash": status.head_hash},
        "first_break": (
            {"seq": broken.seq, "reason": broken.reason, "message": broken.message}
            if broken
            else None
        ),
    }


__all__ = [
    "GENESIS_HASH",
    "Actor",
    "Anchor",
    "AuditActor",
    "AuditFilters",
    "ChainStatus",
    "EventPage",
    "list_events",
    "record",
    "verify",
]
