"""The batch quality gate on real Delta tables with real Great Expectations.

Batches are staged the way the flow stages them (DeltaWriter upserts into
``gold/health_metrics_staging``); corrupt batches are committed straight to
staging, as a buggy writer would.
"""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from dataflows.fulfilment import fulfilment_facts
from lakehouse.publication import (
    FULFILMENT_SUITE,
    SUITE,
    Publisher,
    QuarantineError,
    StagingUnreadableError,
    as_gate_batch,
    discard,
    list_quarantined,
    release,
)
from lakehouse.reader import read_log, read_table
from lakehouse.tables import (
    HEALTH_METRICS,
    HEALTH_METRICS_STAGING,
    METRIC_COLUMNS,
    QUARANTINE_ACTIONS,
    VALIDATION_RUNS,
    table_uri,
)
from lakehouse.writer import Chunk, DeltaWriter
from quality.gate import load_gate
from quality.gx_memo import memo_installed

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 2, tzinfo=UTC)


def metric_row(hour: int, value: str = "all", **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {f.name: None for f in HEALTH_METRICS_STAGING.schema}
    row.update(
        window_size="1h",
        window_start=T0 + timedelta(hours=hour),
        window_end=T0 + timedelta(hours=hour + 1),
        dimension="all" if value == "all" else "region",
        dimension_value=value,
        is_final=False,
        orders_resolved=10,
        orders_on_time=9,
        orders_active=20,
        orders_anomalous=2,
        on_time_rate=0.9,
        anomaly_rate=0.1,
        health_index=81.5,
        watermark_lag_seconds=30.0,
    )
    row.update(overrides)
    return row


def stage(root: Path, rows: list[dict[str, Any]], offset: int) -> None:
    DeltaWriter(str(root), HEALTH_METRICS_STAGING).upsert([Chunk({"orders/0": offset}, rows)])


def stage_raw(root: Path, rows: list[dict[str, Any]]) -> None:
    """Commit rows as they are (duplicates included), like a buggy writer."""
    write_deltalake(
        table_uri(str(root), HEALTH_METRICS_STAGING),
        pa.Table.from_pylist(rows, schema=HEALTH_METRICS_STAGING.schema),
        mode="append",
    )


def published(root: Path) -> dict[tuple[Any, ...], dict[str, Any]]:
    rows = read_table(str(root), HEALTH_METRICS).to_pylist()
    return {(r["window_start"], r["dimension_value"]): r for r in rows}


def runs(root: Path) -> list[dict[str, Any]]:
    return read_table(str(root), VALIDATION_RUNS).sort_by("source_version").to_pylist()


@pytest.fixture
def lakehouse(tmp_path: Path) -> Path:
    stage(tmp_path, [metric_row(0), metric_row(0, "EU"), metric_row(1)], offset=10)
    Publisher(str(tmp_path)).run_all()
    return tmp_path


def test_good_batch_is_published_with_its_run_id(lakehouse: Path) -> None:
    rows = published(lakehouse)
    assert len(rows) == 3
    (run,) = runs(lakehouse)
    assert run["outcome"] == "passed" and run["success"] and run["row_count"] == 3
    assert {r["validation_run_id"] for r in rows.values()} == {run["run_id"]}
    assert {r["quality_status"] for r in rows.values()} == {"passed"}
    assert json.loads(run["counts"])["expectations"] > 10
    result = json.loads(run["result"])
    assert result["success"] is True
    # A passing batch is validated at GX's BASIC detail: observed values and
    # unexpected counts and samples, not the costlier value counts.
    details = [r["result"] for r in result["results"]]
    assert any("observed_value" in d for d in details)
    assert any("unexpected_count" in d for d in details)
    assert not any("partial_unexpected_counts" in d for d in details)


@pytest.mark.parametrize(
    ("corrupt", "expectation"),
    [
        (lambda: [metric_row(0, on_time_rate=1.3)], "expect_column_values_to_be_between"),
        (lambda: [metric_row(0, health_index=101.0)], "expect_column_values_to_be_between"),
        (lambda: [metric_row(2), metric_row(2)], "expect_compound_columns_to_be_unique"),
        (lambda: [metric_row(2, dimension_value=None)], "expect_column_values_to_not_be_null"),
        (
            lambda: [metric_row(0, orders_on_time=11)],
            "expect_column_pair_values_a_to_be_greater_than_b",
        ),
    ],
    ids=["rate-1.3", "index-101", "duplicate-key", "null-key", "subset-count"],
)
def test_critical_failure_quarantines_and_published_is_unchanged(
    lakehouse: Path, corrupt: Any, expectation: str
) -> None:
    before = published(lakehouse)
    version = DeltaTable(table_uri(str(lakehouse), HEALTH_METRICS)).version()
    stage_raw(lakehouse, corrupt())
    (run,) = Publisher(str(lakehouse)).run_all()
    assert run.outcome == "quarantined"
    assert published(lakehouse) == before
    assert DeltaTable(table_uri(str(lakehouse), HEALTH_METRICS)).version() == version
    record = runs(lakehouse)[-1]
    assert record["outcome"] == "quarantined" and not record["success"]
    failing = json.loads(record["failing_expectations"])
    assert [f["severity"] for f in failing] == ["critical"]
    assert failing[0]["expectation"] == expectation
    # A failed batch is validated again at SUMMARY detail for the record.
    (failure,) = [r for r in json.loads(record["result"])["results"] if not r["success"]]
    assert failure["expectation_config"]["type"] == expectation
    assert "partial_unexpected_counts" in failure["result"]
    (batch,) = list_quarantined(str(lakehouse))
    assert batch.batch_id == run.batch_id and batch.status == "pending"
    assert expectation in batch.failed[0]


def test_release_publishes_with_an_audit_row(lakehouse: Path) -> None:
    stage_raw(lakehouse, [metric_row(0, on_time_rate=1.3), metric_row(5)])
    (run,) = Publisher(str(lakehouse)).run_all()
    count = release(str(lakehouse), run.batch_id, actor="ops@example.com", reason="known issue")
    assert count == 2
    rows = published(lakehouse)
    assert rows[(T0, "all")]["on_time_rate"] == 1.3
    assert rows[(T0, "all")]["quality_status"] == "released"
    assert rows[(T0, "all")]["validation_run_id"] == run.run_id
    (audit,) = read_table(str(lakehouse), QUARANTINE_ACTIONS).to_pylist()
    assert audit["action"] == "released" and audit["actor"] == "ops@example.com"
    assert audit["reason"] == "known issue" and audit["rows_published"] == 2
    assert list_quarantined(str(lakehouse)) == []
    with pytest.raises(QuarantineError, match="already released"):
        release(str(lakehouse), run.batch_id, actor="x", reason="again")


def test_release_never_overwrites_a_newer_published_row(lakehouse: Path) -> None:
    stage_raw(lakehouse, [metric_row(11, on_time_rate=1.3)])
    (bad,) = Publisher(str(lakehouse)).run_all()
    stage(lakehouse, [metric_row(11, on_time_rate=0.5)], offset=20)
    (good,) = Publisher(str(lakehouse)).run_all()
    assert good.outcome == "passed"
    release(str(lakehouse), bad.batch_id, actor="ops", reason="late release")
    assert published(lakehouse)[(T0 + timedelta(hours=11), "all")]["on_time_rate"] == 0.5


def test_discard_leaves_an_audit_row_and_publishes_nothing(lakehouse: Path) -> None:
    stage_raw(lakehouse, [metric_row(3, on_time_rate=-0.1)])
    (run,) = Publisher(str(lakehouse)).run_all()
    before = published(lakehouse)
    discard(str(lakehouse), run.batch_id, actor="ops", reason="bad upstream deploy")
    assert published(lakehouse) == before
    (audit,) = read_table(str(lakehouse), QUARANTINE_ACTIONS).to_pylist()
    assert audit["action"] == "discarded" and audit["rows_published"] == 0
    with pytest.raises(QuarantineError, match="no quarantined batch"):
        discard(str(lakehouse), "health_metrics@999-999", actor="ops", reason="typo")


def test_warning_only_failure_publishes_with_a_flag(lakehouse: Path) -> None:
    stage(lakehouse, [metric_row(4, watermark_lag_seconds=5 * 3600.0)], offset=30)
    (run,) = Publisher(str(lakehouse)).run_all()
    assert run.outcome == "warning"
    row = published(lakehouse)[(T0 + timedelta(hours=4), "all")]
    assert row["quality_status"] == "warning"
    assert row["quality_warnings"] == "expect_column_values_to_be_between"
    record = runs(lakehouse)[-1]
    assert record["success"] and record["outcome"] == "warning"
    assert json.loads(record["failing_expectations"])[0]["severity"] == "warning"


def test_row_volume_is_judged_against_recent_batches(tmp_path: Path) -> None:
    publisher = Publisher(str(tmp_path))
    for i in range(6):
        stage(tmp_path, [metric_row(i), metric_row(i, "EU")], offset=i)
        assert publisher.run_all()[0].outcome == "passed"
    burst = [metric_row(10, f"R{i}") for i in range(60)]  # 30x the median of 2
    stage(tmp_path, burst, offset=100)
    (run,) = publisher.run_all()
    assert run.outcome == "warning"
    assert "expect_table_row_count_to_be_between" in run.failed[0]


def test_a_run_covers_all_commits_since_the_last_and_is_recorded_once(lakehouse: Path) -> None:
    stage(lakehouse, [metric_row(6)], offset=40)
    stage(lakehouse, [metric_row(6, on_time_rate=0.8), metric_row(7)], offset=50)
    publisher = Publisher(str(lakehouse))
    (run,) = publisher.run_all()
    assert run.row_count == 2  # hour 6 once, from its newest commit
    assert published(lakehouse)[(T0 + timedelta(hours=6), "all")]["on_time_rate"] == 0.8
    assert publisher.run_all() == []
    assert len(runs(lakehouse)) == 2


def test_a_batch_of_one_commit_is_every_row_of_it_in_either_way_of_cutting(
    lakehouse: Path,
) -> None:
    """One commit skips the newest-per-key pass; it must give what the pass gives."""
    stage_raw(lakehouse, [metric_row(6), metric_row(6), metric_row(7)])  # a duplicate key
    stage(lakehouse, [metric_row(6, on_time_rate=0.8)], offset=50)
    publisher = Publisher(str(lakehouse))
    first, last = publisher.pending() or (0, 0)
    assert (first, last) == (2, 3)
    one_commit = publisher.changed_rows(first, first)
    assert one_commit.num_rows == 3  # duplicates inside one commit survive to be judged
    assert set(one_commit["staging_version"].to_pylist()) == {first}
    both = publisher.changed_rows(first, last)  # the newest-per-key pass
    assert sorted(both["staging_version"].to_pylist()) == [first, last]  # hour 7, hour 6
    assert both.schema == one_commit.schema


def test_the_columns_its_suite_reads_are_judged_as_the_whole_batch_is() -> None:
    """GX gets only the columns the suite names (speed); the verdict must not change."""
    gate = load_gate(SUITE)
    assert gate.columns is not None and len(gate.columns) < len(METRIC_COLUMNS)
    schema = pa.schema([HEALTH_METRICS_STAGING.schema.field(c) for c in METRIC_COLUMNS])
    rows = [
        metric_row(0, on_time_rate=1.3),
        metric_row(1, orders_on_time=11),
        metric_row(2, health_index=None),
        metric_row(3),
    ]
    frame = pa.Table.from_pylist(rows, schema=schema).to_pandas()
    narrowed = gate.validate(frame, [])
    columns, gate.columns = gate.columns, None
    try:
        whole = gate.validate(frame, [])
    finally:
        gate.columns = columns
    assert narrowed.outcome == whole.outcome == "quarantined"
    assert narrowed.failed == whole.failed and len(narrowed.failed) >= 2
    assert (narrowed.row_count, narrowed.evaluated) == (whole.row_count, whole.evaluated)


def _day_row(day: int, value: str = "all", **overrides: Any) -> dict[str, Any]:
    start = T0 + timedelta(days=day)
    return metric_row(
        0,
        value,
        window_size="1d",
        window_start=start,
        window_end=start + timedelta(days=1),
        orders_cancelled=1,
        **overrides,
    )


def _comparable(result_json: str) -> Any:
    """GX's result without what differs run to run (ids, times, batch markers)."""
    result = json.loads(result_json)
    return [result["success"], result["statistics"], result["results"]]


@pytest.mark.parametrize("failing", [False, True], ids=["passing", "failing"])
def test_the_gx_memos_leave_gx_results_as_they_were(failing: bool) -> None:
    """quality.gx_memo takes ~60% off a validation; GX must say exactly what it said."""
    assert memo_installed()  # the pinned GX is the one the memo was checked against
    rows = [_day_row(d, v) for d in range(3) for v in ("all", "DE", "FR")]
    if failing:
        rows += [
            _day_row(4, on_time_rate=1.3),  # metrics: out of range (critical)
            _day_row(5, "NL", orders_on_time=11),  # facts: more kept than promised
            metric_row(2, health_index=None),
        ]
    schema = pa.schema([HEALTH_METRICS_STAGING.schema.field(c) for c in METRIC_COLUMNS])
    table = pa.Table.from_pylist(rows, schema=schema)
    batch = as_gate_batch(table, pa.array([3] * len(rows), pa.int64()))
    facts = fulfilment_facts(batch, carry=["staging_version"])
    assert facts.num_rows == (11 if failing else 9)  # the day-long rows
    for suite, rows_of in ((SUITE, batch), (FULFILMENT_SUITE, facts)):
        gate = load_gate(suite)
        frame = rows_of.to_pandas()
        # The volume bounds change with the history: batches like this one (in
        # bounds), then empty ones (at most 1 row now: too many).  The memo
        # runs twice per history, so the second run reuses its graphs.
        for history in ([len(rows)] * 5, [0] * 5):
            said = []
            for memo in (False, True, True, False):
                gate.memo = memo
                try:
                    verdict = gate.validate(frame, history)
                finally:
                    gate.memo = True
                said.append((verdict.outcome, verdict.failed, _comparable(verdict.result_json)))
            assert said[1] == said[2] == said[0] == said[3], suite
            assert (said[0][0] == "quarantined") is failing, suite
            too_many = any("row_count" in f.expectation for f in said[0][1])
            assert too_many is (suite == SUITE and history[0] == 0), suite


def test_a_validation_is_what_gx_would_run_and_keeps_nothing_in_the_context() -> None:
    """The gate skips GX's results store (a dict that grew by ~25 KB per run)."""
    rows = [_day_row(d, v) for d in range(3) for v in ("all", "DE")] + [
        _day_row(4, on_time_rate=1.3)
    ]
    schema = pa.schema([HEALTH_METRICS_STAGING.schema.field(c) for c in METRIC_COLUMNS])
    frame = pa.Table.from_pylist(rows, schema=schema).to_pandas()
    gate = load_gate(SUITE)
    store = gate.context.validation_results_store
    before = len(store.list_keys())
    ours = gate._run(frame, gate.parameters([]), "SUMMARY")
    assert len(store.list_keys()) == before
    with warnings.catch_warnings():  # as QualityGate._run does: pandas deprecations in GX
        warnings.simplefilter("ignore")
        theirs = gate._definition.run(
            batch_parameters={"dataframe": frame},
            expectation_parameters=gate.parameters([]),
            result_format="SUMMARY",
        )
    mine, gx_said = (json.loads(json.dumps(r.to_json_dict(), default=str)) for r in (ours, theirs))
    assert _comparable(json.dumps(mine)) == _comparable(json.dumps(gx_said))
    assert not mine["success"]
    assert mine["meta"].keys() == gx_said["meta"].keys()
    for key in ("validation_id", "checkpoint_id", "batch_parameters", "active_batch_definition"):
        assert mine["meta"].get(key) == gx_said["meta"].get(key), key


def test_a_crash_between_publication_and_run_record_is_completed_once(lakehouse: Path) -> None:
    stage(lakehouse, [metric_row(8)], offset=60)
    publisher = Publisher(str(lakehouse))
    first, last = publisher.pending() or (0, 0)
    batch = publisher.changed_rows(first, last)
    # Simulate the crash: the publication committed, the run record did not.
    from lakehouse.publication import _with_columns

    extra = {
        "validation_run_id": f"vr-health_metrics@{first}-{last}",
        "quality_status": "passed",
        "quality_warnings": None,
    }
    publisher.published.merge_once(
        _with_columns(batch, extra, HEALTH_METRICS),
        stream=publisher.stream,
        version=last,
        newer_column="staging_version",
    )
    stage(lakehouse, [metric_row(9)], offset=70)  # more staged before the restart
    restarted = Publisher(str(lakehouse))
    done = restarted.run_all()
    ranges = [(r.first_version, r.last_version) for r in done]
    assert ranges == [(first, last), (last + 1, last + 1)]
    assert len(runs(lakehouse)) == 3
    assert len(published(lakehouse)) == 5


def test_a_gate_far_behind_still_reads_every_commit_it_has_not_gated(lakehouse: Path) -> None:
    stage(lakehouse, [metric_row(6), metric_row(7, "EU")], offset=40)
    stage(lakehouse, [metric_row(6, on_time_rate=0.8)], offset=50)
    # The gate fell behind by more than the file retention and the writers
    # vacuumed: staging is a log, so the commits it has not gated are still
    # in the table and their files stay.
    staging = DeltaTable(table_uri(str(lakehouse), HEALTH_METRICS_STAGING))
    staging.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False, full=True)
    (run,) = Publisher(str(lakehouse)).run_all()
    assert run.outcome == "passed"
    assert run.row_count == 2  # the newest row of each key the two commits staged
    rows = published(lakehouse)
    assert len(rows) == 5
    assert rows[(T0 + timedelta(hours=6), "all")]["on_time_rate"] == 0.8
    hours = {(0, "all"), (0, "EU"), (1, "all"), (6, "all"), (7, "EU")}  # the fixture's and these
    assert set(rows) == {(T0 + timedelta(hours=h), value) for h, value in hours}
    assert Publisher(str(lakehouse)).run_all() == []  # and it moves on from there


