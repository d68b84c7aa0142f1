"""Reading every dimension at a moment at once gives what each reader gives."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflows import dimensions
from dataflows.dimensions import DIMENSION_READERS, moment_reader
from dataflows.lifecycle import OrderView, derive_view, sort_events
from dataflows.settings import HealthSettings
from schemas.events import OrderEvent
from tests.factories import at, event
from tests.strategies import lifecycle

SETTINGS = HealthSettings.load()


def _moments(view: OrderView) -> list[int]:
    """Every moment a reader's answer can turn at, and either side of it."""
    turns = [*view.event_times]
    if view.created_us is not None:
        turns.append(view.created_us)
    return sorted({t + d for t in turns for d in (-1, 0, 1)})


@settings(max_examples=300, deadline=None)
@given(events=lifecycle("A"), created=st.booleans())
def test_moment_reader_reads_what_each_reader_reads(
    events: list[OrderEvent], created: bool
) -> None:
    if not created:  # ORDER_CREATED not seen yet: attributes are unknown
        events = events[1:] or events
    view = derive_view("A", sort_events(events), SETTINGS, None)
    read = moment_reader(list(DIMENSION_READERS), view)
    for at_us in _moments(view):
        expected = tuple(reader(view, at_us) for reader in DIMENSION_READERS.values())
        assert read(at_us) == expected


def test_a_plain_callable_reader_is_called_at_each_moment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A plugin's dimension need not be one of the declared kinds."""
    readers = {**DIMENSION_READERS, "hour_parity": lambda _v, at: str(at // 3_600_000_000 % 2)}
    monkeypatch.setattr(dimensions, "DIMENSION_READERS", readers)
    events = [
        event("ORDER_CREATED", "A", at(1), region="DE"),
        event("ROUTED", "A", at(2), warehouse_id="W1"),
        event("SHIPPED", "A", at(5), carrier_id="UPS"),
    ]
    view = derive_view("A", sort_events(events), SETTINGS, None)
    read = moment_reader(["all", "hour_parity", "region"], view)
    for at_us in _moments(view):
        assert read(at_us) == (
            "all",
            str(at_us // 3_600_000_000 % 2),
            readers["region"](view, at_us),
        )
