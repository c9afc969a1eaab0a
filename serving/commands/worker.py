"""``dermtriage worker``: a scoring worker in its own process, apart from the web replicas.

Any number of them, on any machine that reaches the database (and, until photos move to object
storage, the same photo folder), share the queue of :mod:`serving.scoring_worker`: each claims due
cases one at a time (PostgreSQL ``FOR UPDATE SKIP LOCKED``; SQLite compare-and-set), scores them on
its own device, renews its lease while it works, and shadow-scores with the challenger when the
champion's queue is empty. SIGTERM (or Ctrl-C) stops it gracefully: the case in hand is finished
within ``scoring_drain_seconds``, else its lease is released; then the process exits 0. A SIGKILL
leaves the lease to expire (``scoring_lease_seconds``), after which another worker takes the case.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from typing import Any

from serving.settings import get_settings

logger = logging.getLogger(__name__)

#: While no model loads, how often the worker looks again (the loader itself backs off 30 s).
MODEL_RETRY_S = 5.0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "worker", help="score queued cases in this process (beside `serve --no-worker` replicas)"
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default=None,
        help="where the model runs (default: DERMTRIAGE_INFERENCE_DEVICE, auto)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from serving.runtime import build_runtime

    settings = get_settings()
    if args.device:
        settings = settings.model_copy(update={"inference_device": args.device})
    if settings.inference_device == "cuda":
        from models.device import resolve_device

        try:  # a GPU worker on a machine without one: say so now, before claiming any case
            resolve_device("cuda")
        except RuntimeError as exc:
            logger.error("%s", exc)
            return 2
    stop = threading.Event()

    def ask_to_stop(signum: int, _frame: Any) -> None:
        logger.info("%s received: finishing the case in hand", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, ask_to_stop)
    signal.signal(signal.SIGINT, ask_to_stop)
    runtime = build_runtime(settings, sweep_orphans=False)
    worker = runtime.worker
    try:
        # The model first, then the queue: no case is claimed, nor failed, by a worker that
        # cannot score (an empty registry, an unreachable tracking server); it waits instead.
        while not stop.is_set():
            try:
                logger.info("model %s ready", worker.predictor().version)
                break
            except RuntimeError as exc:
                logger.warning("%s; trying again shortly", exc)
                stop.wait(MODEL_RETRY_S)
        if not stop.is_set():
            worker.start()
            logger.info("scoring worker started (device %s)", settings.inference_device)
        while not stop.wait(1.0):
            pass
    finally:
        worker.stop(settings.scoring_drain_seconds)
        runtime.database.dispose()
    logger.info("scoring worker stopped")
    return 0
