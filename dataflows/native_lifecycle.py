"""The native twin of the ``silver/order_lifecycle`` rows: written in Rust into Arrow buffers.

The Python rows (:class:`~dataflows.twin.PyLifecycleRows`) stay the
reference, and :data:`NATIVE_TWIN_OF` guards the twin against a changed row.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import cache
from typing import Any

import pyarrow as pa

from dataflows import twin
from dataflows.native_core import arrow_arrays, core_name, fingerprint, installed, still_checked
from dataflows.twin import STAGE_COLUMN_NAMES, LifecycleColumns, LifecycleRows, PyLifecycleRows

__all__ = ["NATIVE_TWIN_OF", "lifecycle_maker", "twin_fingerprint"]

#: The fingerprint (:func:`twin_fingerprint`) of ``dataflows/twin.py`` that
#: ``native/src/lifecycle.rs`` writes the rows of; as for the facts
#: (:data:`~dataflows.native_facts.NATIVE_FACTS_OF`), a change there puts the
#: rows back in Python until ``tests/unit/test_native_lifecycle.py`` checks
#: the twin and names the new value.
NATIVE_TWIN_OF = "cfe88c09724333f2"


def twin_fingerprint() -> str:
    """A hash of ``dataflows/twin.py`` (the lifecycle row), comments and layout aside."""
    return fingerprint(inspect.getsource(twin))


@cache
def _native_twin_current() -> bool:
    return still_checked(
        twin_fingerprint,
        NATIVE_TWIN_OF,
        "the lifecycle row in dataflows/twin.py changed since native/src/lifecycle.rs was "
        "checked against it: lifecycle rows are written in Python (slower) until "
        "tests/unit/test_native_lifecycle.py passes and NATIVE_TWIN_OF is updated",
    )


def lifecycle_maker(core: str | None = None) -> Callable[[], LifecycleRows]:
    """A maker of empty lifecycle-row collectors (:class:`~dataflows.twin.LifecycleRows`).

    The native collector reads each view's fields in Rust into Arrow buffers;
    the Python one (:class:`~dataflows.twin.PyLifecycleRows`, the reference)
    runs with the Python core, or when ``dataflows/twin.py`` changed since
    the native rows were checked against it (:data:`NATIVE_TWIN_OF`).
    """
    core = core or core_name()
    if core == "python" or not _native_twin_current():
        return PyLifecycleRows
    native = installed()
    from lakehouse.tables import ORDER_LIFECYCLE  # imports this package's modules

    types = {field.name: field.type for field in ORDER_LIFECYCLE.schema}
    return lambda: _NativeLifecycleRows(
        native.LifecycleRows(list(STAGE_COLUMN_NAMES), twin.lifecycle_texts), types
    )


class _NativeLifecycleRows:
    """``orderhealth_native.LifecycleRows``, its buffers wrapped as Arrow arrays."""

    __slots__ = ("_rows", "_types", "add")

    def __init__(self, rows: Any, types: dict[str, pa.DataType]) -> None:
        self._rows = rows
        self._types = types
        self.add = rows.add

    def columns(self) -> LifecycleColumns:
        size = len(self._rows)
        if not size:
            return {}
        return arrow_arrays(self._rows.take(), size, self._types)
