"""Two people acting on one case at the same moment: exactly one succeeds, on every database.

Each test brings a real case to the state it needs through the API of a live server (uvicorn in
its own process, on SQLite and on PostgreSQL), then fires the same request, or two conflicting
ones, from several threads released together by a barrier. Whatever the order the database
serialises them in, the outcome must be the same: one 2xx, every other answer 409 with a code,
one event in the case's history, an audit chain that verifies, and a report never validated by
its own author. The races are repeated on fresh cases so an interleaving that slips through
once has several chances to show. One race is run across two server processes on one database,
as two replicas would serve it.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from benchmarks.load import ServerProcess, api_token, free_port, sample_photos
from serving.settings import Settings
from tests.serving.conftest import seed_accounts
from tests.serving.test_api_cases import questionnaire

GP = "dr-martin"
READERS = ("dr-bernard", "dr-nguyen")
SENIORS = ("pr-dubois", "dr-garnier")
AUDITOR = "audit-moreau"
SENIOR_NAME = "Pr Hélène Dubois"
THREADS = 8
ROUNDS = 3

Request = Callable[[httpx.Client], httpx.Response]


@dataclass
class Live:
    """A running server, its second replica (started on demand), and a token per account."""

    settings: Settings
    server: ServerProcess
    tokens: dict[str, str]
    photo: bytes

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def headers(self, login: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[login]}"}

    def call(self, login: str, method: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.request(
            method, self.base_url + path, headers=self.headers(login), timeout=60, **kw
        )

    def new_case(self) -> int:
        answers = questionnaire()
        answers.pop("requester", None)  # who sends the request comes from the account
        response = self.call(
            GP,
            "POST",
            "/api/v1/cases",
            data={"questionnaire": json.dumps(answers)},
            files=[("photos", ("lesion.jpg", self.photo, "image/jpeg"))],
        )
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    def step(self, login: str, method: str, path: str, **kw: Any) -> None:
        response = self.call(login, method, path, **kw)
        assert response.status_code < 300, (
            f"{method} {path}: {response.status_code} {response.text}"
        )

    def case_in(self, state: str) -> int:
        """A fresh case walked through the workflow to ``state``."""
        case_id = self.new_case()
        path = f"/api/v1/cases/{case_id}"
        order = ["submitted", "in_review", "info_requested", "answered", "report_written"]
        walk: list[tuple[str, str, str, dict[str, Any]]] = [
            (READERS[0], "POST", "/review", {}),
            (READERS[0], "POST", "/info-requests", {"json": {"body": "Depuis quand ?"}}),
            (GP, "POST", "/answers", {"json": {"body": "Depuis six mois."}}),
            (READERS[0], "PUT", "/report", {"json": report_body("Naevus banal.")}),
            (SENIORS[1], "POST", "/report/validation", {}),
        ]
        target = order.index(state) if state in order else len(order)
        for login, method, suffix, kw in walk[:target]:
            self.step(login, method, path + suffix, **kw)
        return case_id

    def events(self, case_id: int, action: str) -> int:
        history = self.call(AUDITOR, "GET", f"/api/v1/cases/{case_id}/events")
        assert history.status_code == 200, history.text
        return sum(1 for event in history.json() if event["action"] == action)

    def case(self, case_id: int) -> dict[str, Any]:
        response = self.call(AUDITOR, "GET", f"/api/v1/cases/{case_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def assert_chain_intact(self) -> None:
        chain = self.call(AUDITOR, "GET", "/api/v1/audit/chain").json()
        assert chain["intact"], chain["first_break"]


def report_body(text_: str) -> dict[str, Any]:
    return {
        "conduct": "reassure",
        "interval": None,
        "diagnosis": "",
        "diagnosis_code": "naevus",
        "text": text_,
    }


def _database(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'cases.db'}"
        return
    server = request.getfixturevalue("postgres_server")
    name = f"dermtriage_race_{uuid.uuid4().hex[:12]}"
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
def live(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    dataset_dir: Path,
) -> Iterator[Live]:
    tmp_path = tmp_path_factory.mktemp(f"race-{request.param}")
    for url in _database(request.param, tmp_path, request):
        settings = Settings(
            data_dir=tmp_path / "data",
            database_url=url,
            mlflow_tracking_uri=None,
            scoring_worker=False,
        )
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        seed_accounts(settings, GP, *READERS, *SENIORS, AUDITOR)
        server = ServerProcess(settings, port=free_port())
        server.start()
        try:
            logins = (GP, *READERS, *SENIORS, AUDITOR)
            tokens = {login: api_token(server.base_url, login) for login in logins}
            yield Live(settings, server, tokens, sample_photos(dataset_dir, 1)[0])
        finally:
            server.stop()


def race(base_urls: list[str], requests: list[Request]) -> list[httpx.Response]:
    """Send ``requests`` at once, one thread each (the i-th to ``base_urls[i % len]``): each
    thread opens its connection first, then all wait on a barrier and fire together."""
    barrier = threading.Barrier(len(requests))
    answers: list[httpx.Response | BaseException | None] = [None] * len(requests)

    def fire(index: int) -> None:
        with httpx.Client(base_url=base_urls[index % len(base_urls)], timeout=90) as client:
            try:
                client.get("/healthz")  # the connection is open before the barrier
                barrier.wait(timeout=60)
                answers[index] = requests[index](client)
            except BaseException as exc:  # reported below, with the others' answers
                answers[index] = exc

    threads = [threading.Thread(target=fire, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    failed = [a for a in answers if not isinstance(a, httpx.Response)]
    assert not failed, f"requests did not complete: {failed}"
    return [a for a in answers if isinstance(a, httpx.Response)]


def post(live: Live, login: str, path: str, **kw: Any) -> Request:
    return lambda client: client.post(path, headers=live.headers(login), **kw)


def put(live: Live, login: str, path: str, **kw: Any) -> Request:
    return lambda client: client.put(path, headers=live.headers(login), **kw)


def assert_one_winner(answers: list[httpx.Response]) -> httpx.Response:
    codes = sorted(a.status_code for a in answers)
    winners = [a for a in answers if a.status_code < 300]
    assert len(winners) == 1, f"expected exactly one success, got {codes}"
    for loser in answers:
        if loser.status_code >= 300:
            assert loser.status_code == 409, (loser.status_code, loser.text)
            assert loser.json()["detail"]["code"], loser.text
    return winners[0]


# --- the same change sent many times at once: it takes effect once ----------------------------


@pytest.mark.parametrize("who", ["two readers", "the same reader"])
def test_a_review_started_by_several_requests_at_once_starts_once(live: Live, who: str) -> None:
    for _ in range(ROUNDS):
        case_id = live.case_in("submitted")
        logins = [READERS[i % 2] if who == "two readers" else READERS[0] for i in range(THREADS)]
        path = f"/api/v1/cases/{case_id}/review"
        assert_one_winner(race([live.base_url], [post(live, login, path) for login in logins]))
        assert live.events(case_id, "start_review") == 1
    live.assert_chain_intact()


def test_a_gp_closing_a_case_twice_at_once_closes_it_once(live: Live) -> None:
    for _ in range(ROUNDS):
        case_id = live.case_in("validated")
        path = f"/api/v1/cases/{case_id}/close"
        assert_one_winner(race([live.base_url], [post(live, GP, path) for _ in range(THREADS)]))
        assert live.events(case_id, "close") == 1
        assert live.case(case_id)["status"] == "closed"
    live.assert_chain_intact()


def test_two_seniors_validating_at_once_validate_once(live: Live) -> None:
    for _ in range(ROUNDS):
        case_id = live.case_in("report_written")
        path = f"/api/v1/cases/{case_id}/report/validation"
        requests = [post(live, SENIORS[i % 2], path) for i in range(THREADS)]
        winner = assert_one_winner(race([live.base_url], requests))
        assert live.events(case_id, "validate") == 1
        assert winner.json()["report"]["validated_by"] is not None
    live.assert_chain_intact()


@pytest.mark.parametrize(
    ("action", "state", "login", "suffix", "body"),
    [
        ("request_info", "in_review", READERS[0], "/info-requests", {"body": "Une photo ?"}),
        ("answer", "info_requested", GP, "/answers", {"body": "La voici."}),
        ("return_for_revision", "report_written", SENIORS[0], "/report/revision", {"body": "Non"}),
    ],
)
def test_each_state_change_sent_many_times_at_once_takes_effect_once(
    live: Live, action: str, state: str, login: str, suffix: str, body: dict[str, str]
) -> None:
    case_id = live.case_in(state)
    path = f"/api/v1/cases/{case_id}{suffix}"
    assert_one_winner(race([live.base_url], [post(live, login, path, json=body)] * THREADS))
    assert live.events(case_id, action) == 1
    live.assert_chain_intact()


def _winners(answers: list[httpx.Response]) -> int:
    """Requests that may each take effect (a message, a revision of the report): the ones that
    lose answer 409, and each one that wins is written whole, once."""
    assert any(a.status_code < 300 for a in answers), [a.status_code for a in answers]
    for loser in (a for a in answers if a.status_code >= 300):
        assert loser.status_code == 409, (loser.status_code, loser.text)
    return sum(1 for a in answers if a.status_code < 300)


def test_messages_sent_at_once_are_each_stored_once_or_refused(live: Live) -> None:
    case_id = live.case_in("in_review")
    path = f"/api/v1/cases/{case_id}/messages"
    requests = [post(live, GP, path, json={"body": f"Message {i}"}) for i in range(THREADS)]
    won = _winners(race([live.base_url], requests))
    assert live.events(case_id, "message") == won
    assert len([m for m in live.case(case_id)["messages"] if m["kind"] == "message"]) == won
    live.assert_chain_intact()


def test_report_revisions_sent_at_once_are_each_written_whole_or_refused(live: Live) -> None:
    case_id = live.case_in("answered")
    path = f"/api/v1/cases/{case_id}/report"
    texts = [f"Compte rendu {i} : naevus banal." for i in range(THREADS)]
    won = _winners(
        race([live.base_url], [put(live, READERS[0], path, json=report_body(t)) for t in texts])
    )
    report = live.case(case_id)["report"]
    assert report["revision"] == won == live.events(case_id, "write_report")
    assert report["text"] in texts
    live.assert_chain_intact()


# --- the four-eyes rule under a race ----------------------------------------------------------


def _four_eyes_round(live: Live, base_urls: list[str]) -> None:
    """A senior rewrites the reader's report and validates it in the same instant: whichever
    the database takes first, the other is refused, and the report is never validated by the
    author of its current revision."""
    case_id = live.case_in("report_written")
    senior = SENIORS[0]
    path = f"/api/v1/cases/{case_id}/report"
    rewrite = put(live, senior, path, json=report_body("Réécrit par le senior."))
    validate = post(live, senior, path + "/validation")
    answers = race(base_urls, [rewrite, validate])
    assert_one_winner(answers)
    report = live.case(case_id)["report"]
    if report["validated_by"] is not None:
        assert report["validated_by"] != report["author"], report
        assert live.case(case_id)["status"] == "validated"
    else:
        assert report["author"] == SENIOR_NAME
        assert live.events(case_id, "validate") == 0


def test_a_senior_cannot_rewrite_and_validate_a_report_at_the_same_instant(live: Live) -> None:
    for _ in range(ROUNDS * 3):
        _four_eyes_round(live, [live.base_url])
    live.assert_chain_intact()


def test_the_four_eyes_rule_holds_across_two_server_processes(live: Live) -> None:
    replica = ServerProcess(live.settings, port=free_port())
    replica.start()
    try:
        for _ in range(ROUNDS * 2):
            _four_eyes_round(live, [live.base_url, replica.base_url])
    finally:
        replica.stop()
    live.assert_chain_intact()


def test_a_validation_names_the_revision_it_read_and_a_newer_one_is_refused(live: Live) -> None:
    case_id = live.case_in("report_written")
    path = f"/api/v1/cases/{case_id}/report"
    read = live.case(case_id)["report"]["revision"]
    live.step(READERS[0], "PUT", path, json=report_body("Corrigé après relecture."))
    stale = live.call(SENIORS[0], "POST", path + "/validation", json={"revision": read})
    assert stale.status_code == 409
    assert stale.json()["detail"]["code"] == "report_changed"
    assert live.case(case_id)["status"] == "report_written"
    fresh = live.call(SENIORS[0], "POST", path + "/validation", json={"revision": read + 1})
    assert fresh.status_code == 200, fresh.text
