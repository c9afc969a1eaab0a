"""``dermtriage audit verify|list``: check the audit trail's hash chain, and read it.

``verify`` walks the whole chain in the configured database (``DERMTRIAGE_DATABASE_URL``) and
exits 0 with the number of events and the head (``SEQ:HASH``) when it is intact; 1 naming the first
broken event when a row was edited, deleted, inserted out of chain, or the newest ones removed;
2 when the trail cannot be read at all. Keep the printed head somewhere the database's
administrators cannot write (a ticket, a signed e-mail, a WORM store) and pass it back with
``--anchor``: that also catches a truncation that rewound the head (see docs/audit.md).
It only reads; it never records anything.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime

from sqlalchemy.exc import SQLAlchemyError

from serving.settings import get_settings

logger = logging.getLogger(__name__)

EXIT_BROKEN = 1
EXIT_ERROR = 2


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("audit", help="verify and read the audit trail")
    actions = parser.add_subparsers(dest="audit_command", required=True, metavar="ACTION")

    verify = actions.add_parser("verify", help="check the hash chain; exit 1 if it is broken")
    verify.add_argument(
        "--anchor",
        action="append",
        default=[],
        metavar="SEQ:HASH",
        help="a head printed by an earlier verify; fails if that event is gone or changed "
        "(repeatable)",
    )
    verify.add_argument("--json", action="store_true", help="machine-readable output")
    verify.set_defaults(func=run_verify)

    listing = actions.add_parser("list", help="events, newest first, with filters")
    listing.add_argument("--actor", help="actor id")
    listing.add_argument("--action", help="action, or a prefix ending in '*' (case.*)")
    listing.add_argument("--case", type=int, help="case id")
    listing.add_argument("--since", type=_when, help="from this time (ISO 8601, UTC if no zone)")
    listing.add_argument("--until", type=_when, help="before this time (ISO 8601)")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(func=run_list)


def _when(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def run_verify(args: argparse.Namespace) -> int:
    from serving import audit
    from serving.db.session import Database

    try:
        anchors = [audit.Anchor.parse(a) for a in args.anchor]
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    database = Database(get_settings().sqlalchemy_url)
    try:
        with database.session() as session:
            status = audit.verify(session, anchors)
    except SQLAlchemyError as exc:
        print(f"error: cannot read the audit trail: {type(exc).__name__}", file=sys.stderr)
        logger.debug("audit verify failed", exc_info=True)
        return EXIT_ERROR
    finally:
        database.dispose()
    if args.json:
        print(json.dumps(audit.status_out(status)))
    elif status.first_break is None:
        print(f"audit trail intact: {status.count} events, head {status.anchor}")
    else:
        print(
            f"audit trail BROKEN at event {status.first_break.seq} "
            f"({status.first_break.reason}): {status.first_break.message}\n"
            f"{status.count} events verified before it"
        )
    return 0 if status.intact else EXIT_BROKEN


def run_list(args: argparse.Namespace) -> int:
    from serving import audit
    from serving.db.session import Database

    filters = audit.AuditFilters(
        actor_id=args.actor,
        action=args.action,
        case_id=args.case,
        since=args.since,
        until=args.until,
    )
    database = Database(get_settings().sqlalchemy_url)
    try:
        with database.session() as session:
            page = audit.list_events(session, filters, page_size=max(1, args.limit))
    except SQLAlchemyError as exc:
        print(f"error: cannot read the audit trail: {type(exc).__name__}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        database.dispose()
    for event in page.events:
        if args.json:
            print(json.dumps(audit.event_out(event), ensure_ascii=False))
        else:
            case = f"case {event.case_id}" if event.case_id is not None else "-"
            model = f" model {event.model_version}" if event.model_version else ""
            print(
                f"{event.seq:>7} {event.at.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z "
                f"{event.actor_id} ({event.actor_role}) {event.action} {case}{model}"
            )
    if not args.json:
        print(f"{len(page.events)} of {page.total} event(s)", file=sys.stderr)
    return 0
