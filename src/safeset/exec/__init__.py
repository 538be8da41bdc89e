"""Executors: where a pass's items run — this process, a local process pool, or a Ray cluster.

Every pass hands its executor a picklable `Task`; per-item result files (written atomically, a completion
marker last) make runs resumable and results identical however the items were spread.
"""
