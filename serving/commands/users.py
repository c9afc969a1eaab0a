"""``dermtriage users create|update|disable|password|list``: manage sign-in accounts from the
command line.

The password is read from a hidden prompt (typed twice) or, for scripts, from standard input with
``--password-stdin``; it never appears on the command line, where ``ps`` and shell history would
keep it. Disabling an account also revokes its sessions and API tokens at once. ``update`` corrects
an account's identity (name, practice, RPPS number, e-mail, phone): a GP's requests carry it, never
what a request body says. A requester needs an RPPS number and a practice.
Exit codes: 0 done, 2 refused (taken login, weak password, unknown account...).
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from datetime import UTC, datetime

from pipeline.workflow import Role
from serving.settings import get_settings

logger = logging.getLogger(__name__)

EXIT_REFUSED = 2
PERSON_ROLES = [r.value for r in Role if r is not Role.system]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("users", help="create, disable and list user accounts")
    actions = parser.add_subparsers(dest="users_command", required=True, metavar="ACTION")

    create = actions.add_parser("create", help="a new account (password prompted)")
    create.add_argument("login", help="lower-case letters, digits, '-', '_', '.'")
    create.add_argument("--name", required=True, help="as shown to others, e.g. 'Dr Anne Roux'")
    create.add_argument("--role", required=True, choices=PERSON_ROLES)
    create.add_argument("--email", required=True)
    create.add_argument(
        "--organisation", default="", help="practice or institution (requesters: required)"
    )
    create.add_argument(
        "--centre", default=None, help="resource centre id (experts, requesters), e.g. crd-lyon"
    )
    create.add_argument(
        "--rpps", default=None, help="11-digit RPPS number (clinicians; requesters: required)"
    )
    create.add_argument("--phone", default=None)
    create.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    create.set_defaults(func=run_create)

    update = actions.add_parser(
        "update", help="correct an account's identity (name, practice, RPPS, e-mail, phone)"
    )
    update.add_argument("login")
    update.add_argument("--name")
    update.add_argument("--organisation", help="practice or institution")
    update.add_argument("--rpps", help="11-digit RPPS number ('' to remove)")
    update.add_argument("--email")
    update.add_argument("--phone", help="('' to remove)")
    update.set_defaults(func=run_update)

    disable = actions.add_parser("disable", help="stop an account signing in; revoke its tokens")
    disable.add_argument("login")
    disable.set_defaults(func=run_disable)

    password = actions.add_parser(
        "password", help="set a new password (prompted); signs the account out everywhere"
    )
    password.add_argument("login")
    password.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    password.set_defaults(func=run_password)

    listing = actions.add_parser("list", help="every account, its role, centre and state")
    listing.set_defaults(func=run_list)


def _database():  # -> serving.db.session.Database
    from serving.db.session import Database

    database = Database(get_settings().sqlalchemy_url)
    database.upgrade()
    return database


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Password again: ") != first:
        raise ValueError("the two passwords differ")
    return first


def _operator():  # -> serving.audit.AuditActor
    """Who runs the command, for the audit trail: the operating-system account."""
    from serving.audit import AuditActor

    return AuditActor(id=f"cli:{getpass.getuser()}"[:64], role="operator")


def run_create(args: argparse.Namespace) -> int:
    from serving import audit, auth
    from serving.users import User

    try:
        password = _read_password(args.password_stdin)
    except ValueError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    user = User(
        id=args.login,
        name=args.name,
        role=Role(args.role),
        organisation=args.organisation,
        email=args.email,
        rpps=args.rpps,
        phone=args.phone,
        centre=args.centre,
    )
    database = _database()
    try:
        with database.session() as session:
            now = datetime.now(UTC)
            auth.create_account(session, user, password, now=now)
            audit.record(
                session, _operator(), auth.ACCOUNT_CREATED,
                details={"login": user.id, "role": user.role.value}, at=now,
            )  # fmt: skip
    except auth.AccountError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    finally:
        database.dispose()
    print(f"created {args.login} ({args.role})")
    return 0


def run_update(args: argparse.Namespace) -> int:
    from serving import audit, auth

    changes = {
        field: getattr(args, field)
        for field in auth.IDENTITY_FIELDS
        if getattr(args, field) is not None
    }
    if not changes:
        print("refused: nothing to change (--name, --organisation, --rpps, --email, --phone)",
              file=sys.stderr)  # fmt: skip
        return EXIT_REFUSED
    database = _database()
    try:
        with database.session() as session:
            now = datetime.now(UTC)
            changed = auth.update_identity(session, args.login, changes)
            if changed:
                audit.record(
                    session, _operator(), auth.ACCOUNT_UPDATED,
                    details={"login": args.login, "fields": changed}, at=now,
                )  # fmt: skip
    except auth.AccountError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    finally:
        database.dispose()
    print(f"updated {args.login}: {', '.join(changed) or 'nothing changed'}")
    return 0


def run_disable(args: argparse.Namespace) -> int:
    from serving import audit, auth

    database = _database()
    try:
        with database.session() as session:
            now = datetime.now(UTC)
            auth.disable_account(session, args.login, now=now)
            audit.record(
                session, _operator(), auth.ACCOUNT_DISABLED, details={"login": args.login}, at=now
            )
    except auth.AccountError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    finally:
        database.dispose()
    print(f"disabled {args.login}; its sessions and tokens are revoked")
    return 0


def run_password(args: argparse.Namespace) -> int:
    from serving import audit, auth

    try:
        password = _read_password(args.password_stdin)
    except ValueError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    database = _database()
    try:
        with database.session() as session:
            now = datetime.now(UTC)
            auth.set_password(session, args.login, password, now=now)
            audit.record(
                session, _operator(), auth.PASSWORD_RESET, details={"login": args.login}, at=now
            )
    except auth.AccountError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    finally:
        database.dispose()
    print(f"new password set for {args.login}; its sessions and tokens are revoked")
    return 0


def run_list(args: argparse.Namespace) -> int:
    from serving import auth

    database = _database()
    try:
        with database.session() as session:
            rows = [
                (a.id, a.role, a.centre or "-", "active" if a.active else "disabled", a.name)
                for a in auth.list_accounts(session)
            ]
    finally:
        database.dispose()
    header = ("LOGIN", "ROLE", "CENTRE", "STATE", "NAME")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row[:4], widths, strict=True)), row[4])
    return 0
