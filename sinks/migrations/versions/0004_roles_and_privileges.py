"""Least-privilege roles: a runtime role that cannot rewrite the audit trail, and a read-only one.

Revision ID: 0004_roles_and_privileges
Revises: 0003
Create Date: 2026-11-30

The role that runs Alembic owns the tables, and an owner can ``ALTER TABLE audit_log DISABLE
TRIGGER`` and then rewrite the append-only trail (issue #16, item 2). Workers and the API must
therefore connect as another role. This migration creates two group roles named after the
database (``<database>_runtime`` and ``<database>_readonly``, so several radstream databases on
one cluster never share them) and grants them:

* ``<database>_runtime``: SELECT and INSERT on every table, UPDATE where the stages and the API
  update rows (``inference_results``, ``image_events``), never on ``audit_log``; no DELETE, no
  TRUNCATE, no ownership — so it can neither disable the triggers nor alter a table;
* ``<database>_readonly``: SELECT on every table (``audit verify``, ``audit show``, reports).

Default privileges give both roles the same on tables later migrations create (SELECT, INSERT
for the runtime role; an append-only table must REVOKE what it must not allow, as this one does
for ``audit_log``). Login roles are members of these groups (``ops/postgres.sh roles``).

Creating a role needs CREATEROLE: an owner without it (a development cluster where one role does
everything) gets a NOTICE and the migration grants to the roles that already exist, so
``make demo`` keeps working with a single role.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004_roles_and_privileges"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# One PL/pgSQL block: role names derive from current_database(), so they are built with
# format('%I') inside the server and never interpolated from Python.
UPGRADE = """
DO $roles$
DECLARE
    runtime text := current_database() || '_runtime';
    readonly text := current_database() || '_readonly';
    may_create boolean;
    role_name text;
BEGIN
    SELECT rolcreaterole OR rolsuper INTO may_create FROM pg_roles WHERE rolname = current_user;
    FOREACH role_name IN ARRAY ARRAY[runtime, readonly] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
            IF may_create THEN
                EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
            ELSE
                RAISE NOTICE 'radstream: role % not created (no CREATEROLE); run ops/postgres.sh roles',
                    role_name;
            END IF;
        END IF;
    END LOOP;

    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = runtime) THEN
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), runtime);
        EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', runtime);
        EXECUTE format('GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA public TO %I', runtime);
        EXECUTE format('GRANT UPDATE ON inference_results, image_events TO %I', runtime);
        EXECUTE format('GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO %I', runtime);
        EXECUTE format(
            'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT ON TABLES TO %I',
            runtime
        );
        EXECUTE format(
            'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE ON SEQUENCES TO %I', runtime
        );
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = readonly) THEN
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), readonly);
        EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', readonly);
        EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA public TO %I', readonly);
        EXECUTE format(
            'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO %I', readonly
        );
    END IF;
END
$roles$
"""

DOWNGRADE = """
DO $roles$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY[current_database() || '_runtime',
                                     current_database() || '_readonly'] LOOP
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
            EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA public FROM %I', role_name);
            EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM %I', role_name);
            EXECUTE format(
                'ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES FROM %I', role_name
            );
            EXECUTE format(
                'ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON SEQUENCES FROM %I',
                role_name
            );
            EXECUTE format('REVOKE USAGE ON SCHEMA public FROM %I', role_name);
            EXECUTE format('REVOKE CONNECT ON DATABASE %I FROM %I', current_database(), role_name);
        END IF;
    END LOOP;
END
$roles$
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
