"""Model registry changes in the audit trail: every promotion, refusal, rollback and challenger.

The registry keeps its own ordered history (:func:`training.registry.promotion_history`, one
record per alias move, with who, when, why and the gates). The service's audit trail
(:mod:`serving.audit`, hash-chained, append-only) is where an auditor checks *everything*, so each
registry record is copied into it as one event: action ``model.<registry action>``, the version
in ``model_version``, and the record's sequence, previous champion and gate outcome in
``details``. The reason is free text typed by a person and stays in the registry, which the
governance pages show beside it.

:func:`sync_registry_history` is idempotent: it appends only the records whose sequence the trail
does not hold yet, oldest first, so it can run after every ``dermtriage models`` command and
also picks up changes made elsewhere (the first-start bootstrap, the MLflow UI). Each event is
stamped with the registry record's own time.
"""

from __future__ import annotations

import logging
from datetime import datetime

import mlflow
from sqlalchemy import select
from sqlalchemy.orm import Session

from serving import audit
from serving.db.models import AuditEvent
from serving.db.session import Database
from training.registry import PromotionRecord, promotion_history

logger = logging.getLogger(__name__)

MODEL_ACTION_PREFIX = "model."
#: The role written for a person acting through the registry (a login, not a service account).
REGISTRY_ACTOR_ROLE = "model_operator"


def audit_action(record: PromotionRecord) -> str:
    """``model.promote``, ``model.promotion_refused``, ``model.rollback``, ``model.challenger``."""
    return f"{MODEL_ACTION_PREFIX}{record.action}"


def _details(record: PromotionRecord) -> dict[str, object]:
    details: dict[str, object] = {
        "registry_sequence": record.sequence,
        "previous_champion": record.previous_champion,
    }
    if record.gates is not None:
        details["gates_passed"] = bool(record.gates.get("passed"))
        details["gates"] = {
            str(g.get("name")): bool(g.get("passed")) for g in record.gates.get("gates", [])
        }
    return details


def recorded_sequences(session: Session, model_name: str) -> set[int]:
    """Registry sequences of ``model_name`` already in the trail."""
    rows = session.execute(
        select(AuditEvent.model_version, AuditEvent.details).where(
            AuditEvent.action.startswith(MODEL_ACTION_PREFIX)
        )
    )
    found = set()
    for model_version, details in rows:
        if (model_version or "").split("/", 1)[0] == model_name and details:
            sequence = details.get("registry_sequence")
            if isinstance(sequence, int):
                found.add(sequence)
    return found


def sync_registry_history(
    session: Session, client: mlflow.MlflowClient, model_name: str
) -> list[PromotionRecord]:
    """Append to the trail the registry records it lacks; returns those it appended."""
    have = recorded_sequences(session, model_name)
    added = []
    for record in promotion_history(client, model_name):
        if record.sequence in have:
            continue
        audit.record(
            session,
            audit.AuditActor(id=record.user, role=REGISTRY_ACTOR_ROLE),
            audit_action(record),
            model_version=f"{record.model_name}/{record.version}",
            details=_details(record),
            at=datetime.fromisoformat(record.at),
        )
        added.append(record)
    if added:
        logger.info("audit trail: %d registry event(s) of %s recorded", len(added), model_name)
    return added


def sync_registry_history_in(
    database_url: str, client: mlflow.MlflowClient, model_name: str
) -> list[PromotionRecord]:
    """:func:`sync_registry_history` in its own transaction on the database at ``database_url``
    (migrated first): what a command line tool calls after changing the registry."""
    database = Database(database_url)
    try:
        database.upgrade()
        with database.session() as session:
            return sync_registry_history(session, client, model_name)
    finally:
        database.dispose()
