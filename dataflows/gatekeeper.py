"""Run the quality gate from the flow, after staging commits.

The gate is slow to set up (GX) and has a fixed cost per run, so the worker
that owns the staging table builds one :class:`~lakehouse.publication.Publisher`
when its sink partition is built and runs it at most every ``interval_s``
seconds, plus once when the flow ends.  The interval only decides how staged
commits are grouped into batches; what ends up published does not depend on
it.  A run left unfinished by a crash is completed by the next one.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from lakehouse.publication import GateRun, Publisher

__all__ = ["gate_after_flush"]


def gate_after_flush(
    root: str,
    *,
    pipeline_id: str,
    storage_options: dict[str, str] | None,
    interval_s: float,
    on_run: Callable[[GateRun], None] | None = None,
) -> Callable[[bool], None]:
    """Build the publisher now (once per worker); return the after-flush hook."""
    publisher = Publisher(root, pipeline_id=pipeline_id, storage_options=storage_options)
    publisher.prepare()
    last_run = [float("-inf")]

    def after_flush(closing: bool) -> None:
        now = time.monotonic()
        if closing or now - last_run[0] >= interval_s:
            last_run[0] = now
            publisher.run_all(on_run)

    return after_flush
