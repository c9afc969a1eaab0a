"""Alembic environment: runs migrations on a connection the service hands over, or on the URL.

When the service upgrades at start-up it passes its own connection (``config.attributes``); from the
command line the URL comes from ``sqlalchemy.url`` if set, else from the service's settings.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from serving.db.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from serving.settings import get_settings

    return get_settings().sqlalchemy_url


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif (given := config.attributes.get("connection")) is not None:
    _run(given)
else:
    from serving.db.session import make_engine

    engine = make_engine(_url())
    with engine.begin() as connection:
        _run(connection)
    engine.dispose()
