"""The native twins' field reads (``native/src/fields.rs``) give what ``getattr`` gives.

A frozen msgspec Struct's field is read from its slot; anything else goes
through ``getattr``.  ``struct_field`` is one such call site, shared by every
name, so these cases also check that a site keeps types and names apart.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from dataflows.lifecycle import Baseline, Flag, OrderView, Transition
from schemas.events import ALL_EVENT_TYPES

native = pytest.importorskip("orderhealth_native")
struct_field = native.struct_field


class Frozen(msgspec.Struct, frozen=True):
    a: int
    b: str | None = None

    @property
    def twice(self) -> int:
        return self.a * 2


class Child(Frozen, frozen=True):
    c: tuple[int, ...] = ()


class Mutable(msgspec.Struct):
    a: int


class Slotted:
    __slots__ = ("a",)

    def __init__(self, a: int) -> None:
        self.a = a


def _same(obj: Any, name: str) -> None:
    try:
        expected = getattr(obj, name)
    except AttributeError as error:
        with pytest.raises(AttributeError) as raised:
            struct_field(obj, name)
        assert str(raised.value) == str(error)
        return
    got = struct_field(obj, name)
    if name in getattr(type(obj), "__struct_fields__", ()):
        assert got is expected  # the slot's own object
    else:
        assert got == expected  # computed (a property): a new object each read


def test_a_frozen_structs_fields_are_its_own_objects() -> None:
    big = 10**30  # a fresh object: identity shows it is the slot's
    for obj in (Frozen(big, "x"), Frozen(1), Child(big, None, (1, 2)), Child(3, "y")):
        for name in ("a", "b", "c", "twice", "missing", "__struct_fields__"):
            _same(obj, name)


def test_other_objects_read_as_getattr_reads_them() -> None:
    mutable = Mutable(1)
    _same(mutable, "a")
    mutable.a = 10**20
    _same(mutable, "a")
    slotted = Slotted(5)
    _same(slotted, "a")
    del slotted.a
    _same(slotted, "a")  # an unset slot: Python's error
    for obj in (object(), 3, "text", None, {"a": 1}):
        _same(obj, "a")


def test_a_site_seeing_more_types_than_it_keeps_stays_right() -> None:
    types = [
        msgspec.defstruct(f"T{i}", [(f"f{j}", int) for j in range(i % 5 + 1)], frozen=True)
        for i in range(40)
    ]
    for _ in range(2):
        for i, cls in enumerate(types):
            obj = cls(*range(100 + i, 100 + i + i % 5 + 1))
            for j in range(6):
                _same(obj, f"f{j}")


def test_the_types_the_twins_read_are_frozen_structs() -> None:
    """The twins' fast path needs frozen types; a thawed one is slower, not wrong."""
    for cls in (OrderView, Transition, Flag, Baseline, *ALL_EVENT_TYPES.values()):
        assert cls.__struct_config__.frozen, cls
