"""``orderhealth_native.to_us`` equals :func:`dataflows.timeutil.to_us`, result and error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflows import native_times, timeutil
from dataflows.native_core import native_module
from dataflows.native_times import NATIVE_TIMES_OF, times_fingerprint, to_us_of
from dataflows.timeutil import to_us
from tests.twin_guard import unchecked_twin

native = native_module()
needs_native = pytest.mark.skipif(native is None, reason="orderhealth_native is not built")

#: Fixed zones as msgspec decodes them, and odd ones Python allows
#: (offsets with seconds and microseconds, up to a day either way).
offsets = st.timedeltas(
    min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59)
)
zones = st.one_of(
    st.just(UTC),
    offsets.map(timezone),
    st.timezones(),  # zoneinfo: offsets that depend on the time, and its fold
)


def _same(moment: Any) -> None:
    assert native is not None
    try:
        expected = to_us(moment)
    except Exception as error:
        with pytest.raises(type(error)) as raised:
            native.to_us(moment)
        assert str(raised.value) == str(error)
        return
    assert native.to_us(moment) == expected


@needs_native
@settings(max_examples=500, deadline=None)
@given(
    moment=st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=zones
    ),
    fold=st.sampled_from([0, 1]),
)
def test_the_native_conversion_equals_the_definition(moment: datetime, fold: int) -> None:
    _same(moment.replace(fold=fold))


class _Shifted(datetime):
    """A subclass whose subtraction is its own: converted by the definition."""

    def __sub__(self, other: Any) -> Any:
        return super().__sub__(other) + timedelta(microseconds=1)


class _NoOffset(tzinfo):
    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return None


@needs_native
@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 11, 28, 12, 0, 0, 1, tzinfo=UTC),
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2024, 2, 29, 0, 30, tzinfo=timezone(timedelta(hours=5, minutes=45))),
        datetime(1, 1, 1, 12, tzinfo=timezone(timedelta(hours=-3))),
        datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=timezone(timedelta(seconds=1))),
        _Shifted(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 1, 1),  # naive: the definition's TypeError
        datetime(2026, 1, 1, tzinfo=_NoOffset()),  # no offset: as naive
        "2026-01-01T00:00:00Z",
        None,
        12,
    ],
)
def test_what_the_native_conversion_leaves_to_the_definition_is_the_definitions(
    moment: Any,
) -> None:
    _same(moment)


@needs_native
def test_exact_aware_datetimes_are_converted_without_the_definition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fast path is taken (equality alone would not show a twin that always falls back)."""
    assert native is not None
    asked: list[Any] = []

    def watched(moment: datetime) -> int:
        asked.append(moment)
        return to_us(moment)

    monkeypatch.setattr(timeutil, "to_us", watched)
    fast = [
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 1, 1, 12, 30, tzinfo=timezone(timedelta(hours=-7))),
        msgspec.json.decode(b'"2026-11-02T10:00:00.5+02:00"', type=datetime),
    ]
    for moment in fast:
        assert native.to_us(moment) == to_us(moment)
    assert asked == []
    assert native.to_us(_Shifted(2026, 1, 1, tzinfo=UTC)) == to_us(_Shifted(2026, 1, 1, tzinfo=UTC))
    assert len(asked) == 1


def test_the_native_conversion_was_checked_against_this_definition() -> None:
    """The fingerprint names the definition the equality tests above passed on."""
    assert times_fingerprint() == NATIVE_TIMES_OF, (
        "dataflows/timeutil.py changed, so event times are now converted in Python.  Make "
        "native/src/times.rs match, run this file's equality tests, then set "
        f"dataflows.native_times.NATIVE_TIMES_OF = {times_fingerprint()!r}"
    )


@needs_native
def test_a_changed_definition_converts_in_python_until_its_twin_is_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert native is not None
    assert to_us_of("native") is native.to_us
    assert to_us_of("python") is to_us
    with unchecked_twin(
        monkeypatch, native_times, "NATIVE_TIMES_OF", native_times.native_times_current
    ):
        assert to_us_of("native") is to_us
