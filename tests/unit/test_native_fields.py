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


class Guarded:
    """Slots behind attribute access of its own: left to it."""

    __slots__ = ("a",)

    def __init__(self, a: int) -> None:
        object.__setattr__(self, "a", a)

    def __getattribute__(self, name: str) -> Any:
        if name == "a":
            return "guarded"
        return object.__getattribute__(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("read-only")


def test_any_slot_reads_and_writes_as_getattr_and_setattr() -> None:
    """``slot!`` and ``set_slot!`` (the intake's order state) on plain ``__slots__`` classes."""
    obj = Slotted(1)
    big = 10**40
    native.set_slot_field(obj, "a", big)
    assert obj.a is big
    assert native.slot_field(obj, "a") is big
    del obj.a
    with pytest.raises(AttributeError):
        native.slot_field(obj, "a")  # unset: Python's error
    native.set_slot_field(obj, "a", 2)  # an unset slot can be set again
    assert obj.a == 2
    with pytest.raises(AttributeError):
        native.set_slot_field(obj, "b", 1)  # not a slot: setattr's error
    guarded = Guarded(3)
    assert native.slot_field(guarded, "a") == "guarded"
    with pytest.raises(AttributeError, match="read-only"):
        native.set_slot_field(guarded, "a", 4)
    frozen = Frozen(5)
    with pytest.raises(AttributeError):
        native.set_slot_field(frozen, "a", 6)  # a frozen Struct stays frozen
    assert frozen.a == 5
    assert native.slot_field(Mutable(7), "a") == 7
