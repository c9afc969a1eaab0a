"""Shadow mode: the ``challenger`` version scores live cases beside the champion, changing nothing.

A version waiting for promotion is pointed at by the registry's ``challenger`` alias (``dermtriage
models challenger N``). While the alias is set, :class:`ShadowScorer` scores every case the
champion has scored with it too, and stores the results as :class:`~serving.db.Score` rows with
``role = 'shadow'``. The worklist, case pages and priority read only champion scores
(``Case.current_scores``), so nothing a clinician sees changes; the governance pages compare the
two (agreement, would-be ordering). When the champion re-scores a case, its older scores,
shadow ones included, are superseded and the challenger scores it again.

The alias is the switch: no challenger, no shadow work. It is re-read every ``check_seconds``, so
setting, moving or clearing it needs no restart. Shadow scoring runs after the champion's pass in
the same worker thread and never blocks or fails a case: a photo the challenger cannot score is
logged and skipped (until the challenger changes). Every scoring worker runs it, the embedded one
and each ``dermtriage worker``: shadow work takes no lease, so two workers may compute the same
case, but only the first writes it (the write re-checks, holding the case row, that no current
shadow score by that version exists), so each photo gets one shadow score per version.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import Image
from sqlalchemy import and_, exists, select

from pipeline.priority import ScoringState
from serving import audit
from serving.db.models import SCORE_ROLE_SHADOW, Case, Score
from serving.db.session import Database
from serving.storage import PhotoStore
from serving.users import SYSTEM

logger = logging.getLogger(__name__)

DEFAULT_CASES_PER_PASS = 20
#: The audit action of one case scored in shadow mode (the challenger read its photos).
SHADOW_SCORE = "case.shadow_score"


class ChallengerSource:
    """The challenger's predictor, loaded once per version and reloaded when the alias moves.

    ``resolve()`` names the version the alias points to now (None when unset); ``load(version)``
    loads it. Both are called at most every ``check_seconds``.
    """

    def __init__(
        self,
        resolve: Callable[[], str | None],
        load: Callable[[str], object],
        *,
        check_seconds: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._resolve = resolve
        self._load = load
        self.check_seconds = check_seconds
        self._monotonic = monotonic
        self._checked_at: float | None = None
        self._version: str | None = None
        self._predictor: object | None = None

    def __call__(self) -> object | None:
        now = self._monotonic()
        if self._checked_at is not None and now - self._checked_at < self.check_seconds:
            return self._predictor
        self._checked_at = now
        try:
            version = self._resolve()
        except Exception:  # a registry hiccup keeps the current challenger, if any
            logger.warning("could not ask the registry for the challenger", exc_info=True)
            return self._predictor
        if version != self._version:
            self._predictor = None if version is None else self._load(version)
            self._version = version
            logger.info("shadow scoring with challenger %s", version or "(none)")
        return self._predictor


def default_challenger_source(
    model_name: str, tracking_uri: str, check_seconds: float = 30.0
) -> ChallengerSource:
    """The registry's ``challenger`` alias of ``model_name``, loaded as a plain Predictor."""

    def resolve() -> str | None:
        if _missing_local_store(tracking_uri):  # nothing registered, and nothing to create
            return None
        from training.registry import CHALLENGER, RegistryError, alias_version, open_client

        try:
            return alias_version(open_client(tracking_uri), model_name, CHALLENGER)
        except RegistryError:  # nothing registered yet: no challenger either
            return None

    def load(version: str) -> object:
        from models.predictor import Predictor

        return Predictor.load(f"models:/{model_name}/{version}", tracking_uri=tracking_uri)

    return ChallengerSource(resolve, load, check_seconds=check_seconds)


def _missing_local_store(tracking_uri: str) -> bool:
    """Whether ``tracking_uri`` is a local SQLite store that does not exist yet: asking it would
    create an empty one (slow), and it can name no challenger."""
    prefix = "sqlite:///"
    return tracking_uri.startswith(prefix) and not Path(tracking_uri[len(prefix) :]).exists()


