"""The exactly-once Delta writer on real Delta tables in tmp_path."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from lakehouse.reader import read_table
from lakehouse.tables import DEAD_LETTER, ORDER_LIFECYCLE, TableSpec, table_uri
from lakehouse.writer import Chunk, DeltaWriter, LakehouseLayoutError, check_layouts

KV = TableSpec(
    path="test/kv",
    merge_keys=("k",),
    schema=pa.schema([pa.field("k", pa.string(), False), pa.field("v", pa.int64())]),
)


def dead_row(partition: int, offset: int) -> dict:
    return {
        "topic": "t",
        "partition": partition,
        "offset": offset,
        "key": b"k",
        "value": b"v",
        "reason": "malformed_json",
        "message": "bad",
        "field": None,
        "expected": None,
        "got": None,
    }


def test_append_skips_rows_already_committed(tmp_path: Path) -> None:
    root = str(tmp_path)
    writer = DeltaWriter(root, DEAD_LETTER)
    assert writer.append([dead_row(0, 0), dead_row(0, 1), dead_row(1, 0)]) == 3
    # A replay after a crash resends overlapping rows: only new offsets land.
    fresh = DeltaWriter(root, DEAD_LETTER)
    assert fresh.append([dead_row(0, 1), dead_row(0, 2), dead_row(1, 0)]) == 1
    assert fresh.append([dead_row(0, 2)]) == 0
    table = DeltaTable(table_uri(root, DEAD_LETTER))
    rows = sorted((r["partition"], r["offset"]) for r in read_table(root, DEAD_LETTER).to_pylist())
    assert rows == [(0, 0), (0, 1), (0, 2), (1, 0)]
    assert table.transaction_version(fresh.app_id("t/0")) == 2
    assert table.transaction_version(fresh.app_id("t/1")) == 0


def test_every_commit_carries_app_transactions(tmp_path: Path) -> None:
    writer = DeltaWriter(str(tmp_path), DEAD_LETTER, pipeline_id="p1")
    writer.append([dead_row(3, 41)])
    table = DeltaTable(writer.uri)
    assert table.transaction_version("p1:bronze/dead_letter:t/3") == 41
    assert table.transaction_version("other:bronze/dead_letter:t/3") is None


def test_upsert_is_keyed_and_skips_dominated_chunks(tmp_path: Path) -> None:
    writer = DeltaWriter(str(tmp_path), KV)
    writer.upsert([Chunk({"s/0": 5}, [{"k": "a", "v": 1}, {"k": "b", "v": 1}])])
    writer.upsert(
        [Chunk({"s/0": 9}, [{"k": "a", "v": 2}]), Chunk({"s/0": 12}, [{"k": "a", "v": 3}])]
    )
    # Replaying an older state (dominated progress) must not regress the table.
    replay = DeltaWriter(str(tmp_path), KV)
    assert replay.upsert([Chunk({"s/0": 9}, [{"k": "a", "v": 2}])]) == 0
    # A chunk that moves any stream forward is applied.
    assert replay.upsert([Chunk({"s/0": 12, "s/1": 0}, [{"k": "c", "v": 7}])]) == 1
    rows = {r["k"]: r["v"] for r in read_table(str(tmp_path), KV).to_pylist()}
    assert rows == {"a": 3, "b": 1, "c": 7}


def test_a_restate_chunk_is_written_at_its_own_progress_but_never_over_a_newer_state(
    tmp_path: Path,
) -> None:
    """Rows held back from a committed state (the window step catching up) still land."""
    writer = DeltaWriter(str(tmp_path), KV)
    writer.upsert([Chunk({"s/0": 5}, [{"k": "a", "v": 1}])])
    # Same progress: a plain chunk is a replay, a restate chunk is not.
    assert writer.upsert([Chunk({"s/0": 5}, [{"k": "b", "v": 1}])]) == 0
    assert writer.upsert([Chunk({"s/0": 5}, [{"k": "b", "v": 2}], restate=True)]) == 1
    # In one commit after the chunk it was held back from.
    both = [Chunk({"s/0": 6}, [{"k": "a", "v": 3}]), Chunk({"s/0": 6}, [{"k": "c", "v": 1}], True)]
    assert writer.upsert(both) == 2
    # Behind the table (a replay after a restart): dropped.
    assert writer.upsert([Chunk({"s/0": 5}, [{"k": "a", "v": 0}], restate=True)]) == 0
    rows = {r["k"]: r["v"] for r in read_table(str(tmp_path), KV).to_pylist()}
    assert rows == {"a": 3, "b": 2, "c": 1}
    assert DeltaTable(writer.uri).transaction_version(writer.app_id("s/0")) == 6


STAMPED = TableSpec(
    path="test/stamped",
    merge_keys=("k",),
    schema=pa.schema(
        [
            pa.field("k", pa.string(), False),
            pa.field("at", pa.timestamp("us", tz="UTC")),
            pa.field("v", pa.int64()),
        ]
    ),
)


def test_column_chunks_merge_like_row_chunks_and_the_newest_row_per_key_wins(
    tmp_path: Path,
) -> None:
    """The window step emits columns with times as integer us; rows and columns mix."""
    at = datetime(2026, 11, 2, 8, 30, tzinfo=UTC)
    at_us = int(at.timestamp()) * 1_000_000
    writer = DeltaWriter(str(tmp_path), STAMPED)
    merged = writer.upsert(
        [
            Chunk({"s/0": 1}, {"k": ["a", "b", "a"], "at": [at_us, at_us, at_us], "v": [1, 2, 3]}),
            Chunk({"s/0": 2}, [{"k": "b", "at": at, "v": 4}]),
            Chunk({"s/0": 3}, {"k": ["c"], "at": [None], "v": [5]}),
        ]
    )
    assert merged == 3
    rows = {r["k"]: (r["at"], r["v"]) for r in read_table(str(tmp_path), STAMPED).to_pylist()}
    assert rows == {"a": (at, 3), "b": (at, 4), "c": (None, 5)}


def test_tables_are_created_with_their_schema(tmp_path: Path) -> None:
    writer = DeltaWriter(str(tmp_path), ORDER_LIFECYCLE)
    table = writer.table()
    assert table.schema().to_arrow().names == ORDER_LIFECYCLE.schema.names
    assert read_table(str(tmp_path), ORDER_LIFECYCLE).num_rows == 0


def test_millisecond_timestamps_survive_a_round_trip(tmp_path: Path) -> None:
    spec = TableSpec(
        path="test/ts",
        schema=pa.schema(
            [
                pa.field("topic", pa.string()),
                pa.field("partition", pa.int32()),
                pa.field("offset", pa.int64()),
                pa.field("at", pa.timestamp("us", tz="UTC")),
            ]
        ),
    )
    moment = datetime(2026, 11, 2, 8, 0, 0, 123000, tzinfo=UTC)
    DeltaWriter(str(tmp_path), spec).append(
        [{"topic": "t", "partition": 0, "offset": 0, "at": moment}]
    )
    assert read_table(str(tmp_path), spec)["at"][0].as_py() == moment


def test_writer_compacts_small_files_without_changing_data(tmp_path: Path) -> None:
    """Every ``compact_every`` commits the writer bin-packs the small files."""
    import msgspec

    root = str(tmp_path)
    spec = msgspec.structs.replace(DEAD_LETTER, compact_every=4)
    writer = DeltaWriter(root, spec)
    for offset in range(3):
        writer.append([dead_row(0, offset)])
    table = DeltaTable(table_uri(root, spec))
    assert len(table.file_uris()) == 3  # one small file per commit so far
    writer.append([dead_row(1, 0)])  # the 4th commit: then compaction
    table = DeltaTable(table_uri(root, spec))
    assert len(table.file_uris()) == 1
    assert table.history(1)[0]["operation"] == "OPTIMIZE"
    rows = sorted((r["partition"], r["offset"]) for r in read_table(root, spec).to_pylist())
    assert rows == [(0, 0), (0, 1), (0, 2), (1, 0)]
    # The exactly-once bookkeeping survives it: replays are still skipped.
    assert table.transaction_version(writer.app_id("t/0")) == 2
    assert DeltaWriter(root, spec).append([dead_row(0, 2), dead_row(1, 0)]) == 0


def _files_on_disk(uri: str) -> set[str]:
    """Data and change-feed files under a table (everything but its log)."""
    return {
        str(path.relative_to(uri))
        for path in Path(uri).rglob("*.parquet")
        if "_delta_log" not in path.parts
    }


def test_tables_keep_left_files_for_the_configured_retention(tmp_path: Path) -> None:
    writer = DeltaWriter(str(tmp_path), KV)
    writer.table()
    configuration = DeltaTable(writer.uri).metadata().configuration
    assert configuration["delta.deletedFileRetentionDuration"] == "interval 24 hours"


def test_writer_vacuums_files_a_merge_left_after_the_retention(tmp_path: Path) -> None:
    """Every ``vacuum_every`` commits the writer deletes rewritten and change-feed files."""
    import msgspec

    spec = msgspec.structs.replace(
        KV,
        vacuum_every=3,
        # Retention 0: every file that left the table is due (the default is a day).
        configuration={
            "delta.enableChangeDataFeed": "true",
            "delta.deletedFileRetentionDuration": "interval 0 hours",
        },
    )
    writer = DeltaWriter(str(tmp_path), spec)
    writer.upsert([Chunk({"t/0": 0}, [{"k": "a", "v": 1}, {"k": "b", "v": 1}])])
    writer.upsert([Chunk({"t/0": 1}, [{"k": "a", "v": 2}])])
    live = {
        str(Path(u.removeprefix("file://")).relative_to(writer.uri))
        for u in writer.table().file_uris()
    }
    left = _files_on_disk(writer.uri) - live
    assert left and any(f.startswith("_change_data") for f in left)  # rewritten + change feed
    writer.upsert([Chunk({"t/0": 2}, [{"k": "b", "v": 3}])])  # the 3rd commit: then vacuum
    table = DeltaTable(writer.uri)
    live = {str(Path(u.removeprefix("file://")).relative_to(writer.uri)) for u in table.file_uris()}
    assert _files_on_disk(writer.uri) == live
    assert [h["operation"] for h in table.history(2)] == ["VACUUM END", "VACUUM START"]
    assert sorted((r["k"], r["v"]) for r in read_table(str(tmp_path), spec).to_pylist()) == [
        ("a", 2),
        ("b", 3),
    ]
    # The exactly-once bookkeeping survives it.
    assert DeltaWriter(str(tmp_path), spec).upsert([Chunk({"t/0": 2}, [{"k": "b", "v": 9}])]) == 0


DAILY = TableSpec(
    path="test/daily",
    merge_keys=("k", "at"),
    partition_by=("day",),
    day_columns={"day": "at"},
    schema=pa.schema(
        [
            pa.field("k", pa.string(), False),
            pa.field("at", pa.timestamp("us", tz="UTC"), False),
            pa.field("v", pa.int64()),
            pa.field("day", pa.date32()),
        ]
    ),
)


def _daily(k: str, day: int, hour: int, v: int) -> dict:
    return {"k": k, "at": datetime(2026, 11, day, hour, tzinfo=UTC), "v": v}


def test_day_partitioned_merge_rewrites_only_the_days_it_touches(tmp_path: Path) -> None:
    """The writer derives the day column, and a MERGE leaves other days' files alone."""
    writer = DeltaWriter(str(tmp_path), DAILY)
    rows = [_daily(k, day, 23, 1) for k in "abc" for day in (1, 2, 3)]
    writer.upsert([Chunk({"t/0": 0}, rows)])
    before = set(DeltaTable(writer.uri).file_uris())
    writer.upsert([Chunk({"t/0": 1}, [_daily("a", 3, 23, 7), _daily("z", 3, 1, 9)])])
    after = set(DeltaTable(writer.uri).file_uris())
    assert len(before - after) == 1  # only day 3's file was rewritten
    assert all("day=2026-11-03" in f for f in after - before)
    got = {(r["k"], r["day"].day, r["v"]) for r in read_table(str(tmp_path), DAILY).to_pylist()}
    assert ("a", 3, 7) in got and ("z", 3, 9) in got and ("a", 1, 1) in got
    assert len(got) == 10  # 9 + one new key; the merge replaced, not duplicated


