"""Executors: where the first pass's shards are scanned — this process, a local process pool, or a Ray cluster.

Every executor runs the same `ShardScanner.scan_shard`, whose per-shard files (written last: a `.json`
completion marker) make runs resumable and results identical however the shards were spread.
"""
