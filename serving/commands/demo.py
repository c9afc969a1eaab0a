"""``dermtriage demo``: seed the demo cases (idempotent), as ``make run`` does at start-up."""

from __future__ import annotations

import argparse
import logging

from serving.settings import get_settings

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="seed three dozen scored demo cases from derm-dev (idempotent)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from serving.demo import seed_demo

    created = seed_demo(get_settings())
    logger.info("%d demo case(s) created", created)
    return 0
