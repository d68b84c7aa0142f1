//! A field of a frozen msgspec `Struct`, read straight from its slot.
//!
//! The twins read an order's events and views field by field.  Through
//! `PyAny::getattr` each read is CPython's whole attribute protocol (the
//! type's method cache, the member descriptor, a new reference) plus PyO3's
//! bookkeeping (the name's reference, the result registered in the call's
//! pool and released when it ends): ~200 instructions, a tenth of the
//! per-partition step (`bench.instructions`).  A msgspec field is a
//! `__slots__` member, a pointer at a fixed offset in the object; each call
//! site of [`field!`] remembers the offset per type and reads the pointer.
//!
//! Only a *frozen* Struct's fields are read this way: a field of such an
//! object never changes, so the borrowed pointer lives as long as the object
//! it was read from, which the returned reference's lifetime says.  Anything
//! else -- another type, a field that is not a plain slot, an unset slot, a
//! site that has seen more types than it keeps -- goes through `getattr`, so
//! the result (or the error) is always Python's own.

use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering::Relaxed};

use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyString;
use pyo3::AsPyPointer;

/// Types one call site keeps offsets for (an event field is read from each
/// event type that has it; the contract has thirteen).
const ENTRIES: usize = 16;
/// A type whose field is not a frozen Struct's slot: read with `getattr`.
const NOT_A_SLOT: isize = -1;

/// One call site's offsets, by type and field name.
///
/// The atomics are only to make the static shareable: every access holds the
/// GIL, so no two threads touch a site at once.  A kept type and name are
/// never freed (one reference each is kept), so their addresses cannot be
/// reused by another type or string while the entry exists.
pub(crate) struct Site {
    types: [AtomicUsize; ENTRIES],
    names: [AtomicUsize; ENTRIES],
    offsets: [AtomicIsize; ENTRIES],
    /// Which slots the site reads (or writes) directly.
    kind: Kind,
}

/// What a site reads or writes directly; everything else goes through
/// `getattr` / `setattr`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A frozen msgspec Struct's fields ([`field!`]).
    Frozen,
    /// Any `__slots__` member ([`slot!`]): the reference read is valid until
    /// the slot is written, so the caller uses it at once.
    Slot,
    /// Any writable `__slots__` member ([`set_slot!`]).
    Writable,
}

impl Site {
    #[allow(clippy::declare_interior_mutable_const)]
    const EMPTY: AtomicUsize = AtomicUsize::new(0);
    #[allow(clippy::declare_interior_mutable_const)]
    const UNKNOWN: AtomicIsize = AtomicIsize::new(NOT_A_SLOT);

    pub(crate) const fn new(kind: Kind) -> Self {
        Self {
            types: [Self::EMPTY; ENTRIES],
            names: [Self::EMPTY; ENTRIES],
            offsets: [Self::UNKNOWN; ENTRIES],
            kind,
        }
    }

    /// Where `object` keeps `name` (learning it on first sight), or None.
    fn offset(&self, object: &PyAny, name: &PyString) -> PyResult<Option<isize>> {
        let ty = unsafe { ffi::Py_TYPE(object.as_ptr()) } as usize;
        let key = name.as_ptr() as usize;
        for i in 0..ENTRIES {
            let kept = self.types[i].load(Relaxed);
            if kept == 0 {
                let ty = object.get_type();
                let offset = slot_offset(ty, name, self.kind)?.unwrap_or(NOT_A_SLOT);
                // Kept for as long as the site: never freed, so never another
                // type's (or string's) address.
                std::mem::forget(Py::<PyAny>::from(ty));
                std::mem::forget(Py::<PyString>::from(name));
                self.offsets[i].store(offset, Relaxed);
                self.names[i].store(key, Relaxed);
                self.types[i].store(ty.as_ptr() as usize, Relaxed);
                return Ok((offset != NOT_A_SLOT).then_some(offset));
            }
            if kept == ty && self.names[i].load(Relaxed) == key {
                let offset = self.offsets[i].load(Relaxed);
                return Ok((offset != NOT_A_SLOT).then_some(offset));
            }
        }
        Ok(None)
    }

