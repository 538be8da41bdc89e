"""The case store's tables (SQLAlchemy Core), as the store queries them. The migrations under `migrations/`
create them; a change here needs a new migration, never an edit of an old one.

Long text (URLs, evidence, keys) is never indexed directly: a SHA-256 `digest` column carries each uniqueness
rule, since PostgreSQL refuses b-tree entries over about 2.7 kB.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

cases = Table(
    "cases",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("identity", Text, nullable=False),
    Column("identity_digest", String(64), nullable=False, unique=True),
    Column("state", String(20), nullable=False, index=True),
    Column("md5", String(32), index=True),
    Column("sha1", String(40)),
    Column("sha256", String(64)),
    Column("pdq", String(64)),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("reference", Text),  # the last verdict's service reference
    Column("pending_service", String(64)),  # set while submitted: which service owes a verdict
    Column("pending_batch", String(64)),
)

# Every identity a case is known by (its own, each digest it gained, its URL): an import finds the case of an
# item by any of them, so an item first flagged by URL and later by image MD5 stays one case.
identities = Table(
    "identities",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_id", Integer, ForeignKey("cases.id"), nullable=False, index=True),
    Column("identity", Text, nullable=False),
    Column("digest", String(64), nullable=False, unique=True),
)

occurrences = Table(
    "occurrences",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_id", Integer, ForeignKey("cases.id"), nullable=False, index=True),
    Column("key", Text, nullable=False),
    Column("key_digest", String(64), nullable=False, index=True),
    Column("shard", Text, nullable=False),
    Column("row", BigInteger, nullable=False),
    Column("url", Text),
    Column("domain", Text),
    Column("digest", String(64), nullable=False, unique=True),
)

evidence = Table(
    "evidence",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_id", Integer, ForeignKey("cases.id"), nullable=False, index=True),
    Column("detector", Text, nullable=False),
    Column("bank", Text, nullable=False),
    Column("evidence", Text, nullable=False),
    Column("action", String(20), nullable=False),
    Column("score", Float),
    Column("digest", String(64), nullable=False, unique=True),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("who", Text, nullable=False),
    Column("case_id", Integer, nullable=False, index=True),
    Column("from_state", String(20)),
    Column("to_state", String(20), nullable=False),
    Column("reason", Text, nullable=False),
    Column("reference", Text),
    Column("prev_hash", String(64), nullable=False),
    Column("entry_hash", String(64), nullable=False),
)

# One row (id 1): the last entry's sequence number and hash. Locked while appending, so concurrent writers take
# turns; and it tells a log whose last entries were deleted from a log that ends there.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", Integer, nullable=False),
    Column("entry_hash", String(64), nullable=False),
)
