"""Fault injection against the real servers (issue 7): PostgreSQL, SeaweedFS (S3), the Temporal
dev server, the notification receivers and the spool disk fail under a real worker process.

    .venv/bin/python -m reliability.faults                 # every scenario (about 20 minutes)
    .venv/bin/python -m reliability.faults --fast          # those tests/reliability/ runs
    .venv/bin/python -m reliability.faults --only s3_restart_during_upload

One dev stack of its own (own ports and home, so stopping its servers disturbs nobody) serves
every scenario; each scenario starts its own worker (DevStack.spawn_worker, own task queue,
host id and spool). A scenario returns a one-line detail or raises AssertionError; `main` prints
a table and writes reliability/results/faults.json ({"fault", "passed", "detail", "seconds"}).
Each one checks the outcome, that no spool file is left, that no multipart upload is left
unfinished (S3 scenarios) and the webhook the stack's receiver got.

Parts: staging.py (the stack, the worker, the checks), scenarios.py (the faults), runner.py.
"""

from reliability.faults.runner import main
from reliability.faults.scenarios import SCENARIOS
from reliability.faults.staging import NotRunnable, fault_stack

__all__ = ["SCENARIOS", "NotRunnable", "fault_stack", "main"]
