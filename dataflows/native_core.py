"""Which core the stream runs: native (Rust) kernels or the Python reference.

Fact expansion (one fact into a row change per window size and dimension),
the window totals, deriving an order's view, reading its facts from the view,
writing its lifecycle row, the outlier baselines and the bronze rows were the
largest costs of the core in CPython.  The ``orderhealth_native`` extension
(``native/``, Rust) implements them behind the same interfaces
(:class:`~dataflows.contributions.WindowDelta`,
:class:`~dataflows.window_metrics.WindowStore`, :func:`view_maker`,
:func:`items_maker`, :func:`lifecycle_maker`, :func:`new_history`,
:func:`bronze_maker`); the Python implementations stay the reference the
tests hold it equal to.

``ORDERHEALTH_CORE`` chooses: ``native``, ``python``, or unset (native when
the extension is installed, else Python with a warning).  ``make install``
builds the extension; see ``native/README.md``.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import logging
import os
import tokenize
from collections.abc import Callable, Sequence
from functools import cache
from types import ModuleType
from typing import Any, cast

import msgspec
import pyarrow as pa

from dataflows import bronze_rows, dwell_history, json_text, lifecycle, metrics, outcome, twin
from dataflows.bronze_rows import JSON_FIELDS, BronzeRows
from dataflows.contributions import _PLAN, Delta, OrderItems, WindowDelta, order_items
from dataflows.dimensions import DIMENSION_READERS, Attribute, Constant, Timeline
from dataflows.dwell_history import DwellHistory, History
from dataflows.lifecycle import (
    SPECIAL_ROLES,
    Baseline,
    Flag,
    FlagKind,
    OrderView,
    Transition,
    derive_view,
    sla_breach_reason,
)
from dataflows.metrics import FACTS, MEASURES
from dataflows.outcome import Outcome, OutcomeStatus
from dataflows.settings import HealthSettings, OutlierSettings
from dataflows.timeutil import to_us
from dataflows.twin import STAGE_COLUMN_NAMES, LifecycleColumns, LifecycleRows, PyLifecycleRows

__all__ = [
    "CORES",
    "NATIVE_BRONZE_OF",
    "NATIVE_DWELLS_OF",
    "NATIVE_FACTS_OF",
    "NATIVE_TWIN_OF",
    "NATIVE_VIEW_OF",
    "NativeCoreMissing",
    "adopt_history",
    "bronze_fingerprint",
    "bronze_maker",
    "core_name",
    "delta_factory",
    "dwells_fingerprint",
    "facts_fingerprint",
    "items_maker",
    "lifecycle_maker",
    "native_facts",
    "native_module",
    "native_readers",
    "new_history",
    "restore_history",
    "twin_fingerprint",
    "view_fingerprint",
    "view_maker",
]

log = logging.getLogger(__name__)

CORES = ("native", "python")
_ENV = "ORDERHEALTH_CORE"


class NativeCoreMissing(RuntimeError):
    """``ORDERHEALTH_CORE=native`` but the extension is not installed."""


def native_module() -> ModuleType | None:
    """The extension module, or None when it is not installed."""
    try:
        import orderhealth_native
    except ImportError:
        return None
    return orderhealth_native


def core_name() -> str:
    """The core this process runs: ``native`` or ``python`` (see module docstring)."""
    wanted = os.environ.get(_ENV, "").strip().lower()
    if wanted and wanted not in CORES:
        raise ValueError(f"{_ENV} must be one of {', '.join(CORES)}, not {wanted!r}")
    available = native_module() is not None
    if wanted == "native" and not available:
        raise NativeCoreMissing(
            f"{_ENV}=native, but the orderhealth_native extension is not installed "
            "(make install builds it; see native/README.md)"
        )
    if wanted:
        return wanted
    if not available:
        _warn_python_fallback()
        return "python"
    return "native"


@cache
def _warn_python_fallback() -> None:
    """Once per process: every partition and the window step ask."""
    log.warning(
        "the orderhealth_native extension is not installed: running the Python core "
        "(slower; make install builds it)"
    )


def _installed() -> ModuleType:
    native = native_module()
    if native is None:
        raise NativeCoreMissing("the orderhealth_native extension is not installed")
    return native


def delta_factory(settings: HealthSettings, core: str | None = None) -> Callable[[], WindowDelta]:
    """A maker of empty window deltas for ``settings``, of the chosen core."""
    core = core or core_name()
    if core == "python":
        return lambda: Delta(settings)
    native = _installed()
    plan = native.Plan(
        len(MEASURES),
        list(settings.window_sizes),
        list(settings.dimensions),
        [
            ([(index, agg.value) for index, agg in measures], slot)
            for _fact, measures, slot in _PLAN
        ],
    )
    maker: Callable[[], WindowDelta] = lambda: native.Delta(plan)  # noqa: E731
    return maker


#: The fingerprint (:func:`facts_fingerprint`) of the built-in facts'
#: definitions that ``native/src/facts.rs`` implements.  When the facts
#: section of ``dataflows/metrics.py`` changes, the native core evaluates every
#: fact in Python (and says so) until the twin is checked against it and this
#: is updated: ``tests/unit/test_native_facts.py`` does the checking and names
#: the new value.
NATIVE_FACTS_OF = "58663f7b9ff23e68"


def facts_fingerprint() -> str:
    """A hash of the facts section of ``dataflows/metrics.py``, comments and layout aside.

    The native twin of the built-in facts must not silently keep an old
    definition: any change to a fact's stream function, a helper it calls or
    the catalogue itself changes this.
    """
    source = inspect.getsource(metrics)
    return _fingerprint(source[source.index("# -- facts --") : source.index("def _plugins(")])


#: The fingerprint (:func:`twin_fingerprint`) of ``dataflows/twin.py`` that
#: ``native/src/lifecycle.rs`` writes the rows of; as :data:`NATIVE_FACTS_OF`,
#: a change there puts the rows back in Python until
#: ``tests/unit/test_native_lifecycle.py`` checks the twin and names the new value.
NATIVE_TWIN_OF = "7ea691905c1671c5"


def twin_fingerprint() -> str:
    """A hash of ``dataflows/twin.py`` (the lifecycle row), comments and layout aside."""
    return _fingerprint(inspect.getsource(twin))


def _fingerprint(section: str) -> str:
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE}
    tokens = [
        f"{token.type}:{token.string}"
        for token in tokenize.generate_tokens(io.StringIO(section).readline)
        if token.type not in skip
    ]
    return hashlib.sha256("\n".join(tokens).encode()).hexdigest()[:16]


@cache
def _native_facts_current() -> bool:
    return _still_checked(
        facts_fingerprint,
        NATIVE_FACTS_OF,
        "the built-in facts in dataflows/metrics.py changed since native/src/facts.rs was "
        "checked against them: every fact is evaluated in Python (slower) until "
        "tests/unit/test_native_facts.py passes and NATIVE_FACTS_OF is updated",
    )


def _still_checked(fingerprint: Callable[[], str], checked: str, changed: str) -> bool:
    """Whether a native twin was checked against the Python it mirrors as it is now.

    If not, log ``changed`` (once per process: callers cache this) so that
    the slower Python path is never a silent surprise.
    """
    try:
        current = fingerprint() == checked
    except (OSError, ValueError):  # no source to read (a frozen install)
        current = False
    if not current:
        log.warning(changed)
    return current


def native_facts(settings: HealthSettings) -> Any | None:
    """The native facts (``orderhealth_native.Facts``) for ``settings``, or None.

    None when a dimension is read by anything but a plain :class:`Constant`,
    :class:`Attribute` or :class:`Timeline`.  Facts it does not know by name
    it leaves to Python (``python_facts()``).
    """
    readers = native_readers(settings)
    if readers is None:
        return None
    statuses = (OutcomeStatus.ON_TIME, OutcomeStatus.LATE, OutcomeStatus.CANCELLED)
    return _installed().Facts([fact.name for fact in FACTS], readers, statuses)


def items_maker(
    settings: HealthSettings, core: str | None = None
) -> Callable[[OrderView], OrderItems]:
    """A maker of an order's items from its view (:func:`~dataflows.contributions.order_items`).

    The native core evaluates the catalogue's built-in facts in Rust and keeps
    the items there for its delta; a fact it does not know (a plugin's, or a
    new one) is still evaluated in Python and handed in.  Every fact stays in
    Python with the Python core, with a custom dimension reader, or when the
    built-in facts changed since their twin was checked (:data:`NATIVE_FACTS_OF`).
    """
    core = core or core_name()
    kernel = None if core == "python" or not _native_facts_current() else native_facts(settings)
    if kernel is None:
        return lambda view: order_items(view, settings)
    in_python: list[int] = kernel.python_facts()
    if not in_python:
        maker: Callable[[OrderView], OrderItems] = kernel.items
        return maker
    return lambda view: kernel.items(view, order_items(view, settings, in_python))


def native_readers(settings: HealthSettings) -> list[tuple[str, str]] | None:
    """Each dimension's reader as the native facts take it, or None if one is custom."""
    out = []
    for dim in settings.dimensions:
        reader = DIMENSION_READERS[dim]
        kind = type(reader)  # exactly: a subclass may read differently
        if kind is Constant:
            out.append(("constant", cast(Constant, reader).value))
        elif kind is Attribute:
            out.append(("attribute", cast(Attribute, reader).name))
        elif kind is Timeline:
            out.append(("timeline", cast(Timeline, reader).field))
        else:
            return None
    return out


