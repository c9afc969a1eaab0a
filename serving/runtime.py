"""The case service's moving parts, built once per application: database, photo store, worker.

``case_runtime`` is the lifespan the cases router contributes to the app: at start-up it runs the
Alembic migrations (``upgrade head``), opens the photo store under ``data_dir/photos`` and starts
the scoring worker, unless ``scoring_worker`` is off (a web replica, ``serve --no-worker``, with
``dermtriage worker`` processes scoring apart); at shut-down it stops the worker (finishing the case
in hand, at most ``scoring_drain_seconds``) and closes the database. Tests may put a
``clock`` or a ``load_predictor`` on ``app.state`` before starting the app to control time and the
model; nothing else reads them.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import FastAPI

from serving.db.session import Database
from serving.scoring_worker import PredictorLike, ScoringWorker, default_predictor_loader
from serving.settings import Settings
from serving.shadow_scoring import ShadowScorer, default_challenger_source
from serving.storage import PhotoStore, database_references

logger = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class CaseRuntime:
    settings: Settings
    database: Database
    store: PhotoStore
    worker: ScoringWorker
    clock: Callable[[], datetime]


def build_runtime(
    settings: Settings,
    *,
    clock: Callable[[], datetime] | None = None,
    load_predictor: Callable[[], PredictorLike] | None = None,
    sweep_orphans: bool = True,
) -> CaseRuntime:
    """Open (and migrate) the database and the store; the worker is built but not started.

    A standalone worker (``dermtriage worker``) passes ``sweep_orphans=False``: removing files of
    uploads that never committed is the web tier's job, done when a replica starts."""
    clock = clock or utc_now
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = Database(settings.sqlalchemy_url)
    database.upgrade()
    store = PhotoStore(settings.data_dir / "photos")
    if sweep_orphans:  # what a crash between writing a case's files and its commit left behind
        references = database_references(database.engine)
        store.sweep(references, grace_seconds=settings.orphan_grace_seconds)
    shadow = None
    if settings.shadow_scoring:
        challenger = default_challenger_source(
            settings.registered_model_name, settings.tracking_uri, settings.model_check_seconds
        )
        shadow = ShadowScorer(database, store, challenger, clock=clock).run_once
    worker = ScoringWorker(
        database,
        store,
        load_predictor
        or default_predictor_loader(
            settings.model_uri,
            settings.tracking_uri,
            settings.engine_config(),
            settings.model_check_seconds,
        ),
        clock=clock,
        poll_seconds=settings.scoring_poll_seconds,
        lease_seconds=settings.scoring_lease_seconds,
        max_attempts=settings.scoring_max_attempts,
        shadow=shadow,
    )
    return CaseRuntime(settings, database, store, worker, clock)


@asynccontextmanager
async def case_runtime(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    runtime = build_runtime(
        settings,
        clock=getattr(app.state, "clock", None),
        load_predictor=getattr(app.state, "load_predictor", None),
    )
    app.state.case_runtime = runtime
    if settings.scoring_worker:
        runtime.worker.start()
    try:
        yield
    finally:
        runtime.worker.stop(settings.scoring_drain_seconds)
        runtime.database.dispose()
