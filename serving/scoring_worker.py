"""Background scoring: an upload never waits on the model.

A new case is stored ``submitted`` with ``scoring_state = pending`` and shows in the worklist at
once, flagged "not yet scored". This worker, a daemon thread started with the service, picks due
cases oldest first, scores every photo with the calibrated classifier, stores one
:class:`~serving.db.Score` per photo (with the model version) and a Grad-CAM overlay, and moves
the case ``submitted -> scored`` (the case's score is its riskiest photo; see
:attr:`serving.db.Case.case_score`).

The queue is the ``cases`` table itself, so it is as durable as the cases: ``scoring_state``
(pending, done, failed), ``scoring_attempts``, ``next_scoring_at`` (back-off), ``scoring_error``
(the last error) and a lease (``scoring_claimed_at``, ``scoring_lease_until``). A worker *claims*
a due case with one conditional ``UPDATE`` (only one claimer can win it, in this process or
another) that also counts the attempt, then scores it outside any transaction, then writes the
result in one short transaction that re-checks the case still wants a score.

Failures never lose a case: a missing model, an unreadable photo or a crash in the model leaves the
case in ``scoring_state = failed`` with the error, flagged for a human look by the priority policy,
and it is retried after an exponential back-off (30 s, 1 min, 2 min, ... at most 1 h). A worker
killed mid-score leaves its lease, which expires (``scoring_lease_seconds``); the case is then
claimed again. After ``max_attempts`` attempts (failures and crashes alike) the case stays
``failed``, flagged for a human with the reason, and is no longer retried. The model is loaded
lazily on first need, and loading is retried on the same schedule when it fails.

Several workers, in this process or others on other machines (``dermtriage worker``,
docs/deployment.md), share the queue. :meth:`claim_next` takes the oldest due case: on PostgreSQL
with ``SELECT ... FOR UPDATE SKIP LOCKED`` (workers skip each other's rows instead of queueing on
them), on SQLite with the compare-and-set of :meth:`claim`. The claim's time
(``scoring_claimed_at``) is the holder's token: while it scores, the worker renews its lease every
third of ``lease_seconds`` (a long score is not taken over), and it writes a result only if the
token is still its own, so a worker that lost its lease never adds a second set of scores. On a
graceful stop (:meth:`stop`) the case in hand is finished; past the drain time its lease is
released (the attempt not counted) and another worker takes it at once.

The structure, for whoever extends it: :meth:`run_once` claims due cases one at a time;
:meth:`_score` computes; :meth:`_record_success` / :meth:`_record_failure` write; the lease
methods (:meth:`renew_lease`, :meth:`release_held`) keep the holder's claim; nothing else touches
the queue columns. After a pass that found no champion work, the optional ``shadow`` pass runs
(:mod:`serving.shadow_scoring`), in the same thread.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from PIL import Image
from sqlalchemy import and_, or_, select, update

from pipeline.priority import ScoringState
from pipeline.workflow import Action, Status, transition
from serving import audit
from serving.case_service import advance_status
from serving.db.models import Case, Event, Score
from serving.db.session import Database
from serving.storage import PhotoStore
from serving.users import SYSTEM

if TYPE_CHECKING:
    from models.engine import EngineConfig
    from models.intended_use import ChecksModality, PhotoOutcome

logger = logging.getLogger(__name__)

OVERLAY_SIDE = 448
BASE_BACKOFF_S = 30.0
MAX_BACKOFF_S = 3600.0
DEFAULT_LEASE_S = 300.0
DEFAULT_MAX_ATTEMPTS = 10


class PredictionLike(Protocol):
    probabilities: dict[str, float]
    p_malignant: float
    uncertainty: float
    predicted_class: str
    model_version: str


class PredictorLike(Protocol):
    """What the worker needs from ``models.predictor.Predictor``."""

    version: str

    def predict(self, images: Sequence[Image.Image]) -> Sequence[PredictionLike]: ...

    def saliency(self, image: Image.Image) -> np.ndarray: ...


def backoff_seconds(attempts: int) -> float:
    """Delay before retry number ``attempts`` (1-based): 30 s doubling, capped at an hour."""
    return min(MAX_BACKOFF_S, BASE_BACKOFF_S * 2 ** max(0, attempts - 1))


def centre_square(image: Image.Image, side: int) -> Image.Image:
    """The centred square crop resized to ``side``: the framing the model's saliency refers to."""
    width, height = image.size
    edge = min(width, height)
    left, top = (width - edge) // 2, (height - edge) // 2
    crop = image.crop((left, top, left + edge, top + edge))
    return crop.resize((side, side), Image.Resampling.BILINEAR)


