"""Name every constraint (schema.NAMING_CONVENTION), so later revisions can drop or alter them.

0.1.0 left primary keys, foreign keys and single-column unique constraints unnamed: SQLite
keeps no name for them and PostgreSQL made up its own (`categories_pkey`,
`categories_name_key`, `deliveries_digest_id_fkey`). SQLite: every table is rebuilt in batch
mode (a new table, its rows copied with their ids, the old one dropped, the new one renamed).
PostgreSQL: the constraints are renamed in place. Names 0.1.0 gave explicitly stay.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# The convention as this revision applied it (schema.py's may grow; this must not change).
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
TABLES = (
    "categories", "articles", "article_categories", "dirty_feeds", "folder_digests",
    "subscribers", "digests", "deliveries", "meta",
)  # fmt: skip


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for table in TABLES:
            # Reflected with NAMING, the unnamed constraints get its names in the new table.
            with op.batch_alter_table(table, recreate="always", naming_convention=NAMING):
                pass
        return
    inspector = sa.inspect(bind)
    for table in TABLES:
        for old, new in _renames(inspector, table):
            op.execute(f'ALTER TABLE "{table}" RENAME CONSTRAINT "{old}" TO "{new}"')


def _renames(inspector: sa.Inspector, table: str) -> list[tuple[str, str]]:
    """(PostgreSQL's default name, our name) of each constraint 0.1.0 left unnamed."""
    renames = []
    primary = inspector.get_pk_constraint(table)
    renames.append((primary["name"], f"{table}_pkey", f"pk_{table}"))
    for unique in inspector.get_unique_constraints(table):
        columns = "_".join(unique["column_names"])
        renames.append((unique["name"], f"{table}_{columns}_key", f"uq_{table}_{columns}"))
    for foreign in inspector.get_foreign_keys(table):
        columns, referred = "_".join(foreign["constrained_columns"]), foreign["referred_table"]
        renames.append((foreign["name"], f"{table}_{columns}_fkey", f"fk_{table}_{columns}_{referred}"))
    return [(old, new) for name, old, new in renames if name == old]


def downgrade() -> None:
    raise NotImplementedError("no way back from 0002: restore the backup made before `publisher db upgrade`")
