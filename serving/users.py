"""Who is acting: the user record the pages and the API work with, and the demo accounts.

Accounts live in the database (``serving.db.models.UserAccount``, managed by :mod:`serving.auth`
and ``dermtriage users``); a signed-in request carries a :class:`User`, the plain record routes
and services read through ``serving.deps.CurrentUser``. :data:`DEMO_USERS` is the directory
``make run`` seeds as accounts (password :data:`DEMO_PASSWORD`, listed in the README) and the demo
cases are attributed to; :func:`find_user` looks a demo user up by id.
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
    # The resource centre: where an expert works, or where a requester sends their cases.
    centre: str | None = None

    @property
    def is_expert(self) -> bool:
        return self.role in (Role.first_reader, Role.senior)


SYSTEM = User(id="system", name="DermTriage", role=Role.system, organisation="DermTriage", email="")

LYON, GRENOBLE = "crd-lyon", "crd-grenoble"
CENTRE_NAMES = {
    LYON: "Centre de ressources en dermatologie, Lyon",
    GRENOBLE: "Centre de ressources en dermatologie, Grenoble",
}
# The one documented password of every demo account (README, "Demo accounts"); demo only.
DEMO_PASSWORD = "demo-dermtriage"

DEMO_USERS: tuple[User, ...] = (
    User(
        id="dr-martin",
        name="Dr Claire Martin",
        role=Role.requester,
        organisation="Cabinet médical des Lilas, Lyon",
        email="claire.martin@example.fr",
        rpps="10101234564",
        phone="04 72 00 00 01",
        centre=LYON,
    ),
    User(
        id="dr-leroy",
        name="Dr Paul Leroy",
        role=Role.requester,
        organisation="Maison de santé de Villeurbanne",
        email="paul.leroy@example.fr",
        rpps="10109876549",
        phone="04 78 00 00 02",
        centre=LYON,
    ),
    User(
        id="dr-bernard",
        name="Dr Sophie Bernard",
        role=Role.first_reader,
        organisation="Centre de ressources en dermatologie, Lyon",
        email="sophie.bernard@example.fr",
        rpps="10100000115",
        centre=LYON,
    ),
    User(
        id="dr-nguyen",
        name="Dr Minh Nguyen",
        role=Role.first_reader,
        organisation="Centre de ressources en dermatologie, Lyon",
        email="minh.nguyen@example.fr",
        rpps="10100000123",
        centre=LYON,
    ),
    User(
        id="pr-dubois",
        name="Pr Hélène Dubois",
        role=Role.senior,
        organisation="Centre de ressources en dermatologie, Lyon",
        email="helene.dubois@example.fr",
        rpps="10100000214",
        centre=LYON,
    ),
    User(
        id="dr-garnier",
        name="Dr Marc Garnier",
        role=Role.senior,
        organisation="Centre de ressources en dermatologie, Lyon",
        email="marc.garnier@example.fr",
        rpps="10100000222",
        centre=LYON,
    ),
    User(
        id="dr-roux",
        name="Dr Anne Roux",
        role=Role.first_reader,
        organisation="Centre de ressources en dermatologie, Grenoble",
        email="anne.roux@example.fr",
        rpps="10100000313",
        centre=GRENOBLE,
    ),
    User(
        id="ds-petit",
        name="Julie Petit",
        role=Role.data_scientist,
        organisation="DermTriage",
        email="julie.petit@example.fr",
    ),
    User(
        id="audit-moreau",
        name="Luc Moreau",
        role=Role.auditor,
        organisation="Délégation à la protection des données",
        email="luc.moreau@example.fr",
    ),
    User(
        id="admin",
        name="Admin DermTriage",
        role=Role.admin,
        organisation="DermTriage",
        email="admin@example.fr",
    ),
)

_BY_ID = {user.id: user for user in DEMO_USERS}


def find_user(user_id: str | None) -> User | None:
    """The directory entry for ``user_id`` (``None`` when unknown)."""
    if not user_id:
        return None
    return _BY_ID.get(user_id)