    /// `object.<name>`, as `getattr` gives it.
    ///
    /// Inlined at the call site for the site's first type and name: most
    /// sites read one type (a view, a transition, a flag), and the call to
    /// the general look-up was most of a read's instructions.
    #[inline(always)]
    pub(crate) fn read<'a>(&self, object: &'a PyAny, name: &PyString) -> PyResult<&'a PyAny> {
        let ty = unsafe { ffi::Py_TYPE(object.as_ptr()) } as usize;
        if self.types[0].load(Relaxed) == ty
            && self.names[0].load(Relaxed) == name.as_ptr() as usize
        {
            let offset = self.offsets[0].load(Relaxed);
            if offset != NOT_A_SLOT {
                // SAFETY: as in `read_any`.
                if let Some(value) = unsafe { slot_value(object, offset) } {
                    return Ok(value);
                }
            }
        }
        self.read_any(object, name)
    }

    /// [`Site::read`] for any type and name.
    #[inline(never)]
    fn read_any<'a>(&self, object: &'a PyAny, name: &PyString) -> PyResult<&'a PyAny> {
        if let Some(offset) = self.offset(object, name)? {
            // SAFETY: `offset` is where a T_OBJECT_EX member of the object's
            // type (or a base) keeps its value; a frozen Struct's slot is
            // never reassigned, and a `Kind::Slot` caller uses the value
            // before the slot can be written.
            if let Some(value) = unsafe { slot_value(object, offset) } {
                return Ok(value);
            }
            // Unset: Python's AttributeError, below.
        }
        object.getattr(name)
    }

    /// `object.<name> = value`, as `setattr` does it.
    pub(crate) fn write(&self, object: &PyAny, name: &PyString, value: &PyAny) -> PyResult<()> {
        debug_assert!(self.kind == Kind::Writable);
        match self.offset(object, name)? {
            Some(offset) => {
                // SAFETY: as member_set does for a T_OBJECT_EX member: the
                // new reference in, then the old one released.
                unsafe {
                    let place = member_at(object, offset);
                    let old = *place;
                    ffi::Py_INCREF(value.as_ptr());
                    *place = value.as_ptr();
                    ffi::Py_XDECREF(old);
                }
                Ok(())
            }
            None => object.setattr(name, value),
        }
    }
}

/// The address of the member at `offset` in `object`.
unsafe fn member_at(object: &PyAny, offset: isize) -> *mut *mut ffi::PyObject {
    (object.as_ptr() as *mut u8)
        .offset(offset)
        .cast::<*mut ffi::PyObject>()
}

/// Where the type keeps the member `name`, if a site of `kind` reads or
/// writes it directly (see [`Kind`]); None for anything else.
fn slot_offset(ty: &pyo3::types::PyType, name: &PyString, kind: Kind) -> PyResult<Option<isize>> {
    let py = ty.py();
    if kind == Kind::Frozen {
        let config = match ty.getattr(intern!(py, "__struct_config__")) {
            Ok(config) => config,
            Err(_) => return Ok(None),
        };
        let frozen = config
            .getattr(intern!(py, "frozen"))
            .and_then(PyAny::is_true)
            .unwrap_or(false);
        if !frozen {
            return Ok(None);
        }
    }
    // A type with its own attribute access (`__getattribute__`, or for a
    // write `__setattr__`, as a frozen Struct has) is left to it.
    // SAFETY: reading two slots of a live type object.
    let (get, set) = unsafe {
        let raw = ty.as_ptr().cast::<ffi::PyTypeObject>();
        ((*raw).tp_getattro, (*raw).tp_setattro)
    };
    // (Functions of libpython, so one address each.)
    let generic_get = ffi::PyObject_GenericGetAttr as *const () as usize;
    let generic_set = ffi::PyObject_GenericSetAttr as *const () as usize;
    if get.map(|f| f as usize) != Some(generic_get)
        || (kind == Kind::Writable && set.map(|f| f as usize) != Some(generic_set))
    {
        return Ok(None);
    }
    // The class attribute of a slot is its member descriptor (what attribute
    // look-up on an instance finds first, as a data descriptor).
    let descriptor = match ty.getattr(name) {
        Ok(descriptor) => descriptor,
        Err(_) => return Ok(None),
    };
    // SAFETY: the type check makes the cast to the member descriptor's layout sound.
    unsafe {
        let member_type = std::ptr::addr_of_mut!(ffi::PyMemberDescr_Type);
        if ffi::Py_TYPE(descriptor.as_ptr()) != member_type {
            return Ok(None);
        }
        let member = (*descriptor.as_ptr().cast::<ffi::PyMemberDescrObject>())
            .d_member
            .cast::<ffi::structmember::PyMemberDef>();
        if (*member).type_code != ffi::structmember::T_OBJECT_EX {
            return Ok(None);
        }
        if kind == Kind::Writable && (*member).flags & ffi::structmember::READONLY != 0 {
            return Ok(None);
        }
        // The descriptor must be of this type or a base (not one copied from
        // an unrelated class into the namespace).
        let owner = (*descriptor.as_ptr().cast::<ffi::PyDescrObject>()).d_type;
        if ffi::PyType_IsSubtype(ty.as_ptr().cast(), owner) == 0 {
            return Ok(None);
        }
        Ok(Some((*member).offset))
    }
}

