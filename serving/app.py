"""The FastAPI application factory: settings in, wired application out."""

from __future__ import annotations

import importlib

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from serving.security_headers import SecurityHeadersMiddleware
from serving.settings import Settings, get_settings
from serving.templating import STATIC_DIR
from serving.uploads import RequestSizeLimitMiddleware

ROUTER_MODULES = (
    "serving.routes.health",
    "serving.routes.quality",
    "serving.routes.pages",
    "serving.routes.cases",
    "serving.routes.worklist_pages",
    "serving.routes.audit",
    "serving.routes.governance",
    "serving.routes.governance_real_world",
    "serving.routes.auth",
)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service. Tests pass their own ``Settings``; ``make run`` uses the environment's."""
    settings = settings or get_settings()
    app = FastAPI(title="DermTriage", version="0.1.0")
    app.state.settings = settings
    for name in ROUTER_MODULES:
        app.include_router(importlib.import_module(name).router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    # Outermost last: every answer, a 413 included, leaves with the security headers.
    app.add_middleware(
        RequestSizeLimitMiddleware,
        max_bytes=settings.max_request_bytes,
        default_lang=settings.language,
    )
    app.add_middleware(SecurityHeadersMiddleware)
    return app
