"""The native twin of a batch's ``bronze/order_events`` rows: the table built in Rust.

The Python rows (:class:`~dataflows.bronze_rows.BronzeRows`) stay the
reference, and :data:`NATIVE_BRONZE_OF` guards the twin against a changed one.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import cache
from typing import Any

import msgspec
import pyarrow as pa

from dataflows import bronze_rows, json_text, lifecycle
from dataflows.bronze_rows import JSON_FIELDS, BronzeRows
from dataflows.native_core import arrow_arrays, core_name, fingerprint, installed, still_checked
from dataflows.native_times import to_us_of

__all__ = ["NATIVE_BRONZE_OF", "bronze_fingerprint", "bronze_maker"]

#: The fingerprint (:func:`bronze_fingerprint`) of the bronze rows that
#: ``native/src/bronze.rs`` was checked against; as for the facts
#: (:data:`~dataflows.native_facts.NATIVE_FACTS_OF`), a change puts the rows
#: back in Python until ``tests/unit/test_bronze_rows.py`` checks the twin and
#: names the new value.
NATIVE_BRONZE_OF = "add3555e630ee7f1"


def bronze_fingerprint() -> str:
    """A hash of ``dataflows/bronze_rows.py`` and ``dataflows/json_text.py``."""
    return fingerprint(inspect.getsource(bronze_rows) + inspect.getsource(json_text))


@cache
def _native_bronze_current() -> bool:
    return still_checked(
        bronze_fingerprint,
        NATIVE_BRONZE_OF,
        "the bronze rows in dataflows/bronze_rows.py or json_text.py changed since "
        "native/src/bronze.rs was checked against them: bronze rows are built in Python "
        "(slower) until tests/unit/test_bronze_rows.py passes and NATIVE_BRONZE_OF is updated",
    )


#: Arrow type of a contract column -> how the native rows fill it.
_BRONZE_KINDS = {
    pa.string(): "text",
    pa.int64(): "int",
    pa.float64(): "float",
    pa.timestamp("us", tz="UTC"): "time",
}


@cache
def _bronze_plan() -> tuple[list[tuple[str, str]], dict[type, tuple[str, list[int | None]]]] | None:
    """The contract columns with their kinds, and each event class's fields;
    None if a column has an Arrow type the native rows do not write."""
    from lakehouse.tables import BRONZE_EVENTS  # imports this package's modules
    from schemas.events import ALL_EVENT_TYPES

    schema = BRONZE_EVENTS.schema
    columns = []
    for field in list(schema)[: schema.get_field_index("topic")]:
        if field.name == "event_type":
            kind = "tag"
        elif field.name == "event_time":
            kind = "event_time"
        elif field.name in JSON_FIELDS:
            kind = "json"
        elif field.type in _BRONZE_KINDS:
            kind = _BRONZE_KINDS[field.type]
        else:
            return None
        columns.append((field.name, kind))
    classes = {
        cls: (
            lifecycle.WIRE[cls.event_type],
            [
                cls.__struct_fields__.index(name) if name in cls.__struct_fields__ else None
                for name, _ in columns
            ],
        )
        for cls in ALL_EVENT_TYPES.values()
    }
    return columns, classes


def bronze_maker(core: str | None = None) -> Callable[[str, int], BronzeRows]:
    """A maker of one batch's bronze rows (``(topic, partition) -> rows``), of the chosen core.

    Both collect the same lists as the partition step goes; the native rows
    build their table in Rust, reading each event's contract fields into
    Arrow buffers in offset order.  The Python ones (:class:`BronzeRows`, the
    reference) run with the Python core, or when ``dataflows/bronze_rows.py``
    changed since the twin was checked (:data:`NATIVE_BRONZE_OF`).
    """
    core = core or core_name()
    plan = None if core == "python" or not _native_bronze_current() else _bronze_plan()
    if plan is None:
        return BronzeRows
    from lakehouse.tables import BRONZE_EVENTS

    columns, classes = plan
    schema = BRONZE_EVENTS.schema
    kernel = installed().BronzePlan(
        columns,
        classes,
        schema.names[len(columns) :],
        to_us_of(core),
        json_text.json_text,
        msgspec.structs.astuple,
    )
    return lambda topic, partition: _NativeBronzeRows(topic, partition, kernel, schema)


def _reference_rows(state: tuple[Any, ...]) -> BronzeRows:
    """Unpickle native bronze rows as the reference's (their table is the same)."""
    rows = BronzeRows(state[0], state[1])
    (_, _, rows._events, rows.offsets, rows.duplicate, rows.late, rows.warnings, rows.times) = state
    return rows


class _NativeBronzeRows(BronzeRows):
    """The reference's lists, with the table built by ``orderhealth_native.BronzePlan``.

    Pickled (a batch crossing Bytewax processes) as the reference's rows.
    """

    __slots__ = ("_kernel", "_schema")

    def __init__(self, topic: str, partition: int, kernel: Any, schema: pa.Schema) -> None:
        super().__init__(topic, partition)
        self._kernel = kernel
        self._schema = schema

    def _lists(self) -> tuple[Any, ...]:
        """What the partition step collected (``BronzePlan.table``'s arguments)."""
        return (
            self.topic,
            self.partition,
            self._events,
            self.offsets,
            self.duplicate,
            self.late,
            self.warnings,
            self.times,
        )

    def table(self) -> pa.Table:
        size = len(self._events)
        types = {field.name: field.type for field in self._schema}
        arrays = arrow_arrays(self._kernel.table(*self._lists()), size, types)
        return pa.Table.from_arrays(list(arrays.values()), schema=self._schema)

    def __reduce__(self) -> tuple[Callable[[tuple[Any, ...]], BronzeRows], tuple[Any]]:
        return _reference_rows, (self._lists(),)