@cache
def _native_twin_current() -> bool:
    return _still_checked(
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
    native = _installed()
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
        return _arrow_arrays(self._rows.take(), size, self._types)


def _arrow_arrays(
    columns: list[tuple[str, bytes | None, bytes | None, bytes, int]],
    size: int,
    types: dict[str, pa.DataType],
) -> dict[str, pa.Array]:
    """Native column buffers ``(name, validity, offsets, values, nulls)`` as Arrow arrays."""
    out = {}
    for name, validity, offsets, values, nulls in columns:
        buffers = [None if validity is None else pa.py_buffer(validity)]
        if offsets is not None:
            buffers.append(pa.py_buffer(offsets))
        buffers.append(pa.py_buffer(values))
        out[name] = pa.Array.from_buffers(types[name], size, buffers, null_count=nulls)
    return out


#: The fingerprint (:func:`dwells_fingerprint`) of ``dataflows/dwell_history.py``
#: that ``native/src/dwells.rs`` was checked against; as :data:`NATIVE_FACTS_OF`,
#: a change there puts the history back in Python until
#: ``tests/unit/test_dwell_history.py`` checks the twin and names the new value.
NATIVE_DWELLS_OF = "399f5d76d5c0bfce"


def dwells_fingerprint() -> str:
    """A hash of ``dataflows/dwell_history.py``, comments and layout aside."""
    return _fingerprint(inspect.getsource(dwell_history))


@cache
def _native_dwells_current() -> bool:
    return _still_checked(
        dwells_fingerprint,
        NATIVE_DWELLS_OF,
        "the dwell history in dataflows/dwell_history.py changed since native/src/dwells.rs "
        "was checked against it: outlier baselines are computed in Python (slower) until "
        "tests/unit/test_dwell_history.py passes and NATIVE_DWELLS_OF is updated",
    )


def new_history(
    settings: OutlierSettings, state: dict[str, Any] | None = None, core: str | None = None
) -> History:
    """A partition's dwell history for outlier baselines, of the chosen core.

    ``state`` is a history's ``__getstate__()`` (either core's: they share the
    reference's form), to restore.  The native history keeps the buckets and
    the baselines in Rust; the Python one (:class:`DwellHistory`, the
    reference) runs with the Python core, or when ``dataflows/dwell_history.py``
    changed since the twin was checked (:data:`NATIVE_DWELLS_OF`).
    """
    if not _native_history(core):
        history = DwellHistory(settings)
        if state is not None:
            history.__setstate__({**state, "settings": settings})
        return history
    kernel = _installed().DwellHistory(settings.bucket_us, settings.history_us, Baseline)
    if state is not None:
        kernel.load(state["_buckets"], state.get("_cache", {}))
    return _NativeDwellHistory(settings, kernel)


def restore_history(state: dict[str, Any]) -> History:
    """Unpickle a native history, into the core this process runs."""
    return new_history(state["settings"], state)


def adopt_history(settings: OutlierSettings, history: History) -> History:
    """A restored ``history`` as the core this process runs, copied only if it is the other's.

    (A native one unpickles into this process's core already; a snapshot from
    before the native history holds the reference's.)
    """
    if isinstance(history, _NativeDwellHistory) == _native_history(None):
        return history
    return new_history(settings, history.__getstate__())


def _native_history(core: str | None) -> bool:
    """Whether a new history is the native one (see :func:`new_history`)."""
    return (core or core_name()) == "native" and _native_dwells_current()


class _NativeDwellHistory:
    """``orderhealth_native.DwellHistory``, pickled in the reference's form."""

    __slots__ = ("_kernel", "baseline", "evict", "replace", "settings")

    def __init__(self, settings: OutlierSettings, kernel: Any) -> None:
        self.settings = settings
        self._kernel = kernel
        # The kernel's own methods: no Python frame per call.
        self.replace: Callable[[str, tuple[Transition, ...], tuple[Transition, ...]], None] = (
            kernel.replace
        )
        self.baseline: Callable[[str, int], Baseline | None] = kernel.baseline
        self.evict: Callable[[int], None] = kernel.evict

    def __getstate__(self) -> dict[str, Any]:
        buckets, cached = self._kernel.state()
        return {"settings": self.settings, "_buckets": buckets, "_cache": cached}

    def __reduce__(self) -> tuple[Callable[[dict[str, Any]], History], tuple[dict[str, Any]]]:
        return restore_history, (self.__getstate__(),)


#: An order's view from its events in ``sort_events`` order, the watermark
#: and the events' times: ``(order_id, events, watermark_us, times) -> view``.
ViewMaker = Callable[[str, list[Any], int | None, list[int]], OrderView]

#: The fingerprint (:func:`view_fingerprint`) of the derivation that
#: ``native/src/view.rs`` was checked against; as :data:`NATIVE_FACTS_OF`, a
#: change puts the derivation back in Python until
#: ``tests/unit/test_native_view.py`` checks the twin and names the new value.
NATIVE_VIEW_OF = "08da7f195d043ee7"


def view_fingerprint() -> str:
    """A hash of the derivation: ``dataflows/lifecycle.py`` up to the outlier
    verdicts (the view, its parts and ``derive_view``) and ``dataflows/outcome.py``."""
    source = inspect.getsource(lifecycle)
    section = source[: source.index("#: (stage, dwell end time) -> the outlier verdict")]
    return _fingerprint(section + inspect.getsource(outcome))


@cache
def _native_view_current() -> bool:
    return _still_checked(
        view_fingerprint,
        NATIVE_VIEW_OF,
        "the order view's derivation in dataflows/lifecycle.py or outcome.py changed since "
        "native/src/view.rs was checked against it: views are derived in Python (slower) "
        "until tests/unit/test_native_view.py passes and NATIVE_VIEW_OF is updated",
    )


def view_maker(settings: HealthSettings, core: str | None = None) -> ViewMaker:
    """A maker of order views (:func:`~dataflows.lifecycle.derive_view`), of the chosen core.

    The native one derives in Rust and builds the same Python view; an order
    whose stages contradict each other is still derived in Python.  The
    Python definition runs with the Python core, or when the derivation
    changed since its twin was checked (:data:`NATIVE_VIEW_OF`).
    """

    def python(
        order_id: str, events: Sequence[Any], watermark_us: int | None, times: Sequence[int]
    ) -> OrderView:
        return derive_view(order_id, events, settings, watermark_us, times=times)

    core = core or core_name()
    if core == "python" or not _native_view_current():
        return python
    stages = lifecycle._stages(settings)
    index = {name: i for i, name in enumerate(stages.order)}
    roles = {
        cls: (name, index.get(name), moves, SPECIAL_ROLES.get(cls, ""))
        for cls, (name, _is_stage, moves) in stages.roles.items()
    }
    slas = [stages.sla_us.get(stage) for stage in stages.order]
    reasons = [
        None if sla is None else sla_breach_reason(stage, sla)
        for stage, sla in zip(stages.order, slas, strict=True)
    ]
    kernel = _installed().Views(
        roles,
        list(stages.order),
        slas,
        reasons,
        index.get(lifecycle._DELIVERED),
        list(lifecycle._BASE_ATTRIBUTES),
        (OrderView, Transition, Flag, Outcome),
        (OutcomeStatus.OPEN, OutcomeStatus.ON_TIME, OutcomeStatus.LATE, OutcomeStatus.CANCELLED),
        (FlagKind.EXCEPTION, FlagKind.REROUTE, FlagKind.STAGE_SLA_BREACH),
        to_us,
        python,
    )
    maker: ViewMaker = kernel.derive
    return maker


#: The fingerprint (:func:`bronze_fingerprint`) of the bronze rows that
#: ``native/src/bronze.rs`` was checked against; as :data:`NATIVE_FACTS_OF`, a
#: change puts the rows back in Python until ``tests/unit/test_bronze_rows.py``
#: checks the twin and names the new value.
NATIVE_BRONZE_OF = "b7240fdf2f3358ef"


def bronze_fingerprint() -> str:
    """A hash of ``dataflows/bronze_rows.py`` and ``dataflows/json_text.py``."""
    return _fingerprint(inspect.getsource(bronze_rows) + inspect.getsource(json_text))


@cache
def _native_bronze_current() -> bool:
    return _still_checked(
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
    kernel = _installed().BronzePlan(
        columns,
        classes,
        schema.names[len(columns) :],
        to_us,
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
        arrays = _arrow_arrays(self._kernel.table(*self._lists()), size, types)
        return pa.Table.from_arrays(list(arrays.values()), schema=self._schema)

    def __reduce__(self) -> tuple[Callable[[tuple[Any, ...]], BronzeRows], tuple[Any]]:
        return _reference_rows, (self._lists(),)
