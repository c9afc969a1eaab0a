"""The case database: typed models, sessions, and Alembic migrations run at start-up."""

from serving.db.models import Base, Case, Event, Message, Photo, Report, Score
from serving.db.session import Database, make_engine, upgrade_to_head

__all__ = [
    "Base",
    "Case",
    "Database",
    "Event",
    "Message",
    "Photo",
    "Report",
    "Score",
    "make_engine",
    "upgrade_to_head",
]