def saliency_overlay(image: Image.Image, saliency: np.ndarray, side: int = OVERLAY_SIDE) -> bytes:
    """A JPEG of the photo's centre square with the Grad-CAM map blended over it.

    Colour follows the ``inferno`` colour map and opacity grows with saliency, so the lesion stays
    visible where the network did not look.
    """
    from matplotlib import colormaps

    base = np.asarray(centre_square(image.convert("RGB"), side), dtype=np.float32) / 255.0
    heat = Image.fromarray(np.clip(saliency, 0.0, 1.0).astype(np.float32), mode="F")
    heat_map = np.asarray(heat.resize((side, side), Image.Resampling.BILINEAR), dtype=np.float32)
    colours = colormaps["inferno"](heat_map)[..., :3]
    alpha = (0.65 * heat_map)[..., None]
    blended = (1.0 - alpha) * base + alpha * colours
    buffer = io.BytesIO()
    Image.fromarray((blended * 255).round().astype(np.uint8)).save(buffer, "JPEG", quality=88)
    return buffer.getvalue()


@dataclass(frozen=True)
class _Job:
    case_id: int
    photos: list[tuple[int, int, str]]  # (photo id, position, sha256)
    claimed_at: datetime | None  # the holder's token: the claim's time, as stored


class ScoringWorker:
    """Scores queued cases in a background thread; :meth:`run_once` does one pass synchronously."""

    def __init__(
        self,
        database: Database,
        store: PhotoStore,
        load_predictor: Callable[[], PredictorLike],
        *,
        clock: Callable[[], datetime],
        poll_seconds: float = 2.0,
        lease_seconds: float = DEFAULT_LEASE_S,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        load_modality_check: Callable[[], ChecksModality] | None = None,
        shadow: Callable[[], int] | None = None,
    ) -> None:
        self.database = database
        self._shadow = shadow
        self._held: tuple[int, datetime] | None = None  # (case id, claim token) being scored
        self._load_modality_check = load_modality_check or default_modality_check
        self._modality_check: ChecksModality | None = None
        self.lease = timedelta(seconds=lease_seconds)
        self.max_attempts = max_attempts
        self.store = store
        self._load_predictor = load_predictor
        self._predictor: PredictorLike | None = None
        self._predictor_retry_at: datetime | None = None
        self._predictor_error: str | None = None
        self.clock = clock
        self.poll_seconds = poll_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="scoring-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the case in hand; if it is not done within ``timeout`` seconds, release its
        lease so another worker takes it now rather than when the lease runs out."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive() and self.release_held():
                logger.warning("stopped before the case in hand was scored: its lease is released")
            self._thread = None

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def running(self) -> bool:
        """Whether the scoring thread runs in this process (not in a ``--no-worker`` replica)."""
        return self._thread is not None and self._thread.is_alive()

    def model_state(self) -> tuple[str | None, str | None]:
        """(version of the loaded model, last load error while a retry waits), for readiness."""
        version = self._predictor.version if self._predictor is not None else None
        waiting = self._predictor_retry_at is not None and self.clock() < self._predictor_retry_at
        return version, (self._predictor_error if version is None and waiting else None)

    def wake(self) -> None:
        """Tell the worker a case was queued, so it does not wait for its next poll."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                done = self.run_once()
            except Exception:  # keep the thread alive whatever happens; the case stays queued
                logger.exception("scoring pass failed")
                done = 0
            if done == 0 and self._shadow is not None and not self._stop.is_set():
                try:  # the challenger only gets the time the champion does not need
                    self._shadow()
                except Exception:
                    logger.exception("shadow scoring pass failed")
            if done == 0:
                self._wake.wait(self.poll_seconds)
                self._wake.clear()

    # -- work --------------------------------------------------------------------------------

    def predictor(self) -> PredictorLike:
        """The model, loaded on first need; a failed load is retried after a back-off."""
        if self._predictor is not None:
            return self._predictor
        now = self.clock()
        if self._predictor_retry_at is not None and now < self._predictor_retry_at:
            raise RuntimeError(f"no model available: {self._predictor_error}")
        try:
            self._predictor = self._load_predictor()
        except Exception as exc:
            self._predictor_error = f"{type(exc).__name__}: {exc}"
            self._predictor_retry_at = now + timedelta(seconds=BASE_BACKOFF_S)
            logger.warning("could not load the model: %s", self._predictor_error)
            raise RuntimeError(f"no model available: {self._predictor_error}") from exc
        logger.info("scoring with model %s", self._predictor.version)
        return self._predictor

    def modality_check(self) -> ChecksModality:
        """The photo-modality check (:mod:`models.modality`), loaded on first need: it decides
        which photos the classifier may read."""
        if self._modality_check is None:
            self._modality_check = self._load_modality_check()
            logger.info("photo-modality check %s", self._modality_check.version)
        return self._modality_check

    # -- the queue ---------------------------------------------------------------------------

    def _claimable(self, now: datetime) -> Any:
        """The SQL condition for a case this worker may claim at ``now``."""
        return and_(
            Case.scoring_state.in_([ScoringState.pending, ScoringState.failed]),
            Case.scoring_attempts < self.max_attempts,
            or_(Case.next_scoring_at.is_(None), Case.next_scoring_at <= now),
            or_(Case.scoring_lease_until.is_(None), Case.scoring_lease_until <= now),
        )

    def due_case_ids(self, limit: int = 50) -> list[int]:
        """Cases waiting for a score whose retry time has come and that nobody holds, oldest
        first."""
        now = self.clock()
        with self.database.session() as session:
            query = (
                select(Case.id)
                .where(self._claimable(now))
                .order_by(Case.submitted_at, Case.id)
                .limit(limit)
            )
            return list(session.scalars(query))

    def _claim_values(self, now: datetime) -> dict[str, Any]:
        return {
            "scoring_claimed_at": now,
            "scoring_lease_until": now + self.lease,
            "scoring_attempts": Case.scoring_attempts + 1,
        }

    def claim(self, case_id: int) -> bool:
        """Take the lease on a due case and count the attempt; ``False`` if someone else holds it
        or it is not due. One conditional ``UPDATE``, so two workers cannot both win."""
        now = self.clock()
        with self.database.session() as session:
            result = session.execute(
                update(Case)
                .where(Case.id == case_id, self._claimable(now))
                .values(**self._claim_values(now))
                .execution_options(synchronize_session=False)
            )
            return bool(getattr(result, "rowcount", 0) == 1)

    def claim_next(self) -> int | None:
        """Claim the oldest due case nobody holds; ``None`` when there is none.

        PostgreSQL: ``FOR UPDATE SKIP LOCKED`` picks a row no other worker is claiming at this
        instant, so N workers claim N different cases without waiting on each other. SQLite has no
        row locks: the due cases are read, then claimed one by one with :meth:`claim`'s
        compare-and-set until one is won (a lost one was won by another worker)."""
        if self.database.engine.dialect.name == "postgresql":
            now = self.clock()
            with self.database.session() as session:
                case_id = session.scalar(
                    select(Case.id)
                    .where(self._claimable(now))
                    .order_by(Case.submitted_at, Case.id)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                )
                if case_id is None:
                    return None
                session.execute(
                    update(Case)
                    .where(Case.id == case_id)
                    .values(**self._claim_values(now))
                    .execution_options(synchronize_session=False)
                )
                return int(case_id)
        while ids := self.due_case_ids(limit=8):
            for case_id in ids:
                if self.claim(case_id):
                    return case_id
        return None

    def renew_lease(self, case_id: int, token: datetime) -> bool:
        """Push the lease of a case this worker holds ``lease_seconds`` ahead; ``False`` when the
        claim is no longer ours (scored, released, or taken over after the lease ran out)."""
        with self.database.session() as session:
            result = session.execute(
                update(Case)
                .where(
                    Case.id == case_id,
                    Case.scoring_claimed_at == token,
                    Case.scoring_state != ScoringState.done.value,
                )
                .values(scoring_lease_until=self.clock() + self.lease)
                .execution_options(synchronize_session=False)
            )
            return bool(getattr(result, "rowcount", 0) == 1)

    def release_held(self) -> bool:
        """Give back the case being scored, unscored (a graceful stop that could not wait): the
        lease is cleared and the attempt not counted, so the next worker claims it at once and
        the result this worker may still compute is never written (the token is gone)."""
        held = self._held
        if held is None:
            return False
        case_id, token = held
        with self.database.session() as session:
            result = session.execute(
                update(Case)
                .where(
                    Case.id == case_id,
                    Case.scoring_claimed_at == token,
                    Case.scoring_state != ScoringState.done.value,
                )
                .values(
                    scoring_claimed_at=None,
                    scoring_lease_until=None,
                    scoring_attempts=Case.scoring_attempts - 1,
                )
                .execution_options(synchronize_session=False)
            )
            released = bool(getattr(result, "rowcount", 0) == 1)
        if released:
            logger.info("case %s released unscored", case_id)
        return released

    @contextlib.contextmanager
    def _keeping_lease(self, job: _Job) -> Iterator[None]:
        """Renew the lease on ``job`` every third of its length while the block runs."""
        if job.claimed_at is None:
            yield
            return
        token = job.claimed_at
        finished = threading.Event()
        interval = max(0.05, self.lease.total_seconds() / 3)

        def renew() -> None:
            while not finished.wait(interval):
                try:
                    if not self.renew_lease(job.case_id, token):
                        logger.warning("case %s: the lease is no longer ours", job.case_id)
                        return
                except Exception:  # the database is away: try again next time
                    logger.warning("case %s: could not renew the lease", job.case_id)

        keeper = threading.Thread(target=renew, name=f"lease-{job.case_id}", daemon=True)
        self._held = (job.case_id, token)
        keeper.start()
        try:
            yield
        finally:
            finished.set()
            keeper.join()
            self._held = None

    def abandon_crashed(self) -> int:
        """Give up on cases whose last allowed attempt never finished (the worker died each
        time): they stay ``failed``, flagged for a human, with the reason. Returns how many."""
        now = self.clock()
        with self.database.session() as session:
            stuck = session.scalars(
                select(Case).where(
                    Case.scoring_state != ScoringState.done.value,
                    Case.scoring_attempts >= self.max_attempts,
                    Case.scoring_lease_until.is_not(None),
                    Case.scoring_lease_until <= now,
                )
            ).all()
            for case in stuck:
                reason = (
                    f"gave up after {case.scoring_attempts} attempts: the scoring worker stopped "
                    "while scoring this case"
                )
                case.scoring_state = ScoringState.failed.value
                case.scoring_error = reason
                case.scoring_lease_until = None
                case.next_scoring_at = None
                session.add(
                    Event(
                        case=case,
                        at=now,
                        actor_id=SYSTEM.id,
                        actor_role=SYSTEM.role.value,
                        action="score_failed",
                        detail={"error": reason, "attempt": case.scoring_attempts, "final": True},
                    )
                )
                logger.warning("case %s: %s", case.id, reason)
            return len(stuck)

    def run_once(self) -> int:
        """Claim and score due cases one at a time until none is left or a stop is asked;
        returns how many were attempted."""
        with self._lock:
            self.abandon_crashed()
            attempted = 0
            while not self._stop.is_set():
                case_id = self.claim_next()
                if case_id is None:
                    break
                logger.info("case %s claimed", case_id)  # which worker holds it: its log says
                self._score(case_id)
                attempted += 1
            return attempted

    def _job(self, case_id: int) -> _Job | None:
        with self.database.session() as session:
            case = session.get(Case, case_id)
            if case is None or case.scoring_state == ScoringState.done:
                return None
            photos = [(p.id, p.position, p.sha256) for p in case.photos]
            return _Job(case_id, photos, case.scoring_claimed_at)

    def score_case(self, case_id: int) -> bool:
        """Claim and score one case now; ``True`` on success. Any failure is recorded on the
        case, not raised; ``False`` too when it is not due or another worker holds it."""
        return self.claim(case_id) and self._score(case_id)

    def _score(self, case_id: int) -> bool:
        """Score a case this worker has claimed; ``True`` on success."""
        job = self._job(case_id)
        if job is None:
            return False
        with self._keeping_lease(job):
            return self._score_job(job)

    def _score_job(self, job: _Job) -> bool:
        try:
            predictor = self.predictor()
            images = []
            for _, _, sha in job.photos:
                with Image.open(io.BytesIO(self.store.get(sha))) as opened:
                    images.append(opened.convert("RGB"))
            if not images:
                raise ValueError("the case has no photo")
            from models.intended_use import score_within_intended_use

            outcomes = score_within_intended_use(predictor, self.modality_check(), images)
            overlays = [
                self.store.put(saliency_overlay(image, predictor.saliency(image)))
                if outcome.scored
                else None
                for image, outcome in zip(images, outcomes, strict=True)
            ]
        except Exception as exc:
            self._record_failure(job, f"{type(exc).__name__}: {exc}")
            return False
        return self._record_success(job, outcomes, overlays, predictor.version)

    def _still_ours(self, session: Any, job: _Job) -> bool:
        """Whether this worker's claim on ``job`` stands; the first write of a result, so it also
        takes the row (PostgreSQL) or the database (SQLite) for the rest of the transaction."""
        result = session.execute(
            update(Case)
            .where(
                Case.id == job.case_id,
                Case.scoring_claimed_at == job.claimed_at,
                Case.scoring_state != ScoringState.done.value,
            )
            .values(scoring_lease_until=None)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0) == 1)

    def _record_success(
        self,
        job: _Job,
        outcomes: Sequence[PhotoOutcome],
        overlays: Sequence[str | None],
        model_version: str,
    ) -> bool:
        """Store one row per photo (a score, or why there is none) and move the case on; nothing
        (``False``) when the claim is no longer this worker's: someone else scores it."""
        now = self.clock()
        with self.database.session() as session:
            if not self._still_ours(session, job):
                logger.warning("case %s: lost its lease while scoring, result dropped", job.case_id)
                return False
            case = session.get(Case, job.case_id)
            if case is None or case.scoring_state == ScoringState.done:
                return False
            for old in case.scores:
                old.superseded = True
            for (photo_id, position, _), outcome, overlay in zip(
                job.photos, outcomes, overlays, strict=True
            ):
                if outcome.prediction is None:
                    row = Score.not_applicable(
                        case, photo_id, position, outcome.verdict, model_version=model_version,
                        now=now,
                    )  # fmt: skip
                else:
                    row = Score.from_prediction(
                        case, photo_id, position, outcome.prediction,  # type: ignore[arg-type]
                        now=now, saliency_sha256=overlay, verdict=outcome.verdict,
                    )  # fmt: skip
                session.add(row)
            case.scoring_state = ScoringState.done.value
            case.scoring_error = None
            case.next_scoring_at = None
            case.scoring_lease_until = None
            case.scored_at = now
            case.updated_at = now
            predictions: list[PredictionLike] = [
                o.prediction  # type: ignore[misc]
                for o in outcomes
                if o.prediction is not None
            ]
            detail: dict[str, Any] = {
                "model_version": model_version,
                "modality_version": outcomes[0].verdict.version,
                "domains": [o.verdict.domain for o in outcomes],
            }
            if predictions:
                best = max(predictions, key=lambda p: p.p_malignant)
                detail.update(
                    model_version=best.model_version,
                    p_malignant=round(float(best.p_malignant), 4),
                    uncertainty=round(float(best.uncertainty), 4),
                )
                if any(o.verdict.ood for o in outcomes if o.prediction is not None):
                    detail["ood"] = True
            else:  # no photo within the intended use: no score, and why
                detail["ai_not_applicable"] = next(
                    o.verdict.reason for o in outcomes if o.verdict.reason
                )
            before = Status(case.status)
            after = before
            if before is Status.submitted:
                after = transition(before, Action.score, SYSTEM.role)
                if not advance_status(session, case, before, after):
                    before = after = Status(case.status)  # a reader opened it meanwhile
            session.add(
                Event(
                    case=case,
                    at=now,
                    actor_id=SYSTEM.id,
                    actor_role=SYSTEM.role.value,
                    action=Action.score.value,
                    from_status=before.value,
                    to_status=after.value,
                    detail=detail,
                )
            )
            audit.record(
                session, SYSTEM, audit.CASE_SCORE, case_id=case.id,
                model_version=detail["model_version"], at=now,
                details=audit.change_details(before.value, after.value, detail),
            )  # fmt: skip
        logger.info("case %s scored by %s", job.case_id, detail["model_version"])
        return True

    def _record_failure(self, job: _Job, error: str) -> None:
        now = self.clock()
        case_id = job.case_id
        with self.database.session() as session:
            if not self._still_ours(session, job):
                return  # released or taken over: the holder now records its own outcome
            case = session.get(Case, case_id)
            if case is None:
                return
            if case.scoring_state == ScoringState.done.value:
                return  # scored meanwhile (a lease that outlived its worker's slowness)
            final = case.scoring_attempts >= self.max_attempts
            if final:
                error = f"gave up after {case.scoring_attempts} attempts: {error}"
            case.scoring_state = ScoringState.failed.value
            case.scoring_error = error[:2000]
            case.scoring_lease_until = None
            case.next_scoring_at = (
                None if final else now + timedelta(seconds=backoff_seconds(case.scoring_attempts))
            )
            detail: dict[str, Any] = {"error": error[:500], "attempt": case.scoring_attempts}
            if final:
                detail["final"] = True
            session.add(
                Event(
                    case=case,
                    at=now,
                    actor_id=SYSTEM.id,
                    actor_role=SYSTEM.role.value,
                    action="score_failed",
                    detail=detail,
                )
            )
            audit.record(
                session, SYSTEM, audit.CASE_SCORE_FAILED, case_id=case.id, at=now,
                details={"attempt": case.scoring_attempts, "error": error.split(":")[0][:80]},
            )  # fmt: skip
        if final:
            logger.warning("case %s left for a human: %s", case_id, error)
        else:
            logger.warning("case %s could not be scored (will retry): %s", case_id, error)


@functools.lru_cache(maxsize=1)
def default_modality_check() -> ChecksModality:
    """The photo-modality check shipped with the code (``models/modality_model.json``), loaded
    once per process: every worker shares it (it scores one batch at a time, under a lock)."""
    from models.modality import ModalityCheck

    return ModalityCheck()


def default_predictor_loader(
    model_uri: str,
    tracking_uri: str,
    engine_config: EngineConfig | None = None,
    check_seconds: float = 30.0,
) -> Callable[[], PredictorLike]:
    """The registered champion through MLflow, served by the inference engine and swapped in
    place when the alias moves (:class:`models.live_model.LiveModel`)."""

    def load() -> PredictorLike:
        from models.live_model import LiveModel

        return LiveModel(
            model_uri,
            tracking_uri=tracking_uri,
            engine_config=engine_config,
            check_seconds=check_seconds,
        )

    return load
