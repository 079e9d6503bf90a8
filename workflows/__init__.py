"""Temporal workflows: orchestration only (order, retries, timeouts, visibility), no I/O."""
