"""The decode step's output as the flow hands it to Bytewax: one item per Kafka partition."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from dataflows.flow import is_partition_events, partition_batches
from dataflows.partition_processor import SourcedEvent
from tests.factories import at, event


def _sourced(topic: str, partition: int, offset: int) -> SourcedEvent:
    return SourcedEvent(event("ORDER_CREATED", f"O{offset}", at(offset)), topic, partition, offset)


@given(
    st.lists(
        st.one_of(
            st.tuples(st.sampled_from(["orders", "returns"]), st.integers(0, 3)),
            st.none(),  # a dead-letter row
        ),
        max_size=40,
    )
)
def test_each_partition_s_events_become_one_keyed_item_in_offset_order(
    plan: list[tuple[str, int] | None],
) -> None:
    decoded: list[SourcedEvent | dict[str, Any]] = [
        {"reason": "malformed", "offset": offset}
        if where is None
        else _sourced(where[0], where[1], offset)
        for offset, where in enumerate(plan)
    ]
    items = partition_batches(decoded)

    dead = [item for item in items if not is_partition_events(item)]
    assert dead == [item for item in decoded if isinstance(item, dict)]
    batches = [item for item in items if is_partition_events(item)]
    keys = [key for key, _ in batches]
    assert len(keys) == len(set(keys))  # one item per partition
    for key, events in batches:
        assert events  # never an empty batch
        assert {f"{e.topic}/{e.partition}" for e in events} == {key}
        where = (events[0].topic, events[0].partition)
        expected = [
            e for e in decoded if isinstance(e, SourcedEvent) and (e.topic, e.partition) == where
        ]
        assert events == expected  # all of them, in the order they came
