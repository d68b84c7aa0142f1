"""Lifecycle rows handed to the writer as columns equal the same rows handed over as dicts.

The processor's columns come from the core in use (native or Python); the
dicts from :func:`~dataflows.twin.lifecycle_values`, the reference.
"""

from __future__ import annotations

from hypothesis import given, settings

from dataflows.partition_processor import PartitionProcessor, SourcedEvent
from dataflows.settings import HealthSettings
from dataflows.twin import lifecycle_columns, lifecycle_rows
from lakehouse.tables import ORDER_LIFECYCLE
from lakehouse.writer import DeltaWriter
from tests.strategies import streams

SETTINGS = HealthSettings.load()
WRITER = DeltaWriter("/nonexistent", ORDER_LIFECYCLE)  # to_arrow only: no table is opened


@settings(max_examples=60, deadline=None)
@given(streams(SETTINGS))
def test_columns_equal_rows(case: tuple[list[list[SourcedEvent]], int]) -> None:
    partitions, _seed = case
    derived = set(ORDER_LIFECYCLE.day_columns)
    for p, events in enumerate(partitions):
        processor = PartitionProcessor("t", p, SETTINGS)
        for start in range(0, len(events), 3):
            columns = processor.process(events[start : start + 3]).lifecycle
            if not columns:
                continue
            rows = lifecycle_rows(columns)
            assert set(columns) == set(ORDER_LIFECYCLE.schema.names) - derived
            assert WRITER.to_arrow(columns).equals(WRITER.to_arrow(rows))
            assert WRITER.to_arrow(lifecycle_columns(rows)).equals(WRITER.to_arrow(rows))
    assert lifecycle_columns([]) == {}
