"""The audit trail's hash chain, as pure functions: canonical form, hashing, verification.

Every audit event is hashed together with the hash of the event before it, so changing, removing
or inserting one event breaks every link after it. The database, the recorder and the command line
live in ``serving``; this module only knows events as values, so the chain's rules can be read,
tested and re-implemented (by an auditor with a 20-line script) without a database.

Canonical form (version 1): a JSON object with exactly the keys of :class:`ChainEvent` (``seq``,
``at``, ``actor_id``, ``actor_role``, ``action``, ``case_id``, ``model_version``, ``details``,
``prev_hash``) plus ``"v": 1``; keys sorted at every level, no whitespace (``","`` and ``":"``
separators), non-ASCII characters kept as UTF-8, ``at`` written as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``
in UTC. The event's hash is the lowercase hex SHA-256 of those UTF-8 bytes. The first event's
``prev_hash`` is :data:`GENESIS_HASH` (64 zeros).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

CHAIN_FORMAT_VERSION = 1
GENESIS_HASH = "0" * 64
#: Details are a short note (ids, counts, codes), never a document: bigger means misuse.
MAX_DETAILS_BYTES = 4096
#: Keys that would carry patient data into the trail; refused whatever their value.
FORBIDDEN_DETAIL_KEYS = frozenset(
    {
        "patient_pseudonym",
        "pseudonym",
        "questionnaire",
        "clinical_question",
        "body",
        "text",
        "diagnosis",
        "email",
        "phone",
        "rpps",
    }
)

JSONValue = None | bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"]


class AuditDetailsError(ValueError):
    """The details of an event are not a small, patient-free JSON object."""


@dataclass(frozen=True)
class ChainEvent:
    """One audit event as the chain sees it (what is hashed, plus the stored hash).

    ``at`` must be time-zone aware; it is hashed in UTC to the microsecond, which both SQLite and
    PostgreSQL keep, so an event read back from either database hashes the same.
    """

    seq: int
    at: datetime
    actor_id: str
    actor_role: str
    action: str
    case_id: int | None
    model_version: str | None
    details: dict[str, Any] | None
    prev_hash: str
    hash: str = field(default="")


def format_time(moment: datetime) -> str:
    """``moment`` in UTC as ``2026-11-25T10:43:41.123456Z`` (refuses naive datetimes)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: audit times must be time-zone aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _check_json(value: Any, path: str) -> None:
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise AuditDetailsError(f"{path}: NaN and infinities have no canonical JSON form")
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check_json(item, f"{path}[{index}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise AuditDetailsError(f"{path}: keys must be strings")
            if key.lower() in FORBIDDEN_DETAIL_KEYS:
                raise AuditDetailsError(f"{path}.{key}: patient data has no place in the trail")
            _check_json(item, f"{path}.{key}")
        return
    raise AuditDetailsError(f"{path}: {type(value).__name__} is not JSON")


def check_details(details: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``details`` as a plain dict once it is known to be small, canonical-safe and patient-free.

    Raises :class:`AuditDetailsError` for non-JSON values, NaN, keys that name patient data
    (:data:`FORBIDDEN_DETAIL_KEYS`) or more than :data:`MAX_DETAILS_BYTES` once serialised.
    """
    if details is None:
        return None
    plain = dict(details)
    _check_json(plain, "details")
    size = len(canonical_json(plain))
    if size > MAX_DETAILS_BYTES:
        raise AuditDetailsError(f"details: {size} bytes, at most {MAX_DETAILS_BYTES}")
    return plain


def canonical_json(value: Any) -> bytes:
    """The one byte serialisation of a JSON value: sorted keys, no spaces, UTF-8."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def canonical_bytes(event: ChainEvent) -> bytes:
    """What is hashed for ``event``: every field but the hash itself, in canonical JSON."""
    return canonical_json(
        {
            "v": CHAIN_FORMAT_VERSION,
            "seq": event.seq,
            "at": format_time(event.at),
            "actor_id": event.actor_id,
            "actor_role": event.actor_role,
            "action": event.action,
            "case_id": event.case_id,
            "model_version": event.model_version,
            "details": event.details,
            "prev_hash": event.prev_hash,
        }
    )


def event_hash(event: ChainEvent) -> str:
    """The SHA-256 (hex) of ``event``'s canonical form; it covers ``prev_hash``, hence the chain."""
    return hashlib.sha256(canonical_bytes(event)).hexdigest()


def seal(event: ChainEvent) -> ChainEvent:
    """``event`` with its hash filled in."""
    return ChainEvent(**{**event.__dict__, "hash": event_hash(event)})


@dataclass(frozen=True)
class ChainBreak:
    """The first event at which the chain stops holding, and why.

    ``reason`` is one of ``edited`` (the stored hash does not match the event's content),
    ``missing`` (a sequence number is skipped: an event was deleted), ``out_of_order`` (a sequence
    number goes back or repeats) or ``unlinked`` (the event does not point at the hash of the one
    before it: it was inserted or its predecessor replaced).
    """

    seq: int
    reason: str
    message: str


@dataclass(frozen=True)
class Verification:
    """The outcome of :func:`verify`: how many events were checked and the head reached."""

    checked: int
    head_seq: int
    head_hash: str
    first_break: ChainBreak | None

    @property
    def intact(self) -> bool:
        return self.first_break is None


def verify(
    events: Iterable[ChainEvent], *, start_seq: int = 1, start_prev_hash: str = GENESIS_HASH
) -> Verification:
    """Walk ``events`` in sequence order and report the first one that breaks the chain.

    By default the walk starts at the genesis (sequence 1, ``prev_hash`` of zeros); a later
    ``start_seq`` with the hash of event ``start_seq - 1`` verifies the tail only (an anchor the
    auditor kept). ``events`` may be a generator: it is consumed once, in constant memory.
    """
    expected_seq, expected_prev = start_seq, start_prev_hash
    checked, head_seq, head_hash = 0, start_seq - 1, start_prev_hash
    for event in events:
        broken: ChainBreak | None = None
        if event.seq > expected_seq:
            broken = ChainBreak(
                expected_seq,
                "missing",
                f"event {expected_seq} is missing (the next one found is {event.seq})",
            )
        elif event.seq < expected_seq:
            broken = ChainBreak(
                event.seq,
                "out_of_order",
                f"event {event.seq} comes after event {expected_seq - 1}",
            )
        elif event.hash != event_hash(event):
            broken = ChainBreak(
                event.seq, "edited", f"event {event.seq} does not match its hash (edited)"
            )
        elif event.prev_hash != expected_prev:
            broken = ChainBreak(
                event.seq,
                "unlinked",
                f"event {event.seq} does not link to event {event.seq - 1} "
                f"(event {event.seq - 1} was rewritten, or event {event.seq} inserted)",
            )
        if broken is not None:
            return Verification(checked, head_seq, head_hash, broken)
        checked += 1
        head_seq, head_hash = event.seq, event.hash
        expected_seq, expected_prev = event.seq + 1, event.hash
    return Verification(checked, head_seq, head_hash, None)
