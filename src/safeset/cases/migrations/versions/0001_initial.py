"""The first case store schema: cases, their occurrences and evidence, the hash-chained audit log.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("identity", sa.Text, nullable=False),
        sa.Column("identity_digest", sa.String(64), nullable=False, unique=True),
        sa.Column("state", sa.String(20), nullable=False, index=True),
        sa.Column("md5", sa.String(32), index=True),
        sa.Column("sha1", sa.String(40)),
        sa.Column("sha256", sa.String(64)),
        sa.Column("pdq", sa.String(64)),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reference", sa.Text),
        sa.Column("pending_service", sa.String(64)),
        sa.Column("pending_batch", sa.String(64)),
    )
    op.create_table(
        "occurrences",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), nullable=False, index=True),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("key_digest", sa.String(64), nullable=False, index=True),
        sa.Column("shard", sa.Text, nullable=False),
        sa.Column("row", sa.BigInteger, nullable=False),
        sa.Column("url", sa.Text),
        sa.Column("domain", sa.Text),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
    )
    op.create_table(
        "evidence",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), nullable=False, index=True),
        sa.Column("detector", sa.Text, nullable=False),
        sa.Column("bank", sa.Text, nullable=False),
        sa.Column("evidence", sa.Text, nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("score", sa.Float),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
    )
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("who", sa.Text, nullable=False),
        sa.Column("case_id", sa.Integer, nullable=False, index=True),
        sa.Column("from_state", sa.String(20)),
        sa.Column("to_state", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("reference", sa.Text),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("entry_hash", sa.String(64), nullable=False),
    )
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("entry_hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "entry_hash": "0" * 64}])


def downgrade() -> None:
    raise NotImplementedError("the audit log is never dropped")
