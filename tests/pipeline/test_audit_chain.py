"""The audit hash chain: a canonical form that never varies, and verification that names the first
event an edit, a deletion or an insertion broke."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.audit_chain import (
    GENESIS_HASH,
    AuditDetailsError,
    ChainEvent,
    canonical_bytes,
    check_details,
    event_hash,
    seal,
    verify,
)

T0 = datetime(2026, 11, 25, 9, 30, 0, 123456, tzinfo=UTC)


def chain(n: int) -> list[ChainEvent]:
    events: list[ChainEvent] = []
    prev = GENESIS_HASH
    for seq in range(1, n + 1):
        event = seal(
            ChainEvent(
                seq=seq,
                at=T0 + timedelta(minutes=seq),
                actor_id="dr-bernard",
                actor_role="first_reader",
                action="case.read",
                case_id=seq % 3 or None,
                model_version="dermtriage-classifier/2" if seq % 2 else None,
                details={"via": "api", "n": seq, "é": [1.5, True, None]},
                prev_hash=prev,
            )
        )
        events.append(event)
        prev = event.hash
    return events


def test_canonical_form_is_sorted_compact_utf8_json_with_utc_microseconds() -> None:
    event = ChainEvent(
        seq=1,
        at=datetime(2026, 11, 25, 11, 0, tzinfo=timezone(timedelta(hours=1))),
        actor_id="pr-dubois",
        actor_role="senior",
        action="case.validate",
        case_id=7,
        model_version=None,
        details={"to": "validated", "from": "report_written", "note": "é"},
        prev_hash=GENESIS_HASH,
    )
    assert (
        canonical_bytes(event)
        == (
            '{"action":"case.validate","actor_id":"pr-dubois","actor_role":"senior",'
            '"at":"2026-11-25T10:00:00.000000Z","case_id":7,'
            '"details":{"from":"report_written","note":"é","to":"validated"},'
            '"model_version":null,"prev_hash":"' + GENESIS_HASH + '","seq":1,"v":1}'
        ).encode()
    )
    assert event_hash(event) == hashlib.sha256(canonical_bytes(event)).hexdigest()


def test_the_same_event_in_another_time_zone_or_key_order_hashes_the_same() -> None:
    a = chain(1)[0]
    b = dataclasses.replace(
        a,
        at=a.at.astimezone(timezone(timedelta(hours=-5))),
        details=dict(reversed(list(a.details.items()))),  # type: ignore[union-attr]
    )
    assert event_hash(a) == event_hash(b)


def test_an_intact_chain_verifies_and_reports_its_head() -> None:
    events = chain(50)
    result = verify(events)
    assert result.intact
    assert (result.checked, result.head_seq, result.head_hash) == (50, 50, events[-1].hash)


def test_an_empty_chain_is_intact_at_the_genesis() -> None:
    result = verify([])
    assert result.intact and result.checked == 0 and result.head_hash == GENESIS_HASH


def test_an_edited_event_is_named() -> None:
    events = chain(10)
    events[4] = dataclasses.replace(events[4], actor_id="someone-else")
    result = verify(events)
    assert result.first_break is not None
    assert (result.first_break.seq, result.first_break.reason) == (5, "edited")
    assert result.checked == 4


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link() -> None:
    events = chain(10)
    events[4] = seal(dataclasses.replace(events[4], case_id=999))
    result = verify(events)
    assert result.first_break is not None
    assert (result.first_break.seq, result.first_break.reason) == (6, "unlinked")


def test_a_deleted_event_is_named_by_its_missing_number() -> None:
    events = chain(10)
    del events[6]
    result = verify(events)
    assert result.first_break is not None
    assert (result.first_break.seq, result.first_break.reason) == (7, "missing")


def test_an_event_inserted_out_of_chain_is_named() -> None:
    events = chain(10)
    forged = seal(dataclasses.replace(events[3], prev_hash="f" * 64, action="case.close"))
    events[3] = forged
    result = verify(events)
    assert result.first_break is not None
    assert (result.first_break.seq, result.first_break.reason) == (4, "unlinked")


def test_a_repeated_sequence_number_is_out_of_order() -> None:
    events = chain(5)
    events.insert(3, events[2])
    result = verify(events)
    assert result.first_break is not None
    assert (result.first_break.seq, result.first_break.reason) == (3, "out_of_order")


def test_the_tail_verifies_from_a_kept_anchor() -> None:
    events = chain(20)
    result = verify(events[10:], start_seq=11, start_prev_hash=events[9].hash)
    assert result.intact and result.checked == 10
    wrong_anchor = verify(events[10:], start_seq=11, start_prev_hash="a" * 64)
    assert wrong_anchor.first_break is not None and wrong_anchor.first_break.seq == 11


@pytest.mark.parametrize(
    "details",
    [
        {"patient_pseudonym": "PAT-0001"},
        {"nested": {"questionnaire": {}}},
        {"Body": "a message"},
        {"x": float("nan")},
        {"x": b"bytes"},
        {"x": "a" * 5000},
    ],
)
def test_details_that_are_not_small_patient_free_json_are_refused(details: dict) -> None:
    with pytest.raises(AuditDetailsError):
        check_details(details)


def test_naive_times_are_refused() -> None:
    event = dataclasses.replace(chain(1)[0], at=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="naive"):
        event_hash(event)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["a", "b", "photo_id", "état"]), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(deadline=None)  # timing on a shared 2-core machine is no part of the property
@given(details=st.dictionaries(st.sampled_from(["via", "count", "ids"]), json_values, max_size=3))
def test_any_single_field_change_is_detected(details: dict) -> None:
    event = seal(
        ChainEvent(1, T0, "dr-nguyen", "first_reader", "case.read", 3, None, details, GENESIS_HASH)
    )
    assert verify([event]).intact
    for change in (
        {"actor_id": "dr-nguyen2"},
        {"action": "case.close"},
        {"case_id": 4},
        {"model_version": "x"},
        {"at": T0 + timedelta(microseconds=1)},
        {"details": {**details, "extra": 1}},
    ):
        tampered = dataclasses.replace(event, **change)
        assert not verify([tampered]).intact, change
