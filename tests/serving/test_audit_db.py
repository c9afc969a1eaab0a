"""The audit trail in a real database (SQLite and PostgreSQL): events commit with their change,
concurrent writers never fork the chain, triggers refuse edits, and tampering that bypasses the
triggers (dropped in the test, as an intruder with the database password would) is detected."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import DBAPIError

from pipeline.audit_chain import GENESIS_HASH, ChainEvent, seal
from serving import audit
from serving.audit import Anchor, AuditActor, AuditFilters
from serving.db.models import AuditEvent, AuditHead, Case
from serving.db.session import Database
from serving.users import find_user

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
READER = AuditActor("dr-bernard", "first_reader")
AUDITOR = AuditActor("auditor-1", "auditor")


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    db.upgrade()
    yield db
    db.dispose()


def fill(database: Database, n: int) -> None:
    with database.session() as session:
        for i in range(n):
            audit.record(
                session,
                READER,
                audit.CASE_READ,
                case_id=i % 4 + 1,
                details={"via": "api"},
                at=T0 + timedelta(seconds=i),
            )


def drop_guards(engine: Engine) -> None:
    """What an intruder with the database password could do first: remove the triggers."""
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            for name in ("audit_events_no_update", "audit_events_no_delete",
                         "audit_head_no_delete", "audit_head_forward_only"):  # fmt: skip
                connection.execute(text(f"DROP TRIGGER {name}"))
        else:
            for name, table in (("audit_events_append_only", "audit_events"),
                                ("audit_head_forward_only", "audit_head")):  # fmt: skip
                connection.execute(text(f"DROP TRIGGER {name} ON {table}"))


def raw(engine: Engine, sql: str, **params: object) -> None:
    with engine.begin() as connection:
        connection.execute(text(sql), params)


def test_events_chain_from_the_genesis_and_verify(database: Database) -> None:
    fill(database, 5)
    with database.session() as session:
        status = audit.verify(session)
        events = audit.list_events(session).events
    assert status.intact and status.count == 5
    assert [e.seq for e in events] == [5, 4, 3, 2, 1]  # newest first
    assert events[-1].prev_hash == GENESIS_HASH
    assert all(a.prev_hash == b.hash for a, b in itertools.pairwise(events))
    assert events[-1].at == T0
    assert (status.head_seq, status.head_hash) == (5, events[0].hash)


def test_an_event_commits_or_rolls_back_with_the_change_it_records(database: Database) -> None:
    fill(database, 1)
    with pytest.raises(RuntimeError), database.session() as session:
        session.add(
            Case(status="submitted", submitted_at=T0, updated_at=T0, requester_id="dr-martin",
                 requester_name="x", requester_organisation="y", patient_pseudonym="PAT-9",
                 questionnaire={}, scoring_state="pending", scoring_attempts=0)
        )  # fmt: skip
        audit.record(session, find_user("dr-martin"), "case.submit", case_id=1, at=T0)  # type: ignore[arg-type]
        raise RuntimeError("the request fails after recording")
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Case)) == 0
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 1
        assert session.get(AuditHead, 1).seq == 1  # type: ignore[union-attr]
        assert audit.verify(session).intact


def test_concurrent_writers_take_turns_and_never_fork_the_chain(database: Database) -> None:
    threads, per_thread = 4, 15
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def write(worker: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                with database.session() as session:
                    audit.record(
                        session, AuditActor(f"w{worker}", "system"), "case.score", case_id=i
                    )
        except BaseException as exc:  # collected and re-raised by the test below
            errors.append(exc)

    pool = [threading.Thread(target=write, args=(w,)) for w in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert errors == []
    with database.session() as session:
        status = audit.verify(session)
        actors = session.scalars(select(AuditEvent.actor_id)).all()
    assert status.intact and status.count == threads * per_thread
    assert sorted(set(actors)) == [f"w{w}" for w in range(threads)]


def test_the_triggers_refuse_update_and_delete(database: Database) -> None:
    fill(database, 3)
    for statement in (
        "UPDATE audit_events SET actor_id = 'someone' WHERE seq = 2",
        "DELETE FROM audit_events WHERE seq = 3",
        "DELETE FROM audit_head",
        "UPDATE audit_head SET seq = 1",
    ):
        with pytest.raises(DBAPIError, match=r"append-only|may not|only moves forward"):
            raw(database.engine, statement)
    if database.engine.dialect.name == "postgresql":
        with pytest.raises(DBAPIError, match="append-only"):
            raw(database.engine, "TRUNCATE audit_events")
    with database.session() as session:
        assert audit.verify(session).intact


def test_an_edited_event_is_named(database: Database) -> None:
    fill(database, 6)
    drop_guards(database.engine)
    raw(database.engine, "UPDATE audit_events SET case_id = 99 WHERE seq = 4")
    with database.session() as session:
        status = audit.verify(session)
    assert status.first_break is not None
    assert (status.first_break.seq, status.first_break.reason) == (4, "edited")


def test_a_deleted_event_is_named(database: Database) -> None:
    fill(database, 6)
    drop_guards(database.engine)
    raw(database.engine, "DELETE FROM audit_events WHERE seq = 2")
    with database.session() as session:
        status = audit.verify(session)
    assert status.first_break is not None
    assert (status.first_break.seq, status.first_break.reason) == (2, "missing")


def _insert(engine: Engine, event: ChainEvent) -> None:
    with Database(engine.url.render_as_string(hide_password=False)).session() as session:
        session.add(AuditEvent(**{k: v for k, v in event.__dict__.items()}))


def test_an_event_inserted_out_of_chain_is_named(database: Database) -> None:
    fill(database, 3)
    with database.session() as session:
        last = audit.list_events(session).events[0]
    forged = seal(ChainEvent(4, T0, "intruder", "admin", "case.read", 1, None, None, "e" * 64))
    _insert(database.engine, forged)  # no trigger stops an INSERT: the chain does
    with database.session() as session:
        status = audit.verify(session)
    assert last.seq == 3
    assert status.first_break is not None
    assert (status.first_break.seq, status.first_break.reason) == (4, "unlinked")


def test_removing_the_newest_events_is_seen_against_the_head(database: Database) -> None:
    fill(database, 6)
    drop_guards(database.engine)
    raw(database.engine, "DELETE FROM audit_events WHERE seq >= 5")
    with database.session() as session:
        status = audit.verify(session)
    assert status.walk.intact  # what is left still links...
    assert status.first_break is not None
    assert (status.first_break.seq, status.first_break.reason) == (5, "truncated")


def test_a_kept_anchor_catches_a_truncation_that_also_rewound_the_head(
    database: Database,
) -> None:
    fill(database, 6)
    with database.session() as session:
        anchor = audit.verify(session).anchor
    assert anchor.seq == 6
    drop_guards(database.engine)
    raw(database.engine, "DELETE FROM audit_events WHERE seq >= 5")
    with database.session() as session:
        kept = session.scalar(select(AuditEvent.hash).where(AuditEvent.seq == 4))
    raw(database.engine, "UPDATE audit_head SET seq = 4, hash = :h", h=kept)
    with database.session() as session:
        assert audit.verify(session).intact  # the database alone cannot tell...
        status = audit.verify(session, [Anchor.parse(str(anchor))])
    assert status.first_break is not None  # ...the anchor kept outside it can
    assert (status.first_break.seq, status.first_break.reason) == (6, "anchor")


def test_recording_after_a_verified_chain_keeps_it_intact(database: Database) -> None:
    fill(database, 2)
    with database.session() as session:
        audit.record(session, AUDITOR, audit.AUDIT_READ, details={"page": 1})
    with database.session() as session:
        assert audit.verify(session).count == 3


def test_listing_filters_by_actor_action_case_and_dates(database: Database) -> None:
    fill(database, 8)  # case ids 1,2,3,4,1,2,3,4 at T0 + 0..7 s
    with database.session() as session:
        audit.record(session, AUDITOR, audit.AUDIT_READ, at=T0 + timedelta(seconds=20))

        def seqs(**kw: object) -> list[int]:
            found = audit.list_events(session, AuditFilters(**kw), page_size=100)  # type: ignore[arg-type]
            return [e.seq for e in found.events]

        assert seqs(case_id=2) == [6, 2]
        assert seqs(actor_id="auditor-1") == [9]
        assert seqs(action="audit.read") == [9]
        assert seqs(action="case.*") == [8, 7, 6, 5, 4, 3, 2, 1]
        assert seqs(since=T0 + timedelta(seconds=6), until=T0 + timedelta(seconds=8)) == [8, 7]
        page = audit.list_events(session, page=2, page_size=4)
        assert ([e.seq for e in page.events], page.total, page.pages) == ([5, 4, 3, 2], 9, 3)


def test_patient_data_is_refused_before_anything_is_written(database: Database) -> None:
    from pipeline.audit_chain import AuditDetailsError

    with pytest.raises(AuditDetailsError), database.session() as session:
        audit.record(session, READER, "case.read", details={"patient_pseudonym": "PAT-1"})
    with database.session() as session:
        assert session.get(AuditHead, 1).seq == 0  # type: ignore[union-attr]


def test_the_page_monitor_walks_everything_first_then_the_new_events(database: Database) -> None:
    monitor = audit.ChainMonitor(full_every_s=3600)
    fill(database, 5)
    with database.session() as session:
        first = monitor.check(session)
    assert first.full and first.status.intact and first.status.count == 5
    fill(database, 3)
    with database.session() as session:
        second = monitor.check(session)
    assert not second.full and second.status.intact and second.status.count == 3
    assert second.status.anchor.seq == 8

    drop_guards(database.engine)
    raw(database.engine, "UPDATE audit_events SET case_id = 42 WHERE seq = 2")
    with database.session() as session:
        assert monitor.check(session).status.intact  # before the anchor: not walked in between
        full = monitor.check(session, full=True)  # ...until the next full walk
    assert full.full and full.status.first_break is not None
    assert full.status.first_break.seq == 2


def test_the_page_monitor_sees_an_edit_after_its_anchor_at_once(database: Database) -> None:
    monitor = audit.ChainMonitor(full_every_s=3600)
    fill(database, 4)
    with database.session() as session:
        monitor.check(session)
    fill(database, 4)
    drop_guards(database.engine)
    raw(database.engine, "UPDATE audit_events SET actor_id = 'x' WHERE seq = 6")
    with database.session() as session:
        tail = monitor.check(session)
    assert not tail.full and tail.status.first_break is not None
    assert (tail.status.first_break.seq, tail.status.first_break.reason) == (6, "edited")
    raw(database.engine, "DELETE FROM audit_events WHERE seq = 4")  # the anchor itself
    with database.session() as session:
        assert not monitor.check(session).status.intact
