"""Scanning: a pure per-shard task (`task`), its configuration (`config`), and the driver that runs the task on an
executor, expands around the findings and merges a run (`driver`)."""
