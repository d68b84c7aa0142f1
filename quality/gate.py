"""Run a batch-level Great Expectations suite and turn the result into a verdict.

This module knows GX and pandas, not Delta: given a batch as a DataFrame and
the row counts of recent batches, it says ``passed``, ``warning`` or
``quarantined`` and why.  :mod:`lakehouse.publication` does the I/O.

GX costs about 3 s to import and a few more to build a context, so a
:class:`QualityGate` is built once per process (see :func:`load_gate`) and
reused for every batch; a validation then takes tens of milliseconds.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import statistics
import time
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from dataflows.settings import SettingsError, parse_duration_us
from quality.gx_memo import configuration_memo
from quality.suites import suite_path

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuiteValidationResult

__all__ = [
    "DEFAULT_GATE_SETTINGS",
    "FailedExpectation",
    "GateSettings",
    "GateVerdict",
    "QualityGate",
    "load_gate",
]

DEFAULT_GATE_SETTINGS = Path(__file__).with_name("gate.toml")

PASSED = "passed"
WARNING = "warning"
QUARANTINED = "quarantined"


class GateSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One suite's history- and deployment-dependent parameters (gate.toml)."""

    volume_history: int = 20
    volume_min_history: int = 5
    volume_min_ratio: float = 0.0
    volume_max_ratio: float = 25.0
    max_watermark_lag: str = "15m"

    @classmethod
    def load(cls, suite: str, path: Path | None = None) -> GateSettings:
        path = path or DEFAULT_GATE_SETTINGS
        try:
            raw = msgspec.toml.decode(path.read_bytes(), type=dict[str, GateSettings])
        except (OSError, msgspec.DecodeError, msgspec.ValidationError) as err:
            raise SettingsError(f"gate settings {path}: {err}") from err
        settings = raw.get(suite, cls())
        parse_duration_us(settings.max_watermark_lag, what=f"{path}: max_watermark_lag")
        return settings


class FailedExpectation(msgspec.Struct, frozen=True):
    """One expectation a batch did not meet."""

    expectation: str
    severity: str
    column: str | None = None
    #: A short rendering of what was found (observed value, unexpected count/sample).
    observed: str | None = None
    error: str | None = None

    def describe(self) -> str:
        where = f"({self.column})" if self.column else ""
        what = self.error or self.observed or "failed"
        return f"[{self.severity}] {self.expectation}{where}: {what}"


class GateVerdict(msgspec.Struct, frozen=True):
    """What the gate decided about one batch."""

    suite: str
    outcome: str  # passed | warning | quarantined
    row_count: int
    evaluated: int
    failed: tuple[FailedExpectation, ...]
    duration_ms: float
    parameters: dict[str, Any]
    #: GX's validation result (``ExpectationSuiteValidationResult``).
    result: Any

    @property
    def result_json(self) -> str:
        """The full GX validation result as JSON (rendered by Data Docs).

        Serialised on demand, when the run is recorded -- after publication,
        which it would otherwise delay (~10 ms for a 22k-row metrics batch).
        """
        return json.dumps(self.result.to_json_dict(), default=str)

    @property
    def success(self) -> bool:
        return self.outcome != QUARANTINED

    @property
    def warnings(self) -> tuple[FailedExpectation, ...]:
        return tuple(f for f in self.failed if f.severity != "critical")

    @property
    def critical(self) -> tuple[FailedExpectation, ...]:
        return tuple(f for f in self.failed if f.severity == "critical")


def _failed(result: Any) -> FailedExpectation:
    config = result.expectation_config
    kwargs = config.kwargs
    column = kwargs.get("column") or (
        ",".join(kwargs["column_list"])
        if "column_list" in kwargs
        else (f"{kwargs['column_A']},{kwargs['column_B']}" if "column_A" in kwargs else None)
    )
    info = result.exception_info or {}
    error = None
    if info.get("raised_exception"):
        error = str(info.get("exception_message") or "expectation raised an error")
    details = result.result or {}
    observed = None
    if "observed_value" in details:
        observed = f"observed {details['observed_value']!r}"
    elif details.get("unexpected_count") is not None:
        sample = details.get("partial_unexpected_list") or []
        observed = f"{details['unexpected_count']} unexpected, e.g. {sample[:3]!r}"
    return FailedExpectation(
        expectation=config.type,
        severity=str(getattr(config.severity, "value", config.severity)),
        column=column,
        observed=observed,
        error=error,
    )


#: kwargs of an expectation that name the columns it reads.
_COLUMN_KWARGS = ("column", "column_A", "column_B")


def referenced_columns(suite: dict[str, Any]) -> frozenset[str] | None:
    """The columns a suite's expectations read; None when that cannot be told.

    GX's pandas engine copies the batch's rows (every column) for each
    column-map expectation's domain, so columns no expectation reads cost
    time in every one of them.  A suite with a ``row_condition`` (a pandas
    query over any column) or an expectation about the table's columns
    themselves reads more than it names: it gets the whole batch.
    """
    names: set[str] = set()
    for expectation in suite.get("expectations", []):
        kwargs = expectation.get("kwargs", {})
        if kwargs.get("row_condition") or "table_column" in expectation.get("type", ""):
            return None
        names.update(kwargs[k] for k in _COLUMN_KWARGS if k in kwargs)
        names.update(kwargs.get("column_list", ()))
    return frozenset(names)


