"""Who may do what, and to which case: the one access policy every route and service call asks.

Pure: :func:`can` takes the acting person (anything with ``id``, ``role`` and ``centre``), a
:class:`Permission` and, for case-level permissions, the case (anything with ``requester_id`` and
``centre``), and answers yes or no. Keeping it here, free of HTTP and database, means the rule a
reviewer reads is the rule that runs, and it can be tested exhaustively in milliseconds.

=================  ===========================================================================
role               may
=================  ===========================================================================
requester          submit cases; read and act on the cases they sent (nobody else's); never the
                   model's output on them
first_reader       read the worklist of their centre; read and act on their centre's cases and
                   the model's output on them
senior             the same as a first reader (the workflow adds validation rights)
auditor            read every case, the model's output and the worklist (all centres), model
                   governance; change nothing
data_scientist     model and activity data (statistics, model governance); never a case, photo or
                   patient pseudonym
admin              manage user accounts; statistics, model governance; no patient data
=================  ===========================================================================

Which workflow step (review, report, validation...) a role may take is :mod:`pipeline.workflow`'s
business; this module says whether the person may touch *this* case at all.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from pipeline.workflow import Role


class Permission(StrEnum):
    submit_case = "submit_case"
    read_case = "read_case"  # the case, its photos, messages, report, events
    change_case = "change_case"  # any workflow step or message on the case
    read_worklist = "read_worklist"
    # The model's output on the cases one may read: scores, class probabilities, uncertainty,
    # model version, saliency maps, and the priority tier, score and reasons computed from them.
    # Triage machinery for the experts: a requester sees the experts' answer, never the model's.
    read_triage = "read_triage"
    read_stats = "read_stats"  # aggregated activity and model figures, no identities
    read_models = "read_models"
    manage_users = "manage_users"


# Permissions that concern one case: :func:`can` needs the case for these.
CASE_PERMISSIONS = frozenset({Permission.read_case, Permission.change_case})

EXPERTS = frozenset({Role.first_reader, Role.senior})

# Permissions that do not depend on a case, by role.
GLOBAL: dict[Role, frozenset[Permission]] = {
    Role.requester: frozenset({Permission.submit_case}),
    Role.first_reader: frozenset(
        {Permission.read_worklist, Permission.read_triage, Permission.read_stats}
    ),
    Role.senior: frozenset(
        {Permission.read_worklist, Permission.read_triage, Permission.read_stats}
    ),
    Role.auditor: frozenset(
        {
            Permission.read_worklist,
            Permission.read_triage,
            Permission.read_stats,
            Permission.read_models,
        }
    ),
    Role.data_scientist: frozenset({Permission.read_stats, Permission.read_models}),
    Role.admin: frozenset({Permission.manage_users, Permission.read_stats, Permission.read_models}),
    Role.system: frozenset(),
}


class Actor(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def role(self) -> Role: ...
    @property
    def centre(self) -> str | None: ...


class CaseRef(Protocol):
    @property
    def requester_id(self) -> str: ...
    @property
    def centre(self) -> str | None: ...


class MissingCaseError(ValueError):
    """A case-level permission was asked about without a case (a programming error)."""


def can(user: Actor, permission: Permission, case: CaseRef | None = None) -> bool:
    """Whether ``user`` holds ``permission`` (on ``case`` for case-level permissions).

    Case rules: a requester only on cases whose ``requester_id`` is theirs; first readers and
    seniors only on cases sent to their own centre (a user or case without a centre matches
    nothing); auditors read any case and change none; everybody else never touches a case.
    """
    if permission not in CASE_PERMISSIONS:
        return permission in GLOBAL.get(user.role, frozenset())
    if case is None:
        raise MissingCaseError(f"{permission.value} needs the case")
    if user.role is Role.requester:
        return case.requester_id == user.id
    if user.role in EXPERTS:
        return user.centre is not None and case.centre == user.centre
    if user.role is Role.auditor:
        return permission is Permission.read_case
    return False


def sees_every_centre(user: Actor) -> bool:
    """Whether the worklist shows ``user`` the cases of every centre (auditors) rather than their
    own centre's only; used to filter queries the same way :func:`can` judges single cases."""
    return user.role is Role.auditor


def statistics_cover_every_centre(user: Actor) -> bool:
    """Whether the activity statistics count the cases of every centre for ``user``.

    They follow the worklist's scope: a first reader or senior counts their own centre's requests
    only (another centre's volume, delays and answers are not theirs to see), an auditor every
    centre's. The roles with statistics but no worklist (data scientist, admin: aggregates
    without identities, for the service as a whole) keep the all-centres view.
    """
    return sees_every_centre(user) or not can(user, Permission.read_worklist)
