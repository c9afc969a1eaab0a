"""Ids out of the database's range are refused (422) before any query, on every route.

``GET /api/v1/cases/99999999999999999999999`` used to answer 500 on SQLite (the driver cannot
bind an integer past 64 bits). Path and query ids are now typed in :mod:`serving.deps`
(``CaseId``, ``PhotoId``, ``CaseIdQuery``, ``PageNumber``, ``ModelVersion``...) with the range of
the column they are looked up in, so a number that no row can have never reaches the database.

The routes are enumerated from the application itself: every path parameter typed ``int``, every
model-version parameter and every integer query parameter of every route, so a new route with an
id is covered without touching this file. Each is called with a number past 64 bits, one just
past PostgreSQL's ``integer`` and a negative one, by the people allowed to call the route (their
requests would reach the database), on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from serving.app import create_app
from serving.db.models import Case, Photo
from serving.deps import CASE_ID_MAX, PHOTO_ID_MAX, column_max
from serving.settings import Settings
from tests.serving.conftest import sign_in
from tests.serving.test_access_routes import ACCESS, ANON, PEOPLE, World

#: Past 64 bits, just past PostgreSQL's 32-bit ``integer``, and below 1.
BAD_IDS = ("99999999999999999999999", str(2**31), "-1")
#: Path parameters that are names, not numbers.
TEXT_PATH_PARAMS = frozenset({"login", "plot"})
#: Parameters that name a registered model version (a number in MLflow's ``Integer`` column).
VERSION_PARAMS = frozenset({"version", "a", "b"})


def _routes() -> list[APIRoute]:
    app = create_app(Settings(scoring_worker=False))
    found: list[APIRoute] = []

    def walk(routes: Any) -> None:
        for route in routes:
            if hasattr(route, "original_router"):
                walk(route.original_router.routes)
            elif isinstance(route, APIRoute):
                found.append(route)

    walk(app.routes)
    return found


def _is_int(annotation: Any) -> bool:
    return annotation is int or (getattr(annotation, "__args__", None) or ()) == (int, type(None))


def id_params(route: APIRoute) -> list[tuple[str, str]]:
    """(``path`` or ``query``, name) of each id-like parameter of ``route``."""
    found = []
    for param in route.dependant.path_params:
        if param.name not in TEXT_PATH_PARAMS:
            found.append(("path", param.name))
    for param in route.dependant.query_params:
        if _is_int(param.field_info.annotation) or param.name in VERSION_PARAMS:
            found.append(("query", param.name))
    return found


CASES = [
    pytest.param(method, route.path, where, name, id=f"{method} {route.path} {where}:{name}")
    for route in _routes()
    for method in sorted(route.methods - {"HEAD"})
    for where, name in id_params(route)
]


def test_the_routes_with_ids_are_found() -> None:
    """The enumeration itself: the routes of the security report are among those it finds."""
    found = {(p.values[1], p.values[3]) for p in CASES}
    for expected in [
        ("/api/v1/cases/{case_id}", "case_id"),
        ("/api/v1/cases/{case_id}/photos/{photo_id}", "photo_id"),
        ("/cases/{case_id}", "case_id"),
        ("/gp/requests/{case_id}", "case_id"),
        ("/governance/cases/{case_id}", "case_id"),
        ("/governance/versions/{version}", "version"),
        ("/api/v1/audit/events", "case_id"),
    ]:
        assert expected in found, expected


def test_every_int_path_parameter_is_bounded_to_its_column() -> None:
    """An ``int`` path parameter without bounds is a 500 waiting for a long number."""
    assert CASE_ID_MAX == column_max(Case.__table__.c.id) == 2**31 - 1  # Integer: 32-bit on PG
    assert column_max(Photo.__table__.c.id) == PHOTO_ID_MAX
    for route in _routes():
        for param in route.dependant.path_params:
            if not _is_int(param.field_info.annotation):
                continue
            bounds = {type(m).__name__: m for m in param.field_info.metadata}
            assert "Ge" in bounds and bounds["Ge"].ge >= 1, (route.path, param.name)
            assert "Le" in bounds and bounds["Le"].le <= CASE_ID_MAX, (route.path, param.name)


class IdWorld(World):
    """The access test's world (every person signed in, a Lyon case with a photo), whose URLs
    can carry one bad value in one parameter."""

    bad: tuple[str, str, str] | None = None  # (where, name, value)

    def url(self, path: str) -> str:
        if self.bad is None:
            return super().url(path)
        where, name, value = self.bad
        if where == "path":
            path = path.replace("{" + name + "}", value)
        url = super().url(path)
        if where == "query":
            query = {"a": "1", "b": "2"} if path.endswith("/compare") else {}
            query[name] = value
            url = url.split("?", 1)[0] + "?" + "&".join(f"{k}={v}" for k, v in query.items())
        return url


def _database(request: pytest.FixtureRequest, root: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{root / 'cases.db'}"
        return
    server = request.getfixturevalue("postgres_server")
    name = f"dermtriage_ids_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    clean_photos: list[Path],
) -> Iterator[IdWorld]:
    root = tmp_path_factory.mktemp("ids")
    for url in _database(request, root):
        settings = Settings(
            data_dir=root / "data", database_url=url, mlflow_tracking_uri=None,
            scoring_worker=False,
        )  # fmt: skip
        app = create_app(settings)
        with TestClient(app, raise_server_exceptions=False) as client:
            yield IdWorld(client, settings, clean_photos[0].read_bytes())


@pytest.mark.parametrize(("method", "path", "where", "name"), CASES)
def test_an_id_out_of_range_is_refused_before_any_query(
    world: IdWorld, method: str, path: str, where: str, name: str
) -> None:
    callers = sorted(ACCESS.get((method, path), frozenset(PEOPLE)) - {ANON})
    before = world.snapshot()
    for value in BAD_IDS:
        world.bad = (where, name, value)
        try:
            for person in callers:
                response = world.call(person, method, path)
                allowed = (404, 422) if where == "path" or name in VERSION_PARAMS else (200, 422)
                assert response.status_code in allowed, (
                    person, value, response.status_code, response.text[:300],
                )  # fmt: skip
        finally:
            world.bad = None
    assert world.snapshot() == before


def test_a_case_id_in_range_but_unknown_is_a_404_and_a_known_one_is_found(world: IdWorld) -> None:
    bearer = sign_in(world.client, "dr-bernard")
    assert world.client.get(f"/api/v1/cases/{CASE_ID_MAX}", headers=bearer).status_code == 404
    found = world.client.get(f"/api/v1/cases/{world.case_id}", headers=bearer)
    assert found.status_code == 200


def test_the_audit_pages_case_filter_past_the_range_matches_nothing(world: IdWorld) -> None:
    sign_in(world.client, "audit-moreau")
    for value in BAD_IDS[:2]:
        page = world.client.get(f"/audit?case={value}")
        assert page.status_code == 200, page.text[:300]
        assert f"/cases/{world.case_id}" not in page.text
