"""Readers and writers, one per dataset format; each streams Arrow-backed RowBatches shard by shard."""
