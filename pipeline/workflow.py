"""The life of a case: its states, the actions that move it, and who may take each action.

::

    submitted -> scored -> in_review -> (info_requested <-> answered) -> report_written
              -> validated (by a senior) -> closed

=====================  ==================================  ==================  ================
action                 from                                to                  who
=====================  ==================================  ==================  ================
score                  submitted                           scored              system
start_review           submitted, scored                   in_review           reader, senior
request_info           in_review, answered                 info_requested      reader, senior
answer                 info_requested                      answered            requester
write_report           in_review, answered, report_written report_written      reader, senior
return_for_revision    report_written                      in_review           senior
validate               report_written                      validated           senior
close                  validated                           closed              requester, senior
=====================  ==================================  ==================  ================

- ``score`` is the scoring worker's (role ``system``); it applies only to a case still
  ``submitted``.
- An expert may start a review before the score arrives: a case the model could not score must
  still be read by a human.
- ``validate`` needs a senior who is not the report's author (four-eyes rule).
- ``close`` is taken by the requester once they have read the answer, or by a senior.

Pure: :func:`transition` answers "what state comes next?" or raises :class:`TransitionError`; the
caller records who did it and when. Roles are the same names the access-control layer uses, so
that layer can extend :data:`ALLOWED` without touching the states.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

Lang = Literal["fr", "en"]


class Status(StrEnum):
    submitted = "submitted"
    scored = "scored"
    in_review = "in_review"
    info_requested = "info_requested"
    answered = "answered"
    report_written = "report_written"
    validated = "validated"
    closed = "closed"


class Role(StrEnum):
    """Who acts. ``system`` is the service itself (the scoring worker)."""

    requester = "requester"
    first_reader = "first_reader"
    senior = "senior"
    data_scientist = "data_scientist"
    auditor = "auditor"
    admin = "admin"
    system = "system"


class Action(StrEnum):
    score = "score"
    start_review = "start_review"
    request_info = "request_info"
    answer = "answer"
    write_report = "write_report"
    return_for_revision = "return_for_revision"
    validate = "validate"
    close = "close"


@dataclass(frozen=True)
class Rule:
    """One allowed move: from these states, by these roles, to that state."""

    sources: frozenset[Status]
    target: Status
    roles: frozenset[Role]


EXPERTS = frozenset({Role.first_reader, Role.senior})

ALLOWED: dict[Action, Rule] = {
    Action.score: Rule(frozenset({Status.submitted}), Status.scored, frozenset({Role.system})),
    Action.start_review: Rule(
        frozenset({Status.submitted, Status.scored}), Status.in_review, EXPERTS
    ),
    Action.request_info: Rule(
        frozenset({Status.in_review, Status.answered}), Status.info_requested, EXPERTS
    ),
    Action.answer: Rule(
        frozenset({Status.info_requested}), Status.answered, frozenset({Role.requester})
    ),
    Action.write_report: Rule(
        frozenset({Status.in_review, Status.answered, Status.report_written}),
        Status.report_written,
        EXPERTS,
    ),
    Action.return_for_revision: Rule(
        frozenset({Status.report_written}), Status.in_review, frozenset({Role.senior})
    ),
    Action.validate: Rule(
        frozenset({Status.report_written}), Status.validated, frozenset({Role.senior})
    ),
    Action.close: Rule(
        frozenset({Status.validated}),
        Status.closed,
        frozenset({Role.requester, Role.senior}),
    ),
}

# States in which the case still waits for the resource centre (the experts' worklist).
OPEN_FOR_EXPERTS: frozenset[Status] = frozenset(
    {
        Status.submitted,
        Status.scored,
        Status.in_review,
        Status.info_requested,
        Status.answered,
        Status.report_written,
    }
)
# States in which an expert has already read the case (the first reading happened).
READ: frozenset[Status] = frozenset(Status) - {Status.submitted, Status.scored}
# States in which the requester can see the answer.
ANSWER_VISIBLE: frozenset[Status] = frozenset({Status.validated, Status.closed})
# States in which messages may still be exchanged.
MESSAGING_OPEN: frozenset[Status] = frozenset(Status) - {Status.closed}


class TransitionError(Exception):
    """A move the workflow forbids; ``code`` says why (``bad_state``, ``forbidden_role``, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def transition(
    status: Status,
    action: Action,
    role: Role,
    *,
    actor_id: str | None = None,
    report_author_id: str | None = None,
) -> Status:
    """The state after ``role`` takes ``action`` on a case in ``status``.

    Raises :class:`TransitionError` with code ``forbidden_role`` when the role may never take the
    action, ``bad_state`` when the case is not in a state the action applies to, and
    ``same_author`` when a senior tries to validate their own report.
    """
    rule = ALLOWED[action]
    if role not in rule.roles:
        raise TransitionError(
            "forbidden_role", f"a {role.value} may not {action.value.replace('_', ' ')}"
        )
    if status not in rule.sources:
        raise TransitionError(
            "bad_state",
            f"cannot {action.value.replace('_', ' ')} a case that is {status.value}",
        )
    if action is Action.validate and actor_id is not None and actor_id == report_author_id:
        raise TransitionError("same_author", "a report is validated by another senior")
    return rule.target


def available_actions(status: Status, role: Role) -> list[Action]:
    """The actions ``role`` may take on a case in ``status`` (declaration order)."""
    return [
        action for action, rule in ALLOWED.items() if role in rule.roles and status in rule.sources
    ]


STATUS_LABELS: dict[Lang, dict[Status, str]] = {
    "fr": {
        Status.submitted: "Reçue",
        Status.scored: "Scorée",
        Status.in_review: "En lecture",
        Status.info_requested: "Information demandée",
        Status.answered: "Réponse reçue",
        Status.report_written: "Compte rendu rédigé",
        Status.validated: "Validée",
        Status.closed: "Clôturée",
    },
    "en": {
        Status.submitted: "Received",
        Status.scored: "Scored",
        Status.in_review: "In review",
        Status.info_requested: "Information requested",
        Status.answered: "Answered",
        Status.report_written: "Report written",
        Status.validated: "Validated",
        Status.closed: "Closed",
    },
}

ROLE_LABELS: dict[Lang, dict[Role, str]] = {
    "fr": {
        Role.requester: "Médecin demandeur",
        Role.first_reader: "Dermatologue lecteur",
        Role.senior: "Dermatologue senior",
        Role.data_scientist: "Data scientist",
        Role.auditor: "Auditeur",
        Role.admin: "Administrateur",
        Role.system: "Système",
    },
    "en": {
        Role.requester: "Requesting physician",
        Role.first_reader: "Reading dermatologist",
        Role.senior: "Senior dermatologist",
        Role.data_scientist: "Data scientist",
        Role.auditor: "Auditor",
        Role.admin: "Administrator",
        Role.system: "System",
    },
}

ACTION_LABELS: dict[Lang, dict[Action, str]] = {
    "fr": {
        Action.score: "Score automatique",
        Action.start_review: "Lecture commencée",
        Action.request_info: "Information demandée",
        Action.answer: "Réponse du demandeur",
        Action.write_report: "Compte rendu rédigé",
        Action.return_for_revision: "Renvoyé pour révision",
        Action.validate: "Validé par un senior",
        Action.close: "Clôturé",
    },
    "en": {
        Action.score: "Automatic score",
        Action.start_review: "Review started",
        Action.request_info: "Information requested",
        Action.answer: "Requester answered",
        Action.write_report: "Report written",
        Action.return_for_revision: "Returned for revision",
        Action.validate: "Validated by a senior",
        Action.close: "Closed",
    },
}
