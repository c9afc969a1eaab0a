"""``dermtriage serve``: start the web service on the configured host and port."""

from __future__ import annotations

import argparse

from serving.settings import get_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="run the web service")
    parser.add_argument("--host", default=None, help="default: DERMTRIAGE_HOST")
    parser.add_argument("--port", type=int, default=None, help="default: DERMTRIAGE_PORT")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from serving.app import create_app

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    uvicorn.run(
        create_app(settings),
        host=args.host or settings.host,
        port=args.port or settings.port,
    )
    return 0
