"""The case database, as typed SQLAlchemy 2 models.

One request from a GP is a :class:`Case` with its :class:`Photo` rows; the scoring worker adds
:class:`Score` rows (one per photo, with the model version that produced it); experts and the
requester exchange :class:`Message` rows; the expert's answer is the case's :class:`Report`; and
every change of state is an :class:`Event` saying who did what, and when.

Times are stored as UTC and always come back time-zone aware (SQLite keeps no zone, so
:class:`UTCDateTime` restores it), so waiting times never mix naive and aware datetimes.
The schema is created and changed only by the Alembic migrations in ``serving/db/migrations``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

if TYPE_CHECKING:
    from models.modality import ModalityVerdict
    from models.predictor import Prediction

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


SCORE_ROLE_CHAMPION = "champion"
SCORE_ROLE_SHADOW = "shadow"


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and returned aware; naive datetimes are refused on the way in."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, datetime: UTCDateTime}


class Case(Base):
    """A request for a dermatologist's opinion: questionnaire, photos, workflow state."""

    __tablename__ = "cases"
    # One case per (requester, Idempotency-Key): a retried upload finds its first attempt's case.
    __table_args__ = (
        UniqueConstraint(
            "requester_id", "idempotency_key", name="uq_cases_requester_idempotency_key"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(32), index=True)
    submitted_at: Mapped[datetime] = mapped_column(index=True)
    updated_at: Mapped[datetime]
    requester_id: Mapped[str] = mapped_column(String(64), index=True)
    requester_name: Mapped[str] = mapped_column(String(120))
    requester_organisation: Mapped[str] = mapped_column(String(160))
    # The resource centre the case was sent to (its experts read it): see pipeline.access.
    centre: Mapped[str] = mapped_column(String(64), index=True, default="crd-lyon")
    patient_pseudonym: Mapped[str] = mapped_column(String(40), index=True)
    questionnaire: Mapped[dict[str, Any]]
    # Automatic scoring: pending -> done, or failed (retried from next_scoring_at on).
    scoring_state: Mapped[str] = mapped_column(String(16), index=True, default="pending")
    scoring_attempts: Mapped[int] = mapped_column(Integer, default=0)
    scoring_error: Mapped[str | None] = mapped_column(Text)
    next_scoring_at: Mapped[datetime | None]
    # The durable scoring queue's lease: a worker that dies mid-score leaves a lease that expires.
    scoring_claimed_at: Mapped[datetime | None]
    scoring_lease_until: Mapped[datetime | None]
    scored_at: Mapped[datetime | None]
    first_read_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    request_sha256: Mapped[str | None] = mapped_column(String(64))
    # Bumped by every human action, as a compare-and-set (serving.case_service._claim): of two
    # people acting on the case at once, exactly one succeeds.
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The patient agreed that the photos may be reused to improve the tool (the GP form's box);
    # only such cases, once validated, are exported as training data.
    reuse_consent: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    photos: Mapped[list[Photo]] = relationship(
        back_populates="case", order_by="Photo.position", cascade="all, delete-orphan"
    )
    scores: Mapped[list[Score]] = relationship(
        back_populates="case", order_by="Score.id", cascade="all, delete-orphan"
    )
    messages: Mapped[list[Message]] = relationship(
        back_populates="case", order_by="Message.id", cascade="all, delete-orphan"
    )
    report: Mapped[Report | None] = relationship(
        back_populates="case", cascade="all, delete-orphan", uselist=False
    )
    events: Mapped[list[Event]] = relationship(
        back_populates="case", order_by="Event.id", cascade="all, delete-orphan"
    )
    outcomes: Mapped[list[Outcome]] = relationship(
        back_populates="case", order_by="Outcome.id", cascade="all, delete-orphan"
    )

    @property
    def current_scores(self) -> list[Score]:
        """The champion's scores of the latest scoring run (older runs are kept, marked
        superseded; a challenger's shadow scores never count)."""
        return [s for s in self.scores if not s.superseded and s.role != SCORE_ROLE_SHADOW]

    @property
    def case_score(self) -> Score | None:
        """The case's score: its riskiest photo (highest p_malignant; first photo on ties).

        Taking the maximum, not the mean, means one suspicious photo among reassuring ones is
        enough to raise the case.
        """
        scores = self.applicable_scores
        if not scores:
            return None
        return max(scores, key=lambda s: (s.p_malignant or 0.0, -s.photo_position))

    @property
    def applicable_scores(self) -> list[Score]:
        """The current scores that carry a probability: photos within the model's intended use
        (dermoscopic). A clinical photo's row says why it has none (:attr:`Score.domain_reason`)."""
        return [s for s in self.current_scores if s.p_malignant is not None]

    @property
    def ai_not_applicable_reason(self) -> str | None:
        """Why the AI gave the case no score although scoring ran: the reason code of its first
        unscored photo (``clinical_photo``...) when *no* photo was within the intended use."""
        scores = self.current_scores
        if not scores or self.applicable_scores:
            return None
        return next((s.domain_reason for s in scores if s.domain_reason), None)

    @property
    def quality_ok(self) -> bool:
        """False when any photo failed the quality checks (unknown counts as fine)."""
        return all(p.quality_acceptable is not False for p in self.photos)


class Photo(Base):
    """One stored photo of a case; the bytes live in the photo store under ``sha256``."""

    __tablename__ = "photos"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    mime: Mapped[str] = mapped_column(String(32))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(Integer)
    thumbnail_sha256: Mapped[str] = mapped_column(String(64))
    quality: Mapped[dict[str, Any] | None]
    quality_acceptable: Mapped[bool | None] = mapped_column(Boolean)
    created_at: Mapped[datetime]

    case: Mapped[Case] = relationship(back_populates="photos")


class Score(Base):
    """The model's opinion of one photo, with the model version that gave it and its role."""

    __tablename__ = "scores"
    __table_args__ = (
        Index("ix_scores_case_current", "case_id", "superseded"),
        Index("ix_scores_model_version_role", "model_version", "role"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"))
    photo_position: Mapped[int] = mapped_column(Integer)
    model_version: Mapped[str] = mapped_column(String(128), index=True)
    # NULL for a photo outside the model's intended use (``domain_reason`` says why).
    p_malignant: Mapped[float | None] = mapped_column(Float)
    uncertainty: Mapped[float | None] = mapped_column(Float)
    predicted_class: Mapped[str | None] = mapped_column(String(16))
    probabilities: Mapped[dict[str, Any] | None]
    saliency_sha256: Mapped[str | None] = mapped_column(String(64))
    superseded: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    # ``champion``: the worklist's score; ``shadow``: a challenger's, stored for comparison only.
    role: Mapped[str] = mapped_column(
        String(16), default=SCORE_ROLE_CHAMPION, server_default=SCORE_ROLE_CHAMPION
    )
    # The photo-modality check (models.modality): the domain it saw (dermoscopic, clinical,
    # other), why an out-of-scope photo has no probability, the check's version, and for a
    # dermoscopic photo its distance from the training photos and whether that is unusual.
    # NULL on rows scored before the check existed (migration 0009).
    domain: Mapped[str | None] = mapped_column(String(16))
    domain_reason: Mapped[str | None] = mapped_column(String(32))
    modality_version: Mapped[str | None] = mapped_column(String(32))
    ood: Mapped[bool | None] = mapped_column(Boolean)
    ood_distance: Mapped[float | None] = mapped_column(Float)

    case: Mapped[Case] = relationship(back_populates="scores")

    @classmethod
    def from_prediction(
        cls,
        case: Case,
        photo_id: int,
        position: int,
        prediction: Prediction,
        *,
        now: datetime,
        role: str = SCORE_ROLE_CHAMPION,
        saliency_sha256: str | None = None,
        verdict: ModalityVerdict | None = None,
    ) -> Score:
        """The row of one photo's prediction: the champion's and a shadow's are stored alike."""
        return cls(
            **_verdict_columns(verdict),
            case=case,
            photo_id=photo_id,
            photo_position=position,
            model_version=prediction.model_version,
            p_malignant=float(prediction.p_malignant),
            uncertainty=float(prediction.uncertainty),
            predicted_class=prediction.predicted_class,
            probabilities={k: float(v) for k, v in prediction.probabilities.items()},
            saliency_sha256=saliency_sha256,
            superseded=False,
            created_at=now,
            role=role,
        )

    @classmethod
    def not_applicable(
        cls,
        case: Case,
        photo_id: int,
        position: int,
        verdict: ModalityVerdict,
        *,
        model_version: str,
        now: datetime,
        role: str = SCORE_ROLE_CHAMPION,
    ) -> Score:
        """The row of a photo the model was not made for: no probability, the reason instead.

        Stored (rather than no row) so that the case page, the worklist and the audit can say
        *why* the AI is silent, distinct from a score that failed or is still pending."""
        return cls(
            **_verdict_columns(verdict),
            case=case,
            photo_id=photo_id,
            photo_position=position,
            model_version=model_version,
            p_malignant=None,
            uncertainty=None,
            predicted_class=None,
            probabilities=None,
            superseded=False,
            created_at=now,
            role=role,
        )


def _verdict_columns(verdict: ModalityVerdict | None) -> dict[str, Any]:
    if verdict is None:
        return {}
    return {
        "domain": verdict.domain,
        "domain_reason": verdict.reason,
        "modality_version": verdict.version,
        "ood": verdict.ood if verdict.applicable else None,
        "ood_distance": round(verdict.ood_distance, 4),
    }


class Message(Base):
    """A message on a case: a plain note, an expert's question, or the requester's answer."""

    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    author_id: Mapped[str] = mapped_column(String(64))
    author_name: Mapped[str] = mapped_column(String(120))
    author_role: Mapped[str] = mapped_column(String(32))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]

    case: Mapped[Case] = relationship(back_populates="messages")


class Report(Base):
    """The expert's answer to the request; frozen once a senior validates it."""

    __tablename__ = "reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), unique=True)
    conduct: Mapped[str] = mapped_column(String(16))
    interval: Mapped[int | None] = mapped_column(Integer)
    diagnosis: Mapped[str] = mapped_column(String(300), default="")
    # The structured diagnosis (a key of pipeline.diagnosis); NULL on reports written before it.
    diagnosis_code: Mapped[str | None] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    author_id: Mapped[str] = mapped_column(String(64))
    author_name: Mapped[str] = mapped_column(String(120))
    revision: Mapped[int] = mapped_column(Integer, default=1)
    written_at: Mapped[datetime]
    validated_by_id: Mapped[str | None] = mapped_column(String(64))
    validated_by_name: Mapped[str | None] = mapped_column(String(120))
    validated_at: Mapped[datetime | None]

    case: Mapped[Case] = relationship(back_populates="report")


class Outcome(Base):
    """What the lesion turned out to be, recorded after the report: coded diagnosis, date,
    and how it was confirmed (histology, consultation, follow-up)."""

    __tablename__ = "outcomes"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    diagnosis_code: Mapped[str] = mapped_column(String(32))
    outcome_date: Mapped[date] = mapped_column(Date)
    source: Mapped[str] = mapped_column(String(16))
    recorded_by_id: Mapped[str] = mapped_column(String(64))
    recorded_by_name: Mapped[str] = mapped_column(String(120))
    recorded_at: Mapped[datetime]

    case: Mapped[Case] = relationship(back_populates="outcomes")


class Event(Base):
    """Who did what to a case, and when: every transition, message and report change."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor_id: Mapped[str] = mapped_column(String(64))
    actor_role: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(32))
    to_status: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[dict[str, Any] | None]

    case: Mapped[Case] = relationship(back_populates="events")


class UserAccount(Base):
    """A person who may sign in: identity, role, centre, argon2 password hash, active flag.

    ``id`` is the login. Accounts are disabled, never deleted, so the names in past events and
    reports keep resolving; a disabled account cannot sign in and its tokens stop working.
    """

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    role: Mapped[str] = mapped_column(String(32))
    organisation: Mapped[str] = mapped_column(String(160))
    centre: Mapped[str | None] = mapped_column(String(64))
    email: Mapped[str] = mapped_column(String(254))
    rpps: Mapped[str | None] = mapped_column(String(11))
    phone: Mapped[str | None] = mapped_column(String(32))
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    disabled_at: Mapped[datetime | None]


class AuthToken(Base):
    """A browser session or an API bearer token, stored as the SHA-256 of the secret only."""

    __tablename__ = "auth_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # "session" or "api"
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class LoginFailure(Base):
    """One failed sign-in (login tried, client address, time), counted by the rate limit."""

    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(primary_key=True)
    login: Mapped[str] = mapped_column(String(64), index=True)
    client: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(index=True)


class AuditEvent(Base):
    """One link of the append-only, hash-chained audit trail (see ``pipeline.audit_chain``).

    Written only through :func:`serving.audit.record`, in the transaction of the act it records;
    database triggers refuse UPDATE and DELETE. ``case_id`` is deliberately not a foreign key:
    the trail must outlive (and never cascade with) the rows it speaks of.
    """

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(index=True)
    actor_id: Mapped[str] = mapped_column(String(64), index=True)
    actor_role: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64), index=True)
    case_id: Mapped[int | None] = mapped_column(Integer, index=True)
    model_version: Mapped[str | None] = mapped_column(String(128))
    details: Mapped[dict[str, Any] | None]
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditHead(Base):
    """The chain's head: a single row (``id`` 1) with the last sequence number and hash.

    Every writer locks this row first, so concurrent writers take turns and never fork the chain;
    it also tells :func:`serving.audit.verify` where the chain should end (a trigger refuses to move
    it backwards).
    """

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))
