"""Load test: many GPs uploading at once to a real server, then an audit that nothing was lost.

What it does, end to end, on loopback:

1. prepares a fresh data folder (or the ``--database-url`` you give): migrates the database and
   creates the demo requester accounts;
2. starts the service as its own process (``uvicorn --factory serving.app:create_app``, one
   worker process, the way ``dermtriage serve`` runs it), with the scoring worker off so the
   figures measure intake, not the model;
3. runs ``--clients`` concurrent clients that together send ``--uploads`` case submissions, each
   with a real derm-dev photo and a fresh ``Idempotency-Key`` (a client retries a request that got
   no answer with the same key, as a phone would);
4. stops the server, then checks every acknowledged case (a ``201``) in the database: its row,
   its photo rows, and the photo and thumbnail files on disk, which must decode as images.

It prints a table (throughput, latency percentiles, errors, lost) and exits non-zero when any
acknowledged case is missing or damaged. ``make bench-load`` runs the full size (50 clients,
2,000 uploads); ``tests/serving/test_load.py`` runs the same code smaller so it cannot rot.

The pieces (:class:`ServerProcess`, :func:`run_clients`, :func:`verify_cases`) are reused by the
fault test, which kills the server in the middle.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from PIL import Image

from serving.settings import PROJECT_ROOT, Settings

logger = logging.getLogger(__name__)

REQUESTERS = ("dr-martin", "dr-leroy")

QUESTIONNAIRE: dict[str, Any] = {
    "patient_pseudonym": "LOAD-0001",
    "age": 55,
    "sex": "female",
    "fitzpatrick": "II",
    "body_site": "back",
    "duration": "6_12_months",
    "changed_size": True,
    "clinical_question": "Lésion pigmentée qui grandit : avis sur la conduite à tenir ?",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sample_photos(dataset_dir: Path, count: int, seed: int = 0) -> list[bytes]:
    """``count`` real derm-dev photos (bytes), a fixed sample spanning the diagnoses."""
    metadata = pd.read_csv(dataset_dir / "metadata.csv")
    chosen = metadata.sample(n=min(count, len(metadata)), random_state=seed)["image_id"]
    return [(dataset_dir / "images" / f"{image_id}.jpg").read_bytes() for image_id in chosen]


def prepare_installation(settings: Settings) -> None:
    """Migrate the database and create the demo requesters' accounts (what ``make run`` does)."""
    from serving.auth import seed_demo_accounts
    from serving.db.session import Database

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = Database(settings.sqlalchemy_url)
    try:
        database.upgrade()
        with database.session() as session:
            seed_demo_accounts(session, now=datetime.now(UTC), only=list(REQUESTERS))
    finally:
        database.dispose()


