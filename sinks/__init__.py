"""Sinks: the only code that talks SQL (PostgreSQL via SQLAlchemy 2 + asyncpg)."""
