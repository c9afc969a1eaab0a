"""Fixtures for the service tests: databases (SQLite and a throwaway PostgreSQL), a real predictor.

PostgreSQL: ``DERMTRIAGE_TEST_POSTGRES_URL`` when set (a server whose user may create databases);
otherwise a private cluster is made with Debian's ``initdb``/``pg_ctl`` in a temporary folder on
a free loopback port (as the ``postgres`` user when the tests run as root), and stopped at the end.
Each test gets a database of its own. Without a server the PostgreSQL variants skip (CI fails).
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.conftest import require_tool


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """An admin URL of a PostgreSQL server the tests may create databases on."""
    given = os.environ.get("DERMTRIAGE_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    initdbs = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    require_tool(bool(initdbs), "PostgreSQL server (Debian's postgresql package)")
    bindir = Path(initdbs[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="dermtriage-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            account = None
        require_tool(account is not None and shutil.which("runuser") is not None, "postgres user")
        assert account is not None
        os.chown(root, account.pw_uid, account.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", _free_port()
    subprocess.run(
        [*prefix, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "dermtriage",
         "-E", "UTF8", "--no-sync"],
        check=True, capture_output=True,
    )  # fmt: skip
    options = f"-p {port} -h 127.0.0.1 -k {root} -c fsync=off -c full_page_writes=off"
    subprocess.run(
        [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-o", options,
         "-l", str(root / "server.log"), "-w", "-t", "60", "start"],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        yield f"postgresql+psycopg://dermtriage@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            check=False, capture_output=True,
        )  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database on the test server, dropped afterwards."""
    name = f"dermtriage_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(postgres_server).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each database test runs twice: on SQLite (the embedded default) and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cases.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture(scope="session")
def real_predictor():  # -> models.predictor.Predictor
    """The real ``Predictor`` (EfficientNet-Lite0 features from the offline ImageNet weights, a
    seeded random head, 64 px), so scoring, Grad-CAM and versions run the production code."""
    import torch

    from models.network import CalibratedClassifier, build_network
    from models.predictor import Predictor

    torch.manual_seed(0)
    network = build_network(pretrained=True)
    torch.nn.init.normal_(network.classifier.weight, std=0.5)
    return Predictor(CalibratedClassifier(network).eval(), image_size=64, version="test-model/1")


@pytest.fixture(scope="session")
def clean_photos(derm_images: list[Path]) -> list[Path]:
    """The derm-dev sample photos that pass the quality checks (for tests where a quality flag
    would change the expected order)."""
    from pipeline.quality import assess_bytes

    clean = [
        path
        for path in derm_images
        if assess_bytes(path.read_bytes(), max_bytes=10_000_000, max_pixels=50_000_000).acceptable
    ]
    assert len(clean) >= 4, "the quality checks reject too much of the derm-dev sample"
    return clean


# --- signing in: the ONE way tests act as a user ------------------------------------------------

_SIGNED: weakref.WeakKeyDictionary[Any, dict[str, tuple[str, str, str]]] = (
    weakref.WeakKeyDictionary()
)


def _ensure_accounts(database: Any, now: Any, user_ids: list[str]) -> None:
    from serving.auth import seed_demo_accounts

    with database.session() as session:
        seed_demo_accounts(session, now=now, only=user_ids)


def seed_accounts(settings: Any, *user_ids: str) -> None:
    """Create demo accounts (all, or ``user_ids``) in the database ``settings`` name, migrating it
    first: what a live server needs before :func:`sign_in_page` (``make run`` does the same)."""
    from datetime import UTC, datetime

    from serving.db.session import Database
    from serving.users import DEMO_USERS

    database = Database(settings.sqlalchemy_url)
    try:
        database.upgrade()
        _ensure_accounts(database, datetime.now(UTC), list(user_ids or (u.id for u in DEMO_USERS)))
    finally:
        database.engine.dispose()


def sign_in(client: Any, user_id: str) -> dict[str, str]:
    """Sign ``user_id`` (a demo account id such as ``"dr-martin"``) in on a started ``TestClient``.

    Through the real thing: the demo account is created in the app's database if missing, then
    signed in on the sign-in form (password, CSRF token) and through ``POST /api/v1/auth/token``.
    The client is left signed in as that user (session cookie, plus the session's CSRF token as a
    default ``X-CSRF-Token`` header so its form posts pass), and the returned headers (a bearer
    token) make any single request act as that user whatever else the client holds
    (``client.get(url, headers=sign_in(client, "dr-leroy"))``), so one client can play several
    people. Tokens are made once per client and user, then reused: a test that moves the app's
    clock past the session lifetime (``session_hours``, 12 h) uses the returned bearer headers
    (30 days) or a new client.
    """
    from serving.auth import csrf_for_session
    from serving.deps import CSRF_HEADER, SESSION_COOKIE
    from serving.users import DEMO_PASSWORD

    known = _SIGNED.setdefault(client, {})
    if user_id not in known:
        runtime = client.app.state.case_runtime
        _ensure_accounts(runtime.database, runtime.clock(), [user_id])
        client.cookies.delete(SESSION_COOKIE)
        form = client.get("/login")
        match = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert match, "the sign-in form has no CSRF token"
        signed = client.post(
            "/login",
            data={"login": user_id, "password": DEMO_PASSWORD, "csrf_token": match.group(1)},
            follow_redirects=False,
        )
        assert signed.status_code == 303, f"sign-in as {user_id} failed: {signed.status_code}"
        session = next(c.value for c in client.cookies.jar if c.name == SESSION_COOKIE)
        issued = client.post(
            "/api/v1/auth/token", json={"login": user_id, "password": DEMO_PASSWORD}
        )
        assert issued.status_code == 200, issued.text
        known[user_id] = (session, csrf_for_session(session), issued.json()["access_token"])
    session, csrf, token = known[user_id]
    client.cookies.delete(SESSION_COOKIE)
    client.cookies.set(SESSION_COOKIE, session)
    client.headers[CSRF_HEADER] = csrf
    return {"Authorization": f"Bearer {token}"}


def sign_in_page(page: Any, base_url: str, user_id: str) -> None:
    """Sign ``user_id`` in on a Playwright ``page`` of a live server at ``base_url``, through the
    sign-in form as a person would (login, demo password), and land on that user's home page.
    The server's database must hold the account: call :func:`seed_accounts` before starting it."""
    from serving.users import DEMO_PASSWORD

    page.goto(f"{base_url}/login")
    page.fill("#login", user_id)
    page.fill("#password", DEMO_PASSWORD)
    with page.expect_navigation():
        page.click("#sign-in")
    assert "/login" not in page.url, f"sign-in as {user_id} failed"
