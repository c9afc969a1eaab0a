"""Who is acting: the user record the pages and the API work with, and the demo directory.

Until real accounts exist (sign-in with passwords, sessions and per-centre rules come with access
control), the service knows a fixed directory of demo users and the browser picks one on the
sign-in page. Everything else reads the acting user only through ``serving.deps.CurrentUser``,
so replacing this directory by a user table changes one dependency, not the routes.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.workflow import Role


@dataclass(frozen=True)
class User:
    """An authenticated person (or the service itself, for the scoring worker)."""

    id: str
    name: str
    role: Role
    organisation: str
    email: str
    rpps: str | None = None
    phone: str | None = None

    @property
    def is_expert(self) -> bool:
        return self.role in (Role.first_reader, Role.senior)


SYSTEM = User(id="system", name="DermTriage", role=Role.system, organisation="DermTriage", email="")

DEMO_USERS: tuple[User, ...] = (
    User(
        id="dr-martin",
        name="Dr Claire Martin",
        role=Role.requester,
        organisation="Cabinet médical des Lilas, Lyon",
        email="claire.martin@example.fr",
        rpps="10101234567",
        phone="04 72 00 00 01",
    ),
    User(
        id="dr-leroy",
        name="Dr Paul Leroy",
        role=Role.requester,
        organisation="Maison de santé de Villeurbanne",
        email="paul.leroy@example.fr",
        rpps="10109876543",
        phone="04 78 00 00 02",
    ),
    User(
        id="dr-bernard",
        name="Dr Sophie Bernard",
        role=Role.first_reader,
        organisation="Centre de ressources en dermatologie, Lyon",
        email="sophie.bernard@example.fr",
        rpps="10100000011",
    ),
    User(
        id="dr-nguyen",
        name="Dr Minh Nguyen",
        role=Role.first_reader,
        organisation="Centre de ressources en dermatologie, Lyon",
        email="minh.nguyen@example.fr",
        rpps="10100000012",
    ),
    User(
        id="pr-dubois",
        name="Pr Hélène Dubois",
        role=Role.senior,
        organisation="Centre de ressources en dermatologie, Lyon",
        email="helene.dubois@example.fr",
        rpps="10100000021",
    ),
    User(
        id="dr-garnier",
        name="Dr Marc Garnier",
        role=Role.senior,
        organisation="Centre de ressources en dermatologie, Lyon",
        email="marc.garnier@example.fr",
        rpps="10100000022",
    ),
)

_BY_ID = {user.id: user for user in DEMO_USERS}


def find_user(user_id: str | None) -> User | None:
    """The directory entry for ``user_id`` (``None`` when unknown)."""
    if not user_id:
        return None
    return _BY_ID.get(user_id)
