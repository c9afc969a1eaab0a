"""The ``dermtriage`` command: one entry point, one sub-command per job.

Each sub-command lives in ``serving/commands/<name>.py`` and exposes ``register(subparsers)``; this
module only assembles them, so adding a command never touches another one.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

COMMAND_MODULES = (
    "serving.commands.quality",
    "serving.commands.serve",
    "serving.commands.worker",
    "serving.commands.train",
    "serving.commands.sources",
    "serving.commands.blur_model",
    "serving.commands.segmenter",
    "serving.commands.modality_model",
    "serving.commands.models",
    "serving.commands.score",
    "serving.commands.demo",
    "serving.commands.users",
    "serving.commands.audit",
    "serving.commands.governance",
    "serving.commands.dataset",
    "serving.commands.outcomes",
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every sub-command that is installed."""
    parser = argparse.ArgumentParser(prog="dermtriage", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # the command is not written yet; others still work
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen sub-command; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