class QualityGate:
    """One suite, loaded from its reviewable JSON file, bound to a GX context."""

    def __init__(self, suite: str, settings: GateSettings | None = None) -> None:
        # Imported here: GX is heavy, and most commands never gate anything.
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.suite_name = suite
        self.settings = settings or GateSettings.load(suite)
        self._lag_limit = parse_duration_us(self.settings.max_watermark_lag, what="lag") / 1e6
        self.suite_definition = json.loads(suite_path(suite).read_text())
        #: Build each expectation's configuration once per validation and its
        #: metric graph once per process (:mod:`quality.gx_memo`; a 22k-row
        #: metrics batch: 110 -> 42 ms, its 66 fact rows: 70 -> 22 ms).
        self.memo = True
        #: What :meth:`validate` hands to GX (None = every column).
        self.columns = referenced_columns(self.suite_definition)
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        asset = context.data_sources.add_pandas(f"{suite}_batches").add_dataframe_asset(suite)
        batch = asset.add_batch_definition_whole_dataframe("batch")
        gx_suite = context.suites.add(gx.ExpectationSuite(**self.suite_definition))
        self._definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=suite, data=batch, suite=gx_suite)
        )
        self.context = context

    def parameters(self, recent_row_counts: Sequence[int]) -> dict[str, Any]:
        """Suite parameters for the next batch, from the recent batches' sizes."""
        s = self.settings
        recent = list(recent_row_counts)[-s.volume_history :]
        if len(recent) >= s.volume_min_history:
            median = statistics.median(recent)
            low, high = median * s.volume_min_ratio, median * s.volume_max_ratio
            return {
                "min_rows": int(low),
                "max_rows": max(int(high), 1),
                "max_watermark_lag_seconds": self._lag_limit,
            }
        # Too little history to judge volume: any non-empty batch is plausible.
        return {
            "min_rows": 1,
            "max_rows": None,
            "max_watermark_lag_seconds": self._lag_limit,
        }

    def _run(
        self, frame: Any, parameters: dict[str, Any], result_format: Literal["BASIC", "SUMMARY"]
    ) -> ExpectationSuiteValidationResult:
        with warnings.catch_warnings():
            # GX reads tz-aware columns through an API pandas 3.1 deprecates.
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            with configuration_memo(self.memo):
                return self._run_unstored(frame, parameters, result_format)

    def _run_unstored(
        self, frame: Any, parameters: dict[str, Any], result_format: Literal["BASIC", "SUMMARY"]
    ) -> ExpectationSuiteValidationResult:
        """What ``ValidationDefinition.run`` does (GX 1.x), minus its result store.

        Why: ``run`` puts every result, serialised (~25 KB for the metrics
        suite), into the context's results store, which in the gate's
        ephemeral context is a dict that lives as long as the process: at one
        gate run a second, ~2 GB a day for the metrics suite alone, of
        results nobody reads (each run's result is kept in
        ``quality/validation_runs`` instead).  Serialising it was also ~15%
        of a validation (22k rows: 90 -> 76 ms).  The result carries the same
        metadata ``run`` gives it.
        """
        from great_expectations.constants import DATAFRAME_REPLACEMENT_STR
        from great_expectations.core.run_identifier import RunIdentifier
        from great_expectations.validator.v1_validator import Validator

        definition = self._definition
        validator = Validator(
            batch_definition=definition.batch_definition,
            batch_parameters={"dataframe": frame},
            result_format=result_format,
        )
        result = validator.validate_expectation_suite(definition.suite, parameters)
        run_id = RunIdentifier(run_time=datetime.now(UTC))
        result.meta["validation_id"] = definition.id
        result.meta["checkpoint_id"] = None
        result.meta["run_id"] = run_id
        result.meta["validation_time"] = run_id.run_time
        result.meta["batch_parameters"] = {"dataframe": DATAFRAME_REPLACEMENT_STR}
        return result

    def validate(self, frame: Any, recent_row_counts: Sequence[int]) -> GateVerdict:
        """Validate one batch (a pandas DataFrame).  Deterministic for the same rows and history."""
        started = time.perf_counter()
        parameters = self.parameters(recent_row_counts)
        if self.columns is not None and not self.columns.issuperset(frame.columns):
            # Only what the suite reads (a 25k-row metrics batch, 46 -> 25
            # columns: 166 -> 131 ms); the verdict is the same.  Callers that
            # narrowed the batch already (lakehouse.publication) skip the copy.
            frame = frame[[c for c in frame.columns if c in self.columns]]
        # BASIC keeps each expectation's observed value and unexpected count
        # and sample (what Data Docs show for a run); GX's default SUMMARY adds
        # unexpected-value counts and indexes, which cost ~40% of a run
        # whatever its size (300 rows: 295 -> 185 ms; 187k rows: 980 -> 590
        # ms).  They matter only when something failed, so a failed batch is
        # validated again with them; the verdict is the same either way.
        result = self._run(frame, parameters, "BASIC")
        if not result.success:
            result = self._run(frame, parameters, "SUMMARY")
        failed = tuple(_failed(r) for r in result.results if not r.success)
        if any(f.severity == "critical" for f in failed):
            outcome = QUARANTINED
        elif failed:
            outcome = WARNING
        else:
            outcome = PASSED
        return GateVerdict(
            suite=self.suite_name,
            outcome=outcome,
            row_count=len(frame),
            evaluated=len(result.results),
            failed=failed,
            duration_ms=(time.perf_counter() - started) * 1000,
            parameters=parameters,
            result=result,
        )


@functools.cache
def load_gate(suite: str, settings_path: str | None = None) -> QualityGate:
    """The process's gate for a suite (built once: GX set-up is slow)."""
    log = logging.getLogger(__name__)
    started = time.perf_counter()
    settings = GateSettings.load(suite, Path(settings_path) if settings_path else None)
    gate = QualityGate(suite, settings)
    log.info("quality gate %s ready in %.1f s", suite, time.perf_counter() - started)
    return gate
