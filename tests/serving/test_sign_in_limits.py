"""The sign-in limits hold against simultaneous attempts and against a forged client address.

From the security report: eight simultaneous ``POST /api/v1/auth/token`` for one login were all
checked (limit 5), because each attempt counted the failures before checking its password and
wrote its own only after; and the per-address limit read ``X-Forwarded-For``, which uvicorn
believed from 127.0.0.1 by default, so rotating that header reset it.

Against a live uvicorn server started the way ``dermtriage serve`` starts it
(:func:`serving.commands.serve.uvicorn_options`), on SQLite and PostgreSQL: N threads released
together by a barrier, then the answers are counted. The outcome does not depend on timing
(claims are serialised), so the assertions are exact: as many 401 (password checked) as the
limit has room for, 429 (not checked) for the rest.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from pydantic import ValidationError
from sqlalchemy import create_engine, select
from starlette.requests import Request

from serving.app import create_app
from serving.commands.serve import uvicorn_options
from serving.db.models import LoginFailure
from serving.deps import client_address
from serving.settings import Settings
from serving.users import DEMO_PASSWORD
from tests.serving.conftest import seed_accounts

N = 10


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def live_server(settings: Settings) -> Iterator[str]:
    """The service on a loopback port, with ``dermtriage serve``'s uvicorn options."""
    port = _free_port()
    options = uvicorn_options(settings, "127.0.0.1", port)
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning", **options))
    thread = threading.Thread(target=server.run, name="uvicorn-sign-in", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def race(base: str, attempts: list[dict[str, str]]) -> Counter[int]:
    """Send every attempt at once (one thread and connection each); count the answers."""
    barrier = threading.Barrier(len(attempts))
    answers: list[int] = []
    lock = threading.Lock()

    def attempt(body: dict[str, str]) -> None:
        with httpx.Client(base_url=base, timeout=120) as client:
            barrier.wait()
            status = client.post("/api/v1/auth/token", json=body).status_code
        with lock:
            answers.append(status)

    threads = [threading.Thread(target=attempt, args=(body,)) for body in attempts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    assert len(answers) == len(attempts), "an attempt did not finish"
    return Counter(answers)


def failures(settings: Settings) -> list[tuple[str, str]]:
    engine = create_engine(settings.sqlalchemy_url)
    try:
        with engine.connect() as connection:
            query = select(LoginFailure.login, LoginFailure.client).order_by(LoginFailure.id)
            return [(row.login, row.client) for row in connection.execute(query)]
    finally:
        engine.dispose()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """SQLite and PostgreSQL: the limits live in the database, shared by every worker."""
    return Settings(
        data_dir=tmp_path / "data", database_url=database_url, mlflow_tracking_uri=None,
        scoring_worker=False,
    )  # fmt: skip


def test_simultaneous_attempts_for_one_login_check_at_most_the_limit(settings: Settings) -> None:
    seed_accounts(settings, "dr-martin")
    limit = settings.login_max_failures
    with live_server(settings) as base:
        wrong = {"login": "dr-martin", "password": "a wrong guess"}
        answers = race(base, [wrong] * N)
        assert answers == Counter({401: limit, 429: N - limit}), answers
        assert len(failures(settings)) == limit  # the refused ones left no row
        # Locked: even the right password is not checked now.
        right = httpx.post(
            f"{base}/api/v1/auth/token", json={"login": "dr-martin", "password": DEMO_PASSWORD}
        )
        assert right.status_code == 429


def test_simultaneous_attempts_from_one_address_check_at_most_its_limit(
    settings: Settings,
) -> None:
    per_client = 3
    limited = settings.model_copy(update={"login_max_failures_per_client": per_client})
    seed_accounts(limited, "dr-martin")
    with live_server(limited) as base:
        spray = [{"login": f"guess-{i}", "password": "a wrong guess"} for i in range(N)]
        answers = race(base, spray)
        assert answers == Counter({401: per_client, 429: N - per_client}), answers
        assert {client for _, client in failures(limited)} == {"127.0.0.1"}


def test_a_rotated_forwarded_for_does_not_reset_the_address_limit(settings: Settings) -> None:
    """No trusted proxy (the default): ``X-Forwarded-For`` from 127.0.0.1 names nobody."""
    limited = settings.model_copy(update={"login_max_failures_per_client": 3})
    with live_server(limited) as base:
        statuses = [
            httpx.post(
                f"{base}/api/v1/auth/token",
                json={"login": f"guess-{i}", "password": "a wrong guess"},
                headers={"X-Forwarded-For": f"203.0.113.{i}"},
            ).status_code
            for i in range(5)
        ]
    assert statuses == [401, 401, 401, 429, 429]
    assert {client for _, client in failures(limited)} == {"127.0.0.1"}


def test_behind_a_trusted_proxy_the_forwarded_client_is_counted(settings: Settings) -> None:
    """The proxy (here 127.0.0.1) is named: each forwarded client has its own count, and the
    client is the right-most hop the proxy did not write itself."""
    proxied = settings.model_copy(
        update={"login_max_failures_per_client": 3, "trusted_proxies": ("127.0.0.1",)}
    )
    with live_server(proxied) as base:
        for i in range(5):
            answer = httpx.post(
                f"{base}/api/v1/auth/token",
                json={"login": f"guess-{i}", "password": "a wrong guess"},
                headers={"X-Forwarded-For": f"6.6.6.6, 203.0.113.{i}"},
            )
            assert answer.status_code == 401
    assert [client for _, client in failures(proxied)] == [f"203.0.113.{i}" for i in range(5)]


# --- the pieces, without a server --------------------------------------------------------------


def _request(peer: str, forwarded: list[str], proxies: tuple[str, ...]) -> Request:
    """A request to the real application as the ASGI server hands it over: TCP peer, headers."""
    app = create_app(Settings(trusted_proxies=proxies))
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    return Request({"type": "http", "headers": headers, "client": (peer, 50000), "app": app})


@pytest.mark.parametrize(
    ("peer", "forwarded", "proxies", "client"),
    [
        ("127.0.0.1", ["203.0.113.7"], (), "127.0.0.1"),  # no proxy trusted: the header is noise
        ("198.51.100.1", ["203.0.113.7"], ("127.0.0.1",), "198.51.100.1"),  # not from the proxy
        ("127.0.0.1", ["203.0.113.7"], ("127.0.0.1",), "203.0.113.7"),
        ("10.0.0.5", ["1.1.1.1, 203.0.113.7, 10.0.0.4"], ("10.0.0.0/24",), "203.0.113.7"),
        ("10.0.0.5", ["1.1.1.1", "203.0.113.7"], ("10.0.0.0/24",), "203.0.113.7"),  # two headers
        ("10.0.0.5", ["10.0.0.3"], ("10.0.0.0/24",), "10.0.0.3"),  # only proxies: the first
        ("10.0.0.5", [], ("10.0.0.0/24",), "10.0.0.5"),
        ("::1", ["2001:db8::7"], ("::1",), "2001:db8::7"),
    ],
)
def test_client_address_believes_forwarded_for_only_from_a_trusted_peer(
    peer: str, forwarded: list[str], proxies: tuple[str, ...], client: str
) -> None:
    assert client_address(_request(peer, forwarded, proxies)) == client


def test_the_trusted_proxies_setting_reaches_uvicorn(monkeypatch: pytest.MonkeyPatch) -> None:
    default = uvicorn_options(Settings(), "127.0.0.1", 8000)
    assert default["proxy_headers"] is False and default["forwarded_allow_ips"] == []
    monkeypatch.setenv("DERMTRIAGE_TRUSTED_PROXIES", "10.0.0.5, 172.18.0.0/16")
    configured = Settings()
    assert configured.trusted_proxies == ("10.0.0.5", "172.18.0.0/16")
    options = uvicorn_options(configured, "0.0.0.0", 8000)
    assert options["proxy_headers"] is True
    assert options["forwarded_allow_ips"] == ["10.0.0.5", "172.18.0.0/16"]
    monkeypatch.setenv("DERMTRIAGE_TRUSTED_PROXIES", "*")
    with pytest.raises(ValidationError):
        Settings()
