"""``dermtriage serve``: prepare a working installation, then run the web service.

Before the first request it makes sure the installation can serve: the data folder exists, the
MLflow registry has a champion (the shipped model, registered on first start), and the demo cases
are seeded. Each step does nothing when its work is already done, so a restart is cheap.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from serving.settings import Settings, get_settings

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="run the web service")
    parser.add_argument("--host", default=None, help="default: DERMTRIAGE_HOST")
    parser.add_argument("--port", type=int, default=None, help="default: DERMTRIAGE_PORT")
    parser.add_argument(
        "--no-demo", action="store_true", help="do not seed the demo cases and demo accounts"
    )
    parser.add_argument(
        "--no-worker",
        action="store_true",
        help="a web replica: no scoring thread (run `dermtriage worker` processes beside it)",
    )
    parser.set_defaults(func=run)


def prepare(settings: Settings, *, demo: bool) -> None:
    """First-start work: data folder, a champion model in the registry, the demo cases."""
    from training.bootstrap import register_shipped_model

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    champion = register_shipped_model(
        settings.shipped_model_dir,
        tracking_uri=settings.tracking_uri,
        registered_model_name=settings.registered_model_name,
        artifact_root=None if settings.mlflow_tracking_uri else settings.artifact_root,
        dataset_dir=settings.dataset_dirs,
    )
    logger.info("champion model: %s version %s", settings.registered_model_name, champion)
    if demo:
        from serving.demo import seed_demo

        created = seed_demo(settings)
        logger.info("demo cases created: %d", created)
        logger.info("demo accounts created: %d", seed_demo_accounts(settings))


def seed_demo_accounts(settings: Settings) -> int:
    """The demo directory's accounts, with the documented demo password (README, "Demo
    accounts"); existing accounts are left as they are."""
    from datetime import UTC, datetime

    from serving import auth
    from serving.db.session import Database

    database = Database(settings.sqlalchemy_url)
    try:
        database.upgrade()
        with database.session() as session:
            return auth.seed_demo_accounts(session, now=datetime.now(UTC))
    finally:
        database.dispose()


def demo_banner() -> list[str]:
    """The start banner's list of demo sign-ins: who is who, and the shared demo password."""
    from serving.users import DEMO_PASSWORD, DEMO_USERS

    lines = [f"Demo accounts (password for all: {DEMO_PASSWORD}):"]
    lines += [f"  {u.id:<14} {u.role.value:<15} {u.centre or '-':<13} {u.name}" for u in DEMO_USERS]
    return lines


def uvicorn_options(settings: Settings, host: str, port: int) -> dict[str, Any]:
    """How ``serve`` starts uvicorn. Forwarded headers (``X-Forwarded-For``, ``-Proto``) are
    believed only from ``DERMTRIAGE_TRUSTED_PROXIES``; with none (the default) uvicorn ignores
    them, where on its own it would trust any process on 127.0.0.1 to name the client, and a
    client could reset the sign-in limit by rotating the header."""
    proxies = list(settings.trusted_proxies)
    return {
        "host": host,
        "port": port,
        "proxy_headers": bool(proxies),
        "forwarded_allow_ips": proxies or [],
    }


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from serving.app import create_app

    settings = get_settings()
    prepare(settings, demo=not args.no_demo)
    host, port = args.host or settings.host, args.port or settings.port
    # The app sees where it really listens: the session cookie's Secure default depends on it.
    settings = settings.model_copy(update={"host": host, "port": port})
    if args.no_worker:
        settings = settings.model_copy(update={"scoring_worker": False})
    logger.info("DermTriage at http://%s:%d", host, port)
    if not args.no_demo:
        for line in demo_banner():
            logger.info("%s", line)
    uvicorn.run(create_app(settings), **uvicorn_options(settings, host, port))
    return 0
