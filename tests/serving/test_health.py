"""Liveness and readiness: ``/healthz`` says the process answers, ``/readyz`` whether it can work.

Readiness is refused (503, with the reason) while no model can be loaded or the database does not
answer; neither probe asks for a sign-in. The ready case (a registered champion, a live replica)
is in ``test_workers.py``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from serving.app import create_app
from serving.settings import Settings


def _app(tmp_path: Path, database_url: str | None = None) -> TestClient:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        mlflow_tracking_uri=None,
        scoring_worker=False,
    )
    return TestClient(create_app(settings))


def test_without_a_registered_model_the_replica_is_alive_but_not_ready(tmp_path: Path) -> None:
    with _app(tmp_path) as client:  # no cookie, no token: probes carry no credentials
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "not_ready"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["model"].startswith("not loadable")


def test_a_database_that_stops_answering_makes_the_replica_not_ready(
    tmp_path: Path, postgres_server: str, postgres_url: str
) -> None:
    with _app(tmp_path, postgres_url) as client:
        assert client.get("/readyz").json()["checks"]["database"] == "ok"
        admin = create_engine(postgres_server, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:  # the database goes away under the replica
            name = make_url(postgres_url).database
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()
        ready = client.get("/readyz")
        assert client.get("/healthz").status_code == 200  # alive all the same
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"].startswith("unavailable")
