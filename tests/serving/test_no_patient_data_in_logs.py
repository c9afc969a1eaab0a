"""No patient data in the application's logs, even at DEBUG: a whole case workflow against a real
uvicorn server (its error and access loggers included), a refused submission and a database error,
and not one log record holds the pseudonym, the questionnaire's free text or a message."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy.exc import IntegrityError

from serving.app import create_app
from serving.db.models import Case
from serving.db.session import Database
from serving.settings import Settings
from tests.serving.conftest import seed_accounts

pytestmark = pytest.mark.slow

GP, READER, SENIOR = "dr-martin", "dr-bernard", "pr-dubois"
PSEUDONYM = "PAT-QX77-ZEBRA"
SECRETS = {
    "pseudonym": PSEUDONYM,
    "clinical question": "Lésion framboisée apparue après le voyage",
    "treatments": "crème à la cortisone depuis trois semaines",
    "allergies": "allergie connue à la pénicilline G",
    "info request": "La lésion démange-t-elle la nuit",
    "answer": "Oui, surtout après la piscine",
    "message": "Merci de rappeler Mme au numéro habituel",
    "report": "Aspect de botriomycome probable",
    "diagnosis": "Botriomycome suspecté",
}


def questionnaire(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "patient_pseudonym": PSEUDONYM,
        "age": 47,
        "sex": "female",
        "fitzpatrick": "III",
        "body_site": "upper extremity",
        "duration": "1_6_months",
        "changed_size": True,
        "clinical_question": SECRETS["clinical question"],
        "treatments": SECRETS["treatments"],
        "allergies": SECRETS["allergies"],
    }
    data.update(overrides)
    return data


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(settings: Settings, real_predictor: Any) -> Iterator[str]:
    """A real uvicorn server, its loggers left to propagate (``log_config=None``) to caplog."""
    seed_accounts(settings, GP, READER, SENIOR)
    app = create_app(settings.model_copy(update={"scoring_poll_seconds": 0.2}))
    app.state.load_predictor = lambda: real_predictor
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, log_level="debug")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(30)


def bearer(http: httpx.Client, login: str) -> dict[str, str]:
    from serving.users import DEMO_PASSWORD

    answer = http.post("/api/v1/auth/token", json={"login": login, "password": DEMO_PASSWORD})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def test_a_whole_workflow_logs_no_patient_data(
    server: str, clean_photos: list[Path], caplog: pytest.LogCaptureFixture, settings: Settings
) -> None:
    caplog.set_level(logging.DEBUG)
    photo = clean_photos[0].read_bytes()
    with httpx.Client(base_url=server, timeout=60) as http:
        gp, reader, senior = bearer(http, GP), bearer(http, READER), bearer(http, SENIOR)
        refused = http.post(
            "/api/v1/cases", headers=gp, files=[("photos", ("a.jpg", photo, "image/jpeg"))],
            data={"questionnaire": json.dumps(questionnaire(age=-4))},
        )  # fmt: skip
        assert refused.status_code == 422
        made = http.post(
            "/api/v1/cases", headers=gp, files=[("photos", ("a.jpg", photo, "image/jpeg"))],
            data={"questionnaire": json.dumps(questionnaire())},
        )  # fmt: skip
        assert made.status_code == 201, made.text
        base = f"/api/v1/cases/{made.json()['id']}"
        deadline = time.monotonic() + 60
        while http.get(base, headers=reader).json()["scoring_state"] != "done":
            assert time.monotonic() < deadline, "the worker did not score the case"
            time.sleep(0.2)
        steps = [
            ("GET", "/api/v1/cases", reader, None),
            ("POST", f"{base}/review", reader, None),
            ("POST", f"{base}/info-requests", reader, {"body": SECRETS["info request"]}),
            ("POST", f"{base}/answers", gp, {"body": SECRETS["answer"]}),
            ("POST", f"{base}/messages", gp, {"body": SECRETS["message"]}),
            ("PUT", f"{base}/report", reader,
             {"conduct": "consultation", "interval": 1, "diagnosis": SECRETS["diagnosis"],
              "diagnosis_code": "melanoma", "text": SECRETS["report"]}),
            ("POST", f"{base}/report/validation", senior, None),
            ("GET", f"{base}/report.pdf", gp, None),
            ("GET", f"{base}/report.fhir.json", gp, None),
            ("GET", base, gp, None),
        ]  # fmt: skip
        for method, url, headers, body in steps:
            answer = http.request(method, url, headers=headers, json=body)
            assert answer.status_code in (200, 201), (url, answer.text)
        assert SECRETS["report"] in http.get(base, headers=gp).text  # it was really there
    # A database error carries the row it refused: its text must not (hidden parameters).
    database = Database(settings.sqlalchemy_url)
    try:
        with pytest.raises(IntegrityError) as refused_row, database.session() as session:
            session.add(Case(patient_pseudonym=PSEUDONYM, questionnaire={"x": PSEUDONYM}))
        logging.getLogger("tests.db").error("refused: %s", refused_row.value)
    finally:
        database.dispose()

    records = caplog.records
    loggers = {record.name for record in records}
    assert "uvicorn.access" in loggers, "the access log was not captured"
    assert any(name.startswith("serving.") for name in loggers)
    everything = "\n".join(
        [caplog.text, *(record.getMessage() for record in records)]
        + [repr(record.args) for record in records]
    )
    leaked = {what: text for what, text in SECRETS.items() if text in everything}
    assert leaked == {}, f"patient data in the logs: {sorted(leaked)}"
