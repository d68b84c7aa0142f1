"""The native twin of the built-in facts: an order's items read from its view in Rust.

The items stay in Rust (``orderhealth_native.Items``) until the window delta
diffs them.  The Python definition (:func:`~dataflows.contributions.order_items`
over :data:`~dataflows.metrics.FACTS`) stays the reference, and
:data:`NATIVE_FACTS_OF` guards the twin against a changed definition.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import cache
from typing import Any, cast

from dataflows import metrics
from dataflows.contributions import OrderItems, order_items
from dataflows.dimensions import DIMENSION_READERS, Attribute, Constant, Timeline
from dataflows.lifecycle import OrderView
from dataflows.metrics import FACTS
from dataflows.native_core import core_name, fingerprint, installed, still_checked
from dataflows.outcome import OutcomeStatus
from dataflows.settings import HealthSettings

__all__ = ["NATIVE_FACTS_OF", "facts_fingerprint", "items_maker", "native_facts", "native_readers"]

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
    return fingerprint(source[source.index("# -- facts --") : source.index("def _plugins(")])


@cache
def _native_facts_current() -> bool:
    return still_checked(
        facts_fingerprint,
        NATIVE_FACTS_OF,
        "the built-in facts in dataflows/metrics.py changed since native/src/facts.rs was "
        "checked against them: every fact is evaluated in Python (slower) until "
        "tests/unit/test_native_facts.py passes and NATIVE_FACTS_OF is updated",
    )


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
    return installed().Facts([fact.name for fact in FACTS], readers, statuses)


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
