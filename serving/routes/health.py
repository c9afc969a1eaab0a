"""Liveness and readiness probes for the container health check, load balancers, orchestrators.

``/healthz`` (liveness): the process answers; restart it when it does not. ``/readyz``
(readiness): this replica can do its job, so send it traffic: the database answers and a model is
there to score with (the one this process's worker loaded, or, in a ``--no-worker`` replica or
before the first score, the registry still names a version for ``DERMTRIAGE_MODEL_URI``). 503 with
the failing checks otherwise. Neither needs a sign-in: probes carry no credentials, and the
answers name no case, user or patient.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

router = APIRouter(tags=["health"])

#: How long a failed registry answer is kept before asking again (a success: model_check_seconds).
FAILURE_CACHE_S = 5.0


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Answer quickly and touch nothing: a probe must not load models or the database."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "not ready, with the failing checks"}})
def readyz(request: Request) -> JSONResponse:
    """``{"status": "ready"|"not_ready", "checks": {"database": ..., "model": ...}}``; each
    check is ``ok`` / the model version, or the reason it fails."""
    runtime = getattr(request.app.state, "case_runtime", None)
    if runtime is None:
        checks = {"database": "starting", "model": "starting"}
        return JSONResponse({"status": "not_ready", "checks": checks}, status_code=503)
    checks: dict[str, str] = {}
    ready = True
    try:
        with runtime.database.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        ready, checks["database"] = False, f"unavailable: {type(exc).__name__}"
    model_ok, checks["model"] = _model_check(request.app, runtime)
    ready = ready and model_ok
    body = {"status": "ready" if ready else "not_ready", "checks": checks}
    return JSONResponse(body, status_code=200 if ready else 503)


def _model_check(app: Any, runtime: Any) -> tuple[bool, str]:
    worker = runtime.worker
    if worker.running:
        version, error = worker.model_state()
        if version is not None:
            return True, f"loaded {version}"
        if error is not None:
            return False, f"not loadable: {error}"
    probe = getattr(app.state, "model_probe", None)
    if probe is None:
        settings = runtime.settings
        probe = app.state.model_probe = RegistryProbe(
            settings.model_uri, settings.tracking_uri, settings.model_check_seconds
        )
    return probe()


class RegistryProbe:
    """Whether the registry names a version for ``model_uri`` (the model a worker would load),
    asked at most every ``cache_seconds`` (every ``FAILURE_CACHE_S`` after a failure), so frequent
    probes cost one registry call now and then."""

    def __init__(self, model_uri: str, tracking_uri: str, cache_seconds: float) -> None:
        self.model_uri = model_uri
        self.tracking_uri = tracking_uri
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._answer: tuple[bool, str] | None = None
        self._until = 0.0

    def __call__(self) -> tuple[bool, str]:
        with self._lock:
            now = time.monotonic()
            if self._answer is None or now >= self._until:
                self._answer = self._ask()
                self._until = now + (self.cache_seconds if self._answer[0] else FAILURE_CACHE_S)
            return self._answer

    def _ask(self) -> tuple[bool, str]:
        from models.predictor import resolve_model_version

        local = self.tracking_uri.removeprefix("sqlite:///")
        if local != self.tracking_uri and not Path(local).exists():  # asking would create it
            return False, "not loadable: no model registry (nothing registered yet)"
        try:
            return True, f"loadable {resolve_model_version(self.model_uri, self.tracking_uri)}"
        except Exception as exc:
            return False, f"not loadable: {type(exc).__name__}: {exc}"[:300]