def test_unreadable_staging_commits_stop_the_gate_with_a_clear_error(lakehouse: Path) -> None:
    stage(lakehouse, [metric_row(6)], offset=40)
    for data in Path(table_uri(str(lakehouse), HEALTH_METRICS_STAGING)).rglob("*.parquet"):
        data.unlink()  # damaged outside the pipeline
    with pytest.raises(StagingUnreadableError, match=r"commits 2\.\.2 is unreadable"):
        Publisher(str(lakehouse)).run_all()


def small_segments(root: Path) -> DeltaWriter:
    """A staging writer whose log segments hold two commits."""
    spec = msgspec.structs.replace(HEALTH_METRICS_STAGING, log_segment_commits=2)
    return DeltaWriter(str(root), spec)


def test_the_gate_drops_the_staging_segments_it_has_gated(tmp_path: Path) -> None:
    writer = small_segments(tmp_path)
    publisher = Publisher(str(tmp_path))
    publisher.staging = writer
    live = []
    for i in range(7):
        rows = [metric_row(i % 3, on_time_rate=0.5 + i / 100), metric_row(10 + i)]
        writer.upsert([Chunk({"orders/0": i}, rows)])
        publisher.run_all()
        live.append(sorted(set(read_table(str(tmp_path), writer.spec)["log_segment"].to_pylist())))
    # Versions 1..7 (and a DELETE after every second gate run): the table
    # only ever holds the segment of the version gated last and newer ones.
    history = DeltaTable(table_uri(str(tmp_path), writer.spec)).history()
    assert sum(h["operation"] == "DELETE" for h in history) >= 2
    assert all(len(segments) <= 2 for segments in live)
    # Every commit was gated once, DELETE commits skipped, nothing lost.
    assert len(runs(tmp_path)) == 7
    rows = published(tmp_path)
    assert len(rows) == 3 + 7
    assert rows[(T0, "all")]["on_time_rate"] == 0.56  # commit 6 (i = 6) was the last for hour 0
    assert read_log(str(tmp_path), writer.spec).num_rows < 10  # only the live segments' rows


def test_a_prune_never_drops_rows_a_slow_writer_added_to_its_segments(tmp_path: Path) -> None:
    writer = small_segments(tmp_path)
    for i in range(5):  # versions 1..5 in segments 0, 1, 1, 2, 2
        writer.upsert([Chunk({"orders/0": i}, [metric_row(i)])])
    # A writer that read version 2 commits only now, into segment 1.
    slow = pa.Table.from_pylist([metric_row(20, log_segment=1)], schema=writer.spec.schema)
    write_deltalake(writer.table(), slow, mode="append")
    assert writer.prune_log(5) == 0  # the DELETE as of version 5 conflicts with it
    assert 1 in read_table(str(tmp_path), writer.spec)["log_segment"].to_pylist()
    assert writer.prune_log(6) == 6  # once it is gated too, segments 0-2 go: all six rows
