"""Structured run logs and the running totals behind them.

Operators need two things from a long-running flow: a line per epoch that a
log shipper can parse (how many messages came in, how many were valid or
dead-lettered, what the gate published or quarantined), and a summary when the
run ends.  Both come from :class:`RunStats`, one per process, fed by the
record-rule sink (one tally per consumed message, see
:mod:`quality.record_rules`) and by the quality gate's run reports.

Records are ordinary :mod:`logging` records whose structured fields travel in
``extra={"fields": {...}}``; :class:`JsonFormatter` renders them as one JSON
object per line (``--log-format json``), :class:`TextFormatter` as
``key=value`` pairs.  Nothing secret is ever put in a field: no message
payloads, keys or credentials, only counts, names and versions.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from quality.record_rules import Fates

__all__ = [
    "JsonFormatter",
    "LogFormat",
    "RunStats",
    "TextFormatter",
    "configure",
    "log_fields",
    "run_stats",
]

LogFormat = Literal["text", "json"]

log = logging.getLogger("orderhealth.run")


def log_fields(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    """Log ``event`` with structured ``fields`` (cheap when the level is off)."""
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={"fields": fields})


def _fields(record: logging.LogRecord) -> Mapping[str, Any]:
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, Mapping) else {}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``event`` and the fields."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "event": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger: event key=value ...`` for people reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        pairs = " ".join(f"{k}={json.dumps(v, default=str)}" for k, v in _fields(record).items())
        return f"{text} {pairs}" if pairs else text


def configure(fmt: LogFormat = "text", level: int | str = logging.INFO) -> None:
    """Route every log record to stderr in ``fmt``; libraries only from WARNING."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("great_expectations", "deltalake", "urllib3", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class RunStats:
    """Counts of this process's run, logged per epoch and summed for the end.

    Thread-safe: gate reports arrive on the gate reader thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = time.monotonic()
        self.epochs = 0
        self.consumed = 0
        self.valid = 0
        self.warned = 0
        self.dead_lettered: Counter[str] = Counter()
        self.gate_runs: Counter[str] = Counter()
        self.published_rows = 0
        self.quarantined_rows = 0
        self._epoch_published = 0
        self._epoch_quarantined = 0
        #: Metric rows the window step handed to staging.
        self.metric_rows = 0
        #: Windows held back while catching up, summed over hand-outs.
        self.held_back = 0

    def gate_run(self, outcome: str, rows: int) -> None:
        """A quality-gate run finished (``passed``, ``warning`` or ``quarantined``)."""
        with self._lock:
            self.gate_runs[outcome] += 1
            if outcome == "quarantined":
                self.quarantined_rows += rows
                self._epoch_quarantined += rows
            else:
                self.published_rows += rows
                self._epoch_published += rows

    def window_step(self, rows: int, held_back: int) -> None:
        """One hand-out of the window step: rows staged, windows held back."""
        with self._lock:
            self.metric_rows += rows
            self.held_back += held_back

    def epoch(self, fates: Fates) -> dict[str, Any]:
        """Count one epoch's messages (their record-rule fates); log and return its record."""
        reasons = Counter(fates.dropped) + Counter(fates.rejected)
        dead = sum(reasons.values())
        with self._lock:
            self.epochs += 1
            valid = fates.passed + fates.warned_messages
            self.consumed += fates.messages
            self.valid += valid
            self.warned += fates.warned_messages
            self.dead_lettered.update(reasons)
            record = {
                "epoch": self.epochs,
                "consumed": fates.messages,
                "valid": valid,
                "warned": fates.warned_messages,
                "dead_lettered": dead,
                "dead_letter_reasons": dict(reasons),
                "published": self._epoch_published,
                "quarantined": self._epoch_quarantined,
            }
            self._epoch_published = self._epoch_quarantined = 0
        log_fields(log, logging.INFO, "epoch", **record)
        return record

    def summary(self) -> dict[str, Any]:
        """The whole run so far, for the end-of-run line and table."""
        with self._lock:
            seconds = time.monotonic() - self.started
            return {
                "seconds": round(seconds, 3),
                "epochs": self.epochs,
                "consumed": self.consumed,
                "valid": self.valid,
                "warned": self.warned,
                "dead_lettered": sum(self.dead_lettered.values()),
                "dead_letter_reasons": dict(self.dead_lettered.most_common()),
                "gate_runs": dict(self.gate_runs),
                "published_rows": self.published_rows,
                "quarantined_rows": self.quarantined_rows,
                "metric_rows": self.metric_rows,
                "held_back": self.held_back,
                "events_per_s": round(self.consumed / seconds, 1) if seconds > 0 else 0.0,
            }


run_stats = RunStats()
"""This process's counts (one flow per process)."""
