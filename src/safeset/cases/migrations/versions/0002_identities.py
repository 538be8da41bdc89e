"""Every identity a case is known by, so that an item first seen by its URL and later by its image digest (or the
other way round) stays one case.

Revision ID: 0002
Revises: 0001

Back-fills each existing case's own identity and its known digests; URLs of older cases are added by the next
import that sees them.
"""

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    identities = op.create_table(
        "identities",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), nullable=False, index=True),
        sa.Column("identity", sa.Text, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
    )
    conn = op.get_bind()
    cases = sa.table(
        "cases",
        sa.column("id", sa.Integer),
        sa.column("identity", sa.Text),
        sa.column("md5", sa.String),
        sa.column("sha256", sa.String),
        sa.column("sha1", sa.String),
        sa.column("pdq", sa.String),
    )
    rows, taken = [], set()
    for case in conn.execute(sa.select(cases).order_by(cases.c.id)):
        names = [case.identity] + [
            f"{n}:{getattr(case, n)}" for n in ("md5", "sha256", "sha1", "pdq") if getattr(case, n)
        ]
        for name in dict.fromkeys(names):
            digest = hashlib.sha256(name.encode()).hexdigest()
            if digest not in taken:  # two old cases holding the same digest: the older keeps it
                taken.add(digest)
                rows.append({"case_id": case.id, "identity": name, "digest": digest})
    if rows:
        op.bulk_insert(identities, rows)


def downgrade() -> None:
    op.drop_table("identities")