class ShadowScorer:
    """Scores champion-scored cases with the challenger; :meth:`run_once` does one pass."""

    def __init__(
        self,
        database: Database,
        store: PhotoStore,
        challenger: Callable[[], object | None],
        *,
        clock: Callable[[], datetime],
        cases_per_pass: int = DEFAULT_CASES_PER_PASS,
    ) -> None:
        self.database = database
        self.store = store
        self.challenger = challenger
        self.clock = clock
        self.cases_per_pass = cases_per_pass
        self._skipped: set[tuple[int, str]] = set()

    def due_case_ids(self, version: str) -> list[int]:
        """Scored cases without a current shadow score by ``version``, newest first."""
        shadowed = exists().where(
            and_(
                Score.case_id == Case.id,
                Score.model_version == version,
                Score.role == SCORE_ROLE_SHADOW,
                Score.superseded.is_(False),
            )
        )
        query = (
            select(Case.id)
            .where(Case.scoring_state == ScoringState.done.value, ~shadowed)
            .order_by(Case.submitted_at.desc(), Case.id.desc())
            .limit(self.cases_per_pass + len(self._skipped))
        )
        with self.database.session() as session:
            ids = [cid for cid in session.scalars(query) if (cid, version) not in self._skipped]
        return ids[: self.cases_per_pass]

    @staticmethod
    def _shadowed(session: Any, case_id: int, version: str) -> bool:
        """Whether ``case_id`` already has a current shadow score by ``version``."""
        query = select(Score.id).where(
            Score.case_id == case_id,
            Score.model_version == version,
            Score.role == SCORE_ROLE_SHADOW,
            Score.superseded.is_(False),
        )
        return session.scalar(query.limit(1)) is not None

    def run_once(self) -> int:
        """Shadow-score the due cases; returns how many were scored (0 without a challenger)."""
        predictor = self.challenger()
        if predictor is None:
            return 0
        version = predictor.version  # type: ignore[attr-defined]
        done = 0
        for case_id in self.due_case_ids(version):
            done += self.score_case(case_id, predictor)
        return done

    def score_case(self, case_id: int, predictor: object) -> bool:
        """Score one case with ``predictor`` and store its shadow scores; never raises."""
        version = predictor.version  # type: ignore[attr-defined]
        with self.database.session() as session:
            case = session.get(Case, case_id)
            if case is None or case.scoring_state != ScoringState.done.value:
                return False
            # Only the photos the champion was allowed to score (the modality check's verdict is
            # on its rows): a challenger is compared on the model's intended use, not beyond.
            refused = {s.photo_id for s in case.current_scores if s.p_malignant is None}
            photos = [(p.id, p.position, p.sha256) for p in case.photos if p.id not in refused]
        if not photos:
            self._skipped.add((case_id, version))
            return False
        try:
            images = []
            for _, _, sha in photos:
                with Image.open(io.BytesIO(self.store.get(sha))) as opened:
                    images.append(opened.convert("RGB"))
            predictions: Sequence = list(predictor.predict(images))  # type: ignore[attr-defined]
            if len(predictions) != len(images):
                raise ValueError("the challenger returned a different number of predictions")
        except Exception as exc:  # the challenger must never disturb the service
            logger.warning("challenger %s could not score case %s: %s", version, case_id, exc)
            self._skipped.add((case_id, version))
            return False
        now = self.clock()
        with self.database.session() as session:
            # Held until the commit (PostgreSQL; SQLite writes one at a time): of two workers
            # shadowing the case at once, the second finds the first one's scores and stops.
            case = session.get(Case, case_id, with_for_update=True)
            if case is None or self._shadowed(session, case_id, version):
                return False
            for old in case.scores:
                if old.role == SCORE_ROLE_SHADOW and old.model_version == version:
                    old.superseded = True
            for (photo_id, position, _), prediction in zip(photos, predictions, strict=True):
                session.add(
                    Score.from_prediction(
                        case, photo_id, position, prediction, now=now, role=SCORE_ROLE_SHADOW
                    )
                )
            audit.record(
                session,
                SYSTEM,
                SHADOW_SCORE,
                case_id=case_id,
                model_version=version,
                details={
                    "photos": len(predictions),
                    "p_malignant": round(max(float(p.p_malignant) for p in predictions), 4),
                },
                at=now,
            )
        logger.info("case %s shadow-scored by %s", case_id, version)
        return True
