"""``dermtriage audit verify|list`` on a real database: exit 0 with the count when intact, non-zero
naming the first broken event after rows were tampered with behind the triggers' back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from serving import audit
from serving.audit import AuditActor
from serving.cli import main
from serving.db.session import Database
from serving.settings import get_settings

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


@pytest.fixture
def database(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    monkeypatch.setenv("DERMTRIAGE_DATABASE_URL", database_url)
    get_settings.cache_clear()
    db = Database(database_url)
    db.upgrade()
    with db.session() as session:
        for i in range(1, 7):
            actor = AuditActor("pr-dubois" if i % 2 else "dr-bernard", "senior")
            audit.record(session, actor, "case.read", case_id=i % 3, at=T0 + timedelta(hours=i))
    yield db
    db.dispose()
    get_settings.cache_clear()


def tamper(db: Database, sql: str) -> None:
    """Edit the table directly, as an intruder with the password would: triggers dropped first."""
    with db.engine.begin() as connection:
        if db.engine.dialect.name == "sqlite":
            connection.execute(text("DROP TRIGGER audit_events_no_update"))
            connection.execute(text("DROP TRIGGER audit_events_no_delete"))
        else:
            connection.execute(text("DROP TRIGGER audit_events_append_only ON audit_events"))
        connection.execute(text(sql))


def test_verify_exits_0_with_the_count_and_the_head(
    database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "verify"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("audit trail intact: 6 events, head 6:")
    anchor = out.strip().rsplit(" ", 1)[1]
    assert main(["audit", "verify", "--anchor", anchor]) == 0


def test_verify_names_an_edited_event(
    database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    tamper(database, "UPDATE audit_events SET actor_id = 'dr-nguyen' WHERE seq = 3")
    assert main(["audit", "verify"]) == 1
    assert "BROKEN at event 3 (edited)" in capsys.readouterr().out


def test_verify_names_a_deleted_event(
    database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    tamper(database, "DELETE FROM audit_events WHERE seq = 4")
    assert main(["audit", "verify", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["intact"] is False
    assert report["first_break"]["seq"] == 4 and report["first_break"]["reason"] == "missing"


def test_verify_names_an_event_inserted_out_of_chain(
    database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    with database.engine.begin() as connection:  # an INSERT needs no trigger dropped
        connection.execute(
            text(
                "INSERT INTO audit_events (seq, at, actor_id, actor_role, action, prev_hash, hash)"
                " VALUES (7, :at, 'intruder', 'admin', 'case.read', :prev, :hash)"
            ),
            {"at": T0, "prev": "1" * 64, "hash": "2" * 64},
        )
    assert main(["audit", "verify"]) == 1
    out = capsys.readouterr().out
    assert "BROKEN at event 7" in out


def test_verify_fails_with_2_when_there_is_no_trail(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DERMTRIAGE_DATABASE_URL", f"sqlite:///{tmp_path}/empty.db")
    get_settings.cache_clear()
    try:
        assert main(["audit", "verify"]) == 2
    finally:
        get_settings.cache_clear()
    assert "cannot read the audit trail" in capsys.readouterr().err


def test_list_filters_and_prints_json_lines(
    database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "list", "--actor", "pr-dubois", "--json"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["seq"] for e in events] == [5, 3, 1]
    assert main(["audit", "list", "--case", "0", "--since", "2026-11-25T12:00:00"]) == 0
    captured = capsys.readouterr()
    assert [line.split()[0] for line in captured.out.splitlines()] == ["6", "3"]
    assert "2 of 2 event(s)" in captured.err
