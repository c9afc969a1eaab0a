"""Alembic migrations of the case database (run by the service at start-up)."""
