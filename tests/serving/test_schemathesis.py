"""Schemathesis against the service's own OpenAPI schema: no request a client can send makes it
answer 5xx.

In process (ASGI), against the real application, real SQLite and photo store, signed in as a
requester with a real bearer token. Examples are bounded per operation so the whole sweep stays
well under a minute; the multipart submission gets random "photos" too, which exercises the
intake's refusals. Only ``DELETE /api/v1/auth/token`` is left out: it would revoke the token the
rest of the sweep signs in with.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from serving.app import create_app
from serving.settings import Settings
from tests.serving.conftest import sign_in

REQUESTER = "dr-martin"
REVOKE_PATH = "/api/v1/auth/token"
EXAMPLES = 8  # per operation and mode: the sweep stays under a minute on two cores


@pytest.fixture(scope="module")
def running_app(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[FastAPI, dict[str, str]]]:
    data_dir: Path = tmp_path_factory.mktemp("schemathesis") / "data"
    app = create_app(
        Settings(
            data_dir=data_dir, mlflow_tracking_uri=None, database_url=None, scoring_worker=False
        )
    )
    with TestClient(app, raise_server_exceptions=False) as client:  # runs the lifespan
        headers = sign_in(client, REQUESTER)
        yield app, headers


def _operations(app: FastAPI) -> list[Any]:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    # The readiness probe answers 503 by design while no model is loadable (none is here).
    return [
        op
        for op in operations
        if not (op.method.upper() == "DELETE" and op.path == REVOKE_PATH) and op.path != "/readyz"
    ]


def _sweep(operation: Any, mode: GenerationMode, auth: dict[str, str], failures: list[str]) -> int:
    """Send ``EXAMPLES`` generated requests to one operation; returns how many were sent."""
    sent = 0

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        nonlocal sent
        sent += 1
        response = case.call(headers={**(case.headers or {}), **auth})
        if response.status_code >= 500:
            failures.append(
                f"{case.method} {case.formatted_path} ({mode.value}) -> "
                f"{response.status_code}: {response.text[:200]}"
            )

    try:
        check()
    except Unsatisfiable:  # nothing invalid to send (an operation without input)
        assert mode is GenerationMode.NEGATIVE, operation.label
    return sent


def test_no_request_makes_the_service_fail(running_app: tuple[FastAPI, dict[str, str]]) -> None:
    """Every operation, with valid-looking and with invalid input: never a 5xx."""
    app, auth = running_app
    operations = _operations(app)
    assert len(operations) >= 15  # the schema was read, cases API included
    assert any(op.path == "/api/v1/cases" and op.method.upper() == "POST" for op in operations)
    failures: list[str] = []
    sent = {
        operation.label: sum(
            _sweep(operation, mode, auth, failures)
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        )
        for operation in operations
    }
    assert failures == [], "\n".join(failures[:20])
    assert all(count > 0 for count in sent.values()), sent  # every operation was really called