class ServerProcess:
    """The service in its own process, on a loopback port; ``kill`` is a real SIGKILL."""

    def __init__(
        self,
        settings: Settings,
        *,
        port: int,
        extra_env: dict[str, str] | None = None,
        argv: Sequence[str] | None = None,
    ):
        """``argv``: the command to run instead of plain uvicorn, e.g. ``dermtriage serve
        --no-worker`` (it must listen on ``DERMTRIAGE_HOST``/``DERMTRIAGE_PORT``)."""
        self.settings = settings
        self.argv = list(argv) if argv is not None else None
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = settings.data_dir / f"server-{port}.log"

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DERMTRIAGE_")}
        env.update(
            DERMTRIAGE_DATA_DIR=str(self.settings.data_dir),
            DERMTRIAGE_DATABASE_URL=self.settings.sqlalchemy_url,
            DERMTRIAGE_MLFLOW_TRACKING_URI=self.settings.tracking_uri,
            DERMTRIAGE_SCORING_WORKER="true" if self.settings.scoring_worker else "false",
            DERMTRIAGE_HOST="127.0.0.1",
            DERMTRIAGE_PORT=str(self.port),
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 120.0) -> None:
        command = [
            sys.executable, "-m", "uvicorn", "--factory", "serving.app:create_app",
            "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning",
            "--timeout-keep-alive", "30",
        ]  # fmt: skip
        if self.argv is not None:
            command = self.argv
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=self.environment(), stdout=log, stderr=log
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited at start-up; see {self.log_path}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=2).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"the server did not answer within {timeout:.0f} s")

    def kill(self) -> None:
        """SIGKILL: no shutdown hook, no flush, no goodbye."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def api_token(base_url: str, login: str, password: str | None = None) -> str:
    """A bearer token for ``login`` (a demo account: its demo password by default)."""
    from serving.users import DEMO_PASSWORD

    response = httpx.post(
        f"{base_url}/api/v1/auth/token",
        json={"login": login, "password": password or DEMO_PASSWORD},
        timeout=30,
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


@dataclass
class Outcome:
    """What the clients saw: acknowledged case ids (with who sent them) and every latency."""

    acknowledged: dict[int, str] = field(default_factory=dict)
    acknowledged_keys: dict[str, int] = field(default_factory=dict)
    #: Requests that got no usable answer, as (index, Idempotency-Key, requester): to resend.
    unanswered: list[tuple[int, str, str]] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    duration_s: float = 0.0

    def count(self, what: str) -> None:
        self.statuses[what] = self.statuses.get(what, 0) + 1


async def _one_upload(
    client: httpx.AsyncClient,
    token: str,
    requester: str,
    photo: bytes,
    index: int,
    outcome: Outcome,
    *,
    key: str,
    retries: int,
) -> None:
    questionnaire = dict(QUESTIONNAIRE, patient_pseudonym=f"LOAD-{index:05d}")
    for attempt in range(retries + 1):
        started = time.perf_counter()
        try:
            response = await client.post(
                "/api/v1/cases",
                data={"questionnaire": json.dumps(questionnaire)},
                files=[("photos", (f"photo-{index}.jpg", photo, "image/jpeg"))],
                headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
            )
        except httpx.HTTPError:
            outcome.count("no answer")
            if attempt < retries:
                outcome.retries += 1
                await asyncio.sleep(0.5 * (attempt + 1))
                continue
            outcome.unanswered.append((index, key, requester))
            return
        outcome.latencies_s.append(time.perf_counter() - started)
        outcome.count(str(response.status_code))
        if response.status_code == 201:
            case_id = int(response.json()["id"])
            outcome.acknowledged[case_id] = requester
            outcome.acknowledged_keys[key] = case_id
            return
        if response.status_code < 500 or attempt >= retries:
            if response.status_code >= 500:
                outcome.unanswered.append((index, key, requester))
            return
        outcome.retries += 1
        await asyncio.sleep(0.5 * (attempt + 1))


async def run_clients_async(
    base_url: str,
    tokens: dict[str, str],
    photos: Sequence[bytes],
    *,
    clients: int,
    uploads: int,
    retries: int = 0,
    stop_after: float | None = None,
    resend: Sequence[tuple[int, str, str]] = (),
    outcome: Outcome | None = None,
    pause_s: float = 0.0,
) -> Outcome:
    """``clients`` concurrent clients sharing a queue of ``uploads`` new submissions, each with
    a fresh ``Idempotency-Key``, or of the ``resend`` ones (index, key, requester) with theirs.
    Pass ``outcome`` to watch it fill from another thread; ``pause_s`` paces each client."""
    outcome = outcome if outcome is not None else Outcome()
    queue: asyncio.Queue[tuple[int, str, str | None]] = asyncio.Queue()
    for index in range(uploads):
        queue.put_nowait((index, f"load-{uuid.uuid4()}", None))
    for item in resend:
        queue.put_nowait(item)
    requesters = list(tokens)
    started = time.perf_counter()

    async def client_loop(number: int) -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        timeout = httpx.Timeout(120.0, connect=10.0)
        async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout) as client:
            own = requesters[number % len(requesters)]
            while True:
                if stop_after is not None and time.perf_counter() - started > stop_after:
                    return
                try:
                    index, key, requester = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                requester = requester or own
                photo = photos[index % len(photos)]
                await _one_upload(
                    client, tokens[requester], requester, photo, index, outcome,
                    key=key, retries=retries,
                )  # fmt: skip
                if pause_s:
                    await asyncio.sleep(pause_s)

    await asyncio.gather(*(client_loop(n) for n in range(clients)))
    outcome.duration_s = time.perf_counter() - started
    return outcome


def run_clients(
    base_url: str, tokens: dict[str, str], photos: Sequence[bytes], **kw: Any
) -> Outcome:
    return asyncio.run(run_clients_async(base_url, tokens, photos, **kw))


@dataclass
class Verification:
    checked: int
    missing_cases: list[int]
    damaged_cases: dict[int, str]

    @property
    def lost(self) -> int:
        return len(self.missing_cases) + len(self.damaged_cases)


def verify_cases(settings: Settings, acknowledged: dict[int, str]) -> Verification:
    """Every acknowledged case: its row (from its requester), photo rows, readable files."""
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    from serving.db.models import Case
    from serving.db.session import Database
    from serving.storage import PhotoStore

    database = Database(settings.sqlalchemy_url)
    store = PhotoStore(settings.data_dir / "photos")
    missing: list[int] = []
    damaged: dict[int, str] = {}
    try:
        with database.session() as session:
            ids = sorted(acknowledged)
            found: dict[int, Case] = {}
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                query = select(Case).where(Case.id.in_(chunk)).options(selectinload(Case.photos))
                found.update({case.id: case for case in session.scalars(query)})
            for case_id in ids:
                case = found.get(case_id)
                if case is None:
                    missing.append(case_id)
                    continue
                problem = _case_problem(case, acknowledged[case_id], store)
                if problem:
                    damaged[case_id] = problem
    finally:
        database.dispose()
    return Verification(len(acknowledged), missing, damaged)


def _case_problem(case: Any, requester: str, store: Any) -> str | None:
    if case.requester_id != requester:
        return f"requester {case.requester_id} instead of {requester}"
    if len(case.photos) != 1:
        return f"{len(case.photos)} photo rows"
    for photo in case.photos:
        for digest in (photo.sha256, photo.thumbnail_sha256):
            if not store.exists(digest):
                return f"file {digest[:12]} missing"
            try:
                with Image.open(io.BytesIO(store.get(digest))) as image:
                    image.load()
            except OSError as exc:
                return f"file {digest[:12]} unreadable: {exc}"
    return None


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def report(outcome: Outcome, verification: Verification, *, clients: int, uploads: int) -> str:
    ok = len(outcome.acknowledged)
    latencies = sorted(outcome.latencies_s)
    rows = [
        ("clients", f"{clients}"),
        ("uploads requested", f"{uploads}"),
        ("acknowledged (201)", f"{ok}"),
        ("answers by status", ", ".join(f"{k}: {v}" for k, v in sorted(outcome.statuses.items()))),
        ("retries", f"{outcome.retries}"),
        ("wall time", f"{outcome.duration_s:.1f} s"),
        ("throughput", f"{ok / outcome.duration_s:.1f} cases/s" if outcome.duration_s else "-"),
        ("latency p50", f"{percentile(latencies, 50) * 1000:.0f} ms"),
        ("latency p95", f"{percentile(latencies, 95) * 1000:.0f} ms"),
        ("latency p99", f"{percentile(latencies, 99) * 1000:.0f} ms"),
        ("latency max", f"{(latencies[-1] if latencies else float('nan')) * 1000:.0f} ms"),
        ("verified in the database", f"{verification.checked - verification.lost}"),
        ("lost or damaged", f"{verification.lost}"),
    ]
    width = max(len(name) for name, _ in rows)
    line = "+" + "-" * (width + 2) + "+" + "-" * 40 + "+"
    body = [f"| {name:<{width}} | {value:<38} |" for name, value in rows]
    return "\n".join([line, *body, line])


@dataclass
class LoadResult:
    outcome: Outcome
    verification: Verification
    table: str


def run_load(
    settings: Settings,
    dataset_dir: Path,
    *,
    clients: int,
    uploads: int,
    photos: int = 200,
    port: int | None = None,
) -> LoadResult:
    """Prepare, serve, load, stop, verify: the whole benchmark as a function."""
    prepare_installation(settings)
    sample = sample_photos(dataset_dir, photos)
    server = ServerProcess(settings, port=port or free_port())
    server.start()
    try:
        tokens = {login: api_token(server.base_url, login) for login in REQUESTERS}
        outcome = run_clients(server.base_url, tokens, sample, clients=clients, uploads=uploads)
    finally:
        server.stop()
    verification = verify_cases(settings, outcome.acknowledged)
    table = report(outcome, verification, clients=clients, uploads=uploads)
    return LoadResult(outcome, verification, table)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--uploads", type=int, default=2000)
    parser.add_argument(
        "--database-url", default=None, help="default: SQLite in a fresh temporary data folder"
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--dataset-dir", type=Path, default=None, help="default: the setting")
    parser.add_argument("--photos", type=int, default=200, help="distinct derm-dev photos to send")
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="dermtriage-load-"))
    settings = Settings(data_dir=data_dir, database_url=args.database_url, scoring_worker=False)
    dataset_dir = args.dataset_dir or settings.dataset_dir
    result = run_load(
        settings, dataset_dir, clients=args.clients, uploads=args.uploads,
        photos=args.photos, port=args.port,
    )  # fmt: skip
    print(f"DermTriage load test: {settings.sqlalchemy_url.split('@')[-1]}, data in {data_dir}")
    print(result.table)
    return 1 if result.verification.lost else 0


if __name__ == "__main__":
    raise SystemExit(main())
