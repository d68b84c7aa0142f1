"""Run the quality gate beside the flow, in its own process.

The gate is slow to set up (GX import and context: ~5 s) and a validation has
a fixed cost (~0.06 s of GX overhead for the two suites however small the
batch, after :mod:`quality.gx_memo`; 0.18 s without it), all of it Python
holding the GIL.  So the worker that owns the staging table starts the
gate as a child process (``python -m dataflows.gatekeeper``): set-up and runs
use the machine's other core instead of stalling the flow.  The staging sink
pokes it after every commit; runs start at most every ``interval_s`` seconds
(counted from the start of the previous run, so a run's own duration is not
added to the wait), and once more, waited for, when the flow ends.  The
interval only decides how staged commits are grouped into batches; what ends
up published does not depend on it.  A run left unfinished by a crash is completed by the next one
(see :mod:`lakehouse.publication`); if the flow dies, the child sees its stdin
close and exits (a run in progress is cut short like any crash).

Protocol: the parent writes ``run`` / ``stop`` lines to the child's stdin; the
child writes one JSON object per line to stdout: ``{"run": GateRun}``,
``{"done": true}`` or ``{"error": "..."}``.

An error in the gate is re-raised in the flow at the next flush: publication
must never stop silently while staging carries on.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import IO

import msgspec

from dataflows.allocator import without_jemalloc
from dataflows.interpreter_tuning import freeze_start_up_heap
from dataflows.run_log import JsonFormatter, TextFormatter, log_fields
from dataflows.scheduling import lower_process
from lakehouse.publication import GateRun, Publisher

__all__ = ["GateProcess", "gate_after_flush"]

log = logging.getLogger(__name__)


class GateProcess:
    """The quality gate in a child process, driven by the staging sink."""

    def __init__(
        self,
        root: str,
        *,
        pipeline_id: str,
        storage_options: dict[str, str] | None,
        interval_s: float,
        nice: int = 0,
        on_run: Callable[[GateRun], None] | None = None,
    ) -> None:
        self._on_run = on_run
        self._error: str | None = None
        self._done = False
        command = [
            sys.executable,
            "-m",
            "dataflows.gatekeeper",
            root,
            "--pipeline-id",
            pipeline_id,
            "--interval",
            str(interval_s),
            "--storage-options",
            json.dumps(storage_options or {}),
            # Off the event thread's way: it yields the CPU (dataflows.scheduling).
            "--nice",
            str(nice),
            # The child logs (to the shared stderr) as verbosely as this
            # process would have: quiet under the demo's progress bars.
            "--log-level",
            logging.getLevelName(logging.getLogger("lakehouse.publication").getEffectiveLevel()),
            "--log-format",
            "json" if _logs_json() else "text",
        ]
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            # GX in pandas runs better on the system's malloc (see there).
            env=without_jemalloc(os.environ),
        )
        assert self._process.stdout is not None
        self._reader = threading.Thread(
            target=self._read, args=(self._process.stdout,), name="quality-gate", daemon=True
        )
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            message = json.loads(line)
            if "run" in message and self._on_run is not None:
                self._on_run(msgspec.convert(message["run"], GateRun))
            elif "error" in message:
                self._error = message["error"]
            elif "done" in message:
                self._done = True

    def _raise(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"quality gate failed: {self._error}")
        code = self._process.poll()
        if code is not None and not self._done:
            raise RuntimeError(f"quality gate process exited unexpectedly (code {code})")

    def _send(self, command: str) -> None:
        assert self._process.stdin is not None
        try:
            self._process.stdin.write(command + "\n")
            self._process.stdin.flush()
        except BrokenPipeError:
            self._reader.join()
            self._raise()
            raise

    def poke(self) -> None:
        """Staging moved on: run when the interval allows."""
        self._raise()
        self._send("run")

    def finish(self) -> None:
        """Run once more over everything staged, wait for it, and stop."""
        self._send("stop")
        assert self._process.stdin is not None
        self._process.stdin.close()
        self._reader.join()
        self._process.wait()
        self._raise()


def _logs_json() -> bool:
    return any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers)


def gate_after_flush(
    root: str,
    *,
    pipeline_id: str,
    storage_options: dict[str, str] | None,
    interval_s: float,
    nice: int = 0,
    on_run: Callable[[GateRun], None] | None = None,
) -> Callable[[bool], None]:
    """Start the gate process (once per worker); return the staging sink's after-flush hook."""
    gate = GateProcess(
        root,
        pipeline_id=pipeline_id,
        storage_options=storage_options,
        interval_s=interval_s,
        nice=nice,
        on_run=on_run,
    )

    def after_flush(closing: bool) -> None:
        if closing:
            gate.finish()
        else:
            gate.poke()

    return after_flush


