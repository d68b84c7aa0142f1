"""Outlier verdicts are kept per order, and state from before verdicts still loads.

The stream judges each finished stage once (``_Order.verdicts``).  Snapshots
written before that kept, instead, the baseline each stage was judged
against; a processor restored from one must turn them into the same verdicts
and go on writing the same rows.
"""

from __future__ import annotations

import pickle

from dataflows.lifecycle import Baseline, FlagKind
from dataflows.partition_processor import PartitionProcessor, SourcedEvent
from dataflows.settings import HealthSettings
from dataflows.twin import lifecycle_rows
from orderhealth.generator import GeneratorConfig, generate_messages
from schemas.decode import EventDecoder, Rejection

SETTINGS = HealthSettings.load()


def _events(count: int) -> list[SourcedEvent]:
    decoder = EventDecoder()
    out = []
    for offset, (key, value) in enumerate(generate_messages(GeneratorConfig(events=count))):
        event = decoder.decode(value, key, require_key=True)
        if not isinstance(event, Rejection):
            out.append(SourcedEvent(event, "t", 0, offset))
    return out


def _as_legacy(processor: PartitionProcessor) -> PartitionProcessor:
    """The processor as a snapshot from before verdicts would restore it."""
    old = pickle.loads(pickle.dumps(processor))
    for order in old.orders.values():
        # What the memo held then: the baseline each stage was judged against.
        legacy = {key: processor.history.baseline(*key) for key in order.verdicts}
        order.verdicts = legacy
    assert any(isinstance(v, Baseline) for o in old.orders.values() for v in o.verdicts.values())
    restored: PartitionProcessor = pickle.loads(pickle.dumps(old))
    return restored


def test_old_snapshots_turn_their_baselines_into_the_same_verdicts() -> None:
    events = _events(40_000)
    half = len(events) // 2
    processor = PartitionProcessor("t", 0, SETTINGS)
    for start in range(0, half, 2_000):
        processor.process(events[start : min(start + 2_000, half)])
    verdicts = {order_id: dict(order.verdicts) for order_id, order in processor.orders.items()}
    flags = [v for memo in verdicts.values() for v in memo.values() if v is not None]
    # The data must exercise both verdicts, or the test shows nothing.
    assert flags and all(f.kind == FlagKind.OUTLIER_DWELL for f in flags)
    assert any(None in memo.values() for memo in verdicts.values())

    legacy = _as_legacy(processor)
    assert {order_id: order.verdicts for order_id, order in legacy.orders.items()} == verdicts

    for start in range(half, len(events), 2_000):
        batch = events[start : start + 2_000]
        ours, theirs = processor.process(batch), legacy.process(batch)
        assert lifecycle_rows(ours.lifecycle) == lifecycle_rows(theirs.lifecycle)
        assert ours.window_delta.vectors == theirs.window_delta.vectors
        assert ours.window_delta.kept == theirs.window_delta.kept
