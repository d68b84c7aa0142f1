"""The synthetic generator is deterministic and realistic enough to test with."""

from __future__ import annotations

import itertools
from collections import Counter

import msgspec
import pytest

from orderhealth.generator import SCENARIOS, GeneratorConfig, generate_messages
from schemas.decode import EventDecoder, Rejection


def test_same_seed_same_messages_and_exact_count() -> None:
    config = GeneratorConfig(events=3000, seed=11, scenario="warehouse_outage")
    first = list(generate_messages(config))
    assert first == list(generate_messages(config))
    assert len(first) == 3000
    assert first != list(generate_messages(GeneratorConfig(events=3000, seed=12)))


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_scenario_produces_valid_keyed_events(scenario: str) -> None:
    decoder = EventDecoder()
    messages = list(generate_messages(GeneratorConfig(events=15000, scenario=scenario)))
    decoded = [decoder.decode(value, key) for key, value in messages]
    assert not [d for d in decoded if isinstance(d, Rejection)]
    kinds = Counter(d.event_type.value for d in decoded if not isinstance(d, Rejection))
    assert kinds["ORDER_CREATED"] > 1000 and kinds["DELIVERED"] > 0


def test_a_live_density_stream_is_its_first_events_and_stops_building() -> None:
    """Orders that live days, created faster than their stream's span: the cut still ends.

    100,000 orders a minute, 20,000 messages: about 12 s of a live stream.
    Building rounds went on until the memory ran out while each compared
    with its own, ever later target; only the first N arrivals count.
    """
    config = GeneratorConfig(events=20000, seed=5, orders_per_minute=100_000)
    messages = list(generate_messages(config))
    assert len(messages) == 20000
    decoder = EventDecoder()
    times = sorted(
        event.event_time
        for key, value in messages
        if not isinstance(event := decoder.decode(value, key), Rejection)
    )
    assert (times[-1] - config.start).total_seconds() < 60 * 11  # the 10-minute late tail
    assert (times[int(0.99 * len(times))] - times[0]).total_seconds() < 30


def test_stream_has_duplicates_out_of_order_and_skipped_stages() -> None:
    messages = list(generate_messages(GeneratorConfig(events=20000, seed=3)))
    values = [v for _, v in messages]
    assert len(values) - len(set(values)) > 50  # duplicates
    times = [msgspec.json.decode(v)["event_time"] for v in values]
    assert sum(1 for a, b in itertools.pairwise(times) if b < a) > 100  # reordered
    per_order = Counter(msgspec.json.decode(v)["order_id"] for v in values)
    assert min(per_order.values()) < 8  # stages are skipped or not yet reached


def test_bad_fraction_mixes_in_invalid_messages() -> None:
    decoder = EventDecoder()
    messages = generate_messages(GeneratorConfig(events=5000, bad_fraction=0.01))
    rejected = [r for k, v in messages if isinstance(r := decoder.decode(v, k), Rejection)]
    assert 10 < len(rejected) < 200
    assert len({r.reason for r in rejected}) >= 4


def test_unknown_scenario_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown scenario 'mars'"):
        list(generate_messages(GeneratorConfig(scenario="mars")))