def _serve(root: str, pipeline_id: str, interval_s: float, options: dict[str, str]) -> int:
    wake, stop = threading.Event(), threading.Event()

    def listen() -> None:
        for line in sys.stdin:
            if line.strip() == "stop":
                stop.set()
                wake.set()
                return
            wake.set()
        # stdin closed without "stop": the flow died.  Exit without another run;
        # the restarted flow's gate picks up where this one left off.
        os._exit(0)

    def emit(message: dict[str, object]) -> None:
        sys.stdout.write(json.dumps(message, default=str) + "\n")
        sys.stdout.flush()

    threading.Thread(target=listen, daemon=True).start()
    try:
        publisher = Publisher(root, pipeline_id=pipeline_id, storage_options=options or None)
        publisher.prepare()
        # The priority it runs at, as the OS has it (FlowConfig.background_nice_value).
        log_fields(log, logging.INFO, "gate_ready", nice=os.getpriority(os.PRIO_PROCESS, 0))
        # GX's context is a large, long-lived heap: a full collection walked
        # it every ~8 validations, adding ~130 ms to that run (a 22k-row batch
        # of both suites: p90 241 -> 123 ms, mean 135 -> 118 ms).  Only the
        # heap is frozen; the flow's rarer collections (tune_interpreter) let
        # the gate's RSS grow with large batches' cyclic garbage.
        freeze_start_up_heap()
        while True:
            wake.wait()
            wake.clear()
            stopping = stop.is_set()
            started = time.monotonic()
            publisher.run_all(lambda run: emit({"run": msgspec.to_builtins(run)}))
            if stopping:
                emit({"done": True})
                return 0
            # Staging commits meanwhile form the next batch.  Counted from the
            # run's start: waiting a whole interval after a 0.3 s run added
            # up to that much to every publication's delay.
            stop.wait(max(0.0, interval_s - (time.monotonic() - started)))
    except Exception as err:
        emit({"error": f"{type(err).__name__}: {err}"})
        return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Quality gate worker (started by the flow).")
    parser.add_argument("root")
    parser.add_argument("--pipeline-id", default="orderhealth")
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--storage-options", default="{}")
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--log-format", choices=["text", "json"], default="text")
    parser.add_argument("--nice", type=int, default=0, help="nice value to run at (0-19)")
    args = parser.parse_args(argv)
    # First: the threads this process starts from now on inherit it.
    lower_process(args.nice)
    # Ctrl-C reaches the whole process group; the flow decides when the gate
    # stops (it closes our stdin), so the gate does not die mid-run on its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if args.log_format == "json" else TextFormatter())
    # Our own messages at the requested level; libraries' only when they warn.
    handler.addFilter(
        lambda r: (
            r.name.startswith(("lakehouse", "quality", __name__)) or r.levelno >= logging.WARNING
        )
    )
    logging.basicConfig(level=args.log_level, handlers=[handler])
    return _serve(args.root, args.pipeline_id, args.interval, json.loads(args.storage_options))


if __name__ == "__main__":
    sys.exit(main())