/// Where a frozen Struct type keeps each of `names` (a caller that reads
/// many fields of each object, with the offsets kept per type), or None if
/// any of them is not a slot read directly (see [`Kind::Frozen`]).
pub(crate) fn frozen_offsets(
    ty: &pyo3::types::PyType,
    names: &[&PyString],
) -> PyResult<Option<Vec<isize>>> {
    let mut offsets = Vec::with_capacity(names.len());
    for name in names {
        match slot_offset(ty, name, Kind::Frozen)? {
            Some(offset) => offsets.push(offset),
            None => return Ok(None),
        }
    }
    Ok(Some(offsets))
}

/// The member at `offset` of `object`, or None if the slot is unset.
///
/// # Safety
/// `offset` is where a T_OBJECT_EX member of `object`'s type keeps its
/// value (from [`frozen_offsets`] or a site), and the slot is not written
/// while the borrowed value is used: a frozen Struct's never is.
pub(crate) unsafe fn slot_value(object: &PyAny, offset: isize) -> Option<&PyAny> {
    let value = *member_at(object, offset);
    if value.is_null() {
        None
    } else {
        Some(&*value.cast::<PyAny>())
    }
}

/// A read through a call site of its own, of `kind` ([`Kind`]).
macro_rules! site_read {
    ($kind:ident, $object:expr, $name:expr) => {{
        static SITE: $crate::fields::Site = $crate::fields::Site::new($crate::fields::Kind::$kind);
        SITE.read($object, $name)
    }};
}
pub(crate) use site_read;

/// `object.name` of a frozen msgspec Struct, read from its slot (see the
/// module); anything else as `getattr`.  `$name` is a string literal.
macro_rules! field {
    ($object:expr, $name:literal) => {{
        let object: &pyo3::PyAny = $object;
        $crate::fields::site_read!(Frozen, object, pyo3::intern!(object.py(), $name))
    }};
}
pub(crate) use field;

/// [`field!`] for a name known at run time (`&PyString`, kept alive by the
/// caller): a site keeps an offset per type and name.
macro_rules! field_named {
    ($object:expr, $name:expr) => {
        $crate::fields::site_read!(Frozen, $object, $name)
    };
}
pub(crate) use field_named;

/// `object.name` of any `__slots__` member, read from its slot; the
/// reference is valid until the slot is written, so use it at once.
macro_rules! slot {
    ($object:expr, $name:literal) => {{
        let object: &pyo3::PyAny = $object;
        $crate::fields::site_read!(Slot, object, pyo3::intern!(object.py(), $name))
    }};
}
pub(crate) use slot;

/// `object.name = value` of a writable `__slots__` member, in its slot.
macro_rules! set_slot {
    ($object:expr, $name:literal, $value:expr) => {{
        static SITE: $crate::fields::Site =
            $crate::fields::Site::new($crate::fields::Kind::Writable);
        let object: &pyo3::PyAny = $object;
        SITE.write(object, pyo3::intern!(object.py(), $name), $value)
    }};
}
pub(crate) use set_slot;

/// One shared site for names only known at run time (`struct_field`).
static ANY_NAME: Site = Site::new(Kind::Frozen);
static ANY_SLOT: Site = Site::new(Kind::Slot);
static ANY_WRITABLE: Site = Site::new(Kind::Writable);

/// `getattr(object, name)` through a call site's slot reading: for tests
/// (`tests/unit/test_native_fields.py`).
#[pyfunction]
pub(crate) fn struct_field<'a>(object: &'a PyAny, name: &PyString) -> PyResult<&'a PyAny> {
    ANY_NAME.read(object, name)
}

/// `getattr(object, name)` through a call site's reading of any slot (tests).
#[pyfunction]
pub(crate) fn slot_field<'a>(object: &'a PyAny, name: &PyString) -> PyResult<&'a PyAny> {
    ANY_SLOT.read(object, name)
}

/// `setattr(object, name, value)` through a call site's writing of slots (tests).
#[pyfunction]
pub(crate) fn set_slot_field(object: &PyAny, name: &PyString, value: &PyAny) -> PyResult<()> {
    ANY_WRITABLE.write(object, name, value)
}
