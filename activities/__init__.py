"""Temporal activities: thin wrappers over the `backup` library (heartbeats, error mapping).

Activities run on two kinds of task queue: the shared queue (validate, claim a host, notify)
and the worker-specific queue of the host that holds the spool (dump, verify, upload, cleanup).
"""