def test_a_merge_names_the_partitions_it_reads_and_quotes_their_values(tmp_path: Path) -> None:
    """Literal partition filters prune the MERGE's scan; they must not change its result."""
    spec = TableSpec(
        path="test/by_label",
        merge_keys=("k",),
        partition_by=("label",),
        schema=pa.schema(
            [
                pa.field("k", pa.string(), False),
                pa.field("label", pa.string()),
                pa.field("v", pa.int64()),
            ]
        ),
    )
    writer = DeltaWriter(str(tmp_path), spec)
    first = [{"k": "a", "label": "o'clock", "v": 1}, {"k": "b", "label": "noon", "v": 1}]
    writer.upsert([Chunk({"t/0": 0}, first)])
    second = [{"k": "a", "label": "o'clock", "v": 2}, {"k": "c", "label": None, "v": 1}]
    predicate = writer._merge_predicate(("k",), writer.to_arrow(second))
    assert "t.label IN" not in predicate  # a null partition value: no literal filter
    predicate = writer._merge_predicate(("k",), writer.to_arrow(second[:1]))
    assert predicate.endswith("t.label IN ('o''clock')")
    writer.upsert([Chunk({"t/0": 1}, second[:1])])
    writer.upsert([Chunk({"t/0": 2}, second[1:])])
    rows = sorted((r["k"], r["label"], r["v"]) for r in read_table(str(tmp_path), spec).to_pylist())
    assert rows == [("a", "o'clock", 2), ("b", "noon", 1), ("c", None, 1)]


def test_a_table_laid_out_by_another_version_is_refused(tmp_path: Path) -> None:
    DeltaWriter(str(tmp_path), KV).upsert([Chunk({"t/0": 0}, [{"k": "a", "v": 1}])])
    moved = TableSpec(path=KV.path, merge_keys=KV.merge_keys, schema=KV.schema, partition_by=("k",))
    with pytest.raises(LakehouseLayoutError, match="partitioned by \\[\\], this version writes"):
        DeltaWriter(str(tmp_path), moved).table()
    with pytest.raises(LakehouseLayoutError, match="re-create the lakehouse"):
        check_layouts(str(tmp_path), [DAILY, moved])  # DAILY does not exist: skipped
    check_layouts(str(tmp_path), [KV, DAILY])
