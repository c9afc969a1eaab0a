"""The access policy, role by role: who may read or change which case, and what else each may do."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from pipeline.access import CASE_PERMISSIONS, MissingCaseError, Permission, can, sees_every_centre
from pipeline.workflow import Role


@dataclass(frozen=True)
class Person:
    id: str
    role: Role
    centre: str | None = None


@dataclass(frozen=True)
class CaseStub:
    requester_id: str
    centre: str | None


GP = Person("dr-martin", Role.requester, "crd-lyon")
OTHER_GP = Person("dr-leroy", Role.requester, "crd-lyon")
READER = Person("dr-bernard", Role.first_reader, "crd-lyon")
SENIOR = Person("pr-dubois", Role.senior, "crd-lyon")
GRENOBLE_READER = Person("dr-roux", Role.first_reader, "crd-grenoble")
AUDITOR = Person("audit-moreau", Role.auditor)
DATA_SCIENTIST = Person("ds-petit", Role.data_scientist)
ADMIN = Person("admin", Role.admin)
NO_CENTRE_READER = Person("dr-lost", Role.first_reader, None)

LYON_CASE = CaseStub("dr-martin", "crd-lyon")

# (person, may read LYON_CASE, may change LYON_CASE)
CASE_RULES = [
    (GP, True, True),
    (OTHER_GP, False, False),
    (READER, True, True),
    (SENIOR, True, True),
    (GRENOBLE_READER, False, False),
    (AUDITOR, True, False),
    (DATA_SCIENTIST, False, False),
    (ADMIN, False, False),
    (NO_CENTRE_READER, False, False),
]


@pytest.mark.parametrize(
    ("person", "read", "change"), CASE_RULES, ids=lambda p: getattr(p, "id", p)
)
def test_who_may_read_and_change_a_case(person: Person, read: bool, change: bool) -> None:
    assert can(person, Permission.read_case, LYON_CASE) is read
    assert can(person, Permission.change_case, LYON_CASE) is change


def test_a_case_without_a_centre_is_no_experts() -> None:
    orphan = CaseStub("dr-martin", None)
    assert not can(READER, Permission.read_case, orphan)
    assert not can(NO_CENTRE_READER, Permission.read_case, orphan)  # None never matches None
    assert can(GP, Permission.read_case, orphan)


GLOBAL_RULES = {
    Role.requester: {Permission.submit_case},
    Role.first_reader: {Permission.read_worklist, Permission.read_triage, Permission.read_stats},
    Role.senior: {Permission.read_worklist, Permission.read_triage, Permission.read_stats},
    Role.auditor: {
        Permission.read_worklist,
        Permission.read_triage,
        Permission.read_stats,
        Permission.read_models,
    },
    Role.data_scientist: {Permission.read_stats, Permission.read_models},
    Role.admin: {Permission.manage_users, Permission.read_stats, Permission.read_models},
    Role.system: set(),
}


@pytest.mark.parametrize("role", list(Role))
def test_what_each_role_may_do_besides_cases(role: Role) -> None:
    person = Person("someone", role, "crd-lyon")
    allowed = {p for p in Permission if p not in CASE_PERMISSIONS and can(person, p)}
    assert allowed == GLOBAL_RULES[role]


def test_only_admins_manage_users_and_data_scientists_never_see_a_case() -> None:
    assert [r for r in Role if can(Person("x", r), Permission.manage_users)] == [Role.admin]
    for centre in ("crd-lyon", "crd-grenoble", None):
        assert not can(DATA_SCIENTIST, Permission.read_case, CaseStub("ds-petit", centre))


def test_a_requester_never_reads_the_models_output() -> None:
    """Scores, probabilities, model version, saliency and the priority made from them are the
    experts' (and auditors') triage tools; the GP gets the experts' answer, never the model's."""
    readers = [r for r in Role if can(Person("x", r, "crd-lyon"), Permission.read_triage)]
    assert readers == [Role.first_reader, Role.senior, Role.auditor]
    assert not can(GP, Permission.read_triage)


def test_a_case_permission_without_a_case_is_a_programming_error() -> None:
    with pytest.raises(MissingCaseError):
        can(READER, Permission.read_case)


def test_only_auditors_see_every_centres_worklist() -> None:
    assert [r for r in Role if sees_every_centre(Person("x", r))] == [Role.auditor]


def test_statistics_cover_one_centre_for_experts_and_every_centre_for_the_others() -> None:
    """Like the worklist: experts their centre; auditors, data scientists, admins every centre."""
    from pipeline.access import statistics_cover_every_centre

    with_stats = [r for r in Role if can(Person("x", r), Permission.read_stats)]
    every = [r for r in with_stats if statistics_cover_every_centre(Person("x", r, "crd-lyon"))]
    assert set(every) == {Role.auditor, Role.data_scientist, Role.admin}
