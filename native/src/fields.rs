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
}

impl Site {
    #[allow(clippy::declare_interior_mutable_const)]
    const EMPTY: AtomicUsize = AtomicUsize::new(0);
    #[allow(clippy::declare_interior_mutable_const)]
    const UNKNOWN: AtomicIsize = AtomicIsize::new(NOT_A_SLOT);

    pub(crate) const fn new() -> Self {
        Self {
            types: [Self::EMPTY; ENTRIES],
            names: [Self::EMPTY; ENTRIES],
            offsets: [Self::UNKNOWN; ENTRIES],
        }
    }

    /// `object.<name>`, as `getattr` gives it.
    pub(crate) fn read<'a>(&self, object: &'a PyAny, name: &PyString) -> PyResult<&'a PyAny> {
        let ty = unsafe { ffi::Py_TYPE(object.as_ptr()) } as usize;
        let key = name.as_ptr() as usize;
        for i in 0..ENTRIES {
            let kept = self.types[i].load(Relaxed);
            if kept == 0 {
                return self.learn(i, object, name);
            }
            if kept == ty && self.names[i].load(Relaxed) == key {
                let offset = self.offsets[i].load(Relaxed);
                if offset == NOT_A_SLOT {
                    break;
                }
                // SAFETY: `ty` is the object's type, and `offset` is where a
                // T_OBJECT_EX member of that type (or a base) keeps its value.
                let value = unsafe {
                    *(object.as_ptr() as *const u8)
                        .offset(offset)
                        .cast::<*mut ffi::PyObject>()
                };
                if value.is_null() {
                    break; // unset: Python's AttributeError
                }
                // SAFETY: a frozen Struct's slot is never reassigned, so the
                // object it holds lives at least as long as `object`.
                return Ok(unsafe { &*value.cast::<PyAny>() });
            }
        }
        object.getattr(name)
    }

    /// Find the offset of `name` in the object's type, keep it in entry `i`, read.
    fn learn<'a>(&self, i: usize, object: &'a PyAny, name: &PyString) -> PyResult<&'a PyAny> {
        let ty = object.get_type();
        let offset = slot_offset(ty, name)?.unwrap_or(NOT_A_SLOT);
        // Kept for as long as the site: never freed, so never another type's address.
        std::mem::forget(Py::<PyAny>::from(ty));
        std::mem::forget(Py::<PyString>::from(name));
        self.offsets[i].store(offset, Relaxed);
        self.names[i].store(name.as_ptr() as usize, Relaxed);
        self.types[i].store(ty.as_ptr() as usize, Relaxed);
        self.read(object, name)
    }
}

/// Where a frozen msgspec Struct type keeps the field `name`; None for
/// anything that is not such a field.
fn slot_offset(ty: &pyo3::types::PyType, name: &PyString) -> PyResult<Option<isize>> {
    let py = ty.py();
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
        // The descriptor must be of this type or a base (not one copied from
        // an unrelated class into the namespace).
        let owner = (*descriptor.as_ptr().cast::<ffi::PyDescrObject>()).d_type;
        if ffi::PyType_IsSubtype(ty.as_ptr().cast(), owner) == 0 {
            return Ok(None);
        }
        Ok(Some((*member).offset))
    }
}

/// `object.name` of a frozen msgspec Struct, read from its slot (see the
/// module); anything else as `getattr`.  `$name` is a string literal.
macro_rules! field {
    ($object:expr, $name:literal) => {{
        static SITE: $crate::fields::Site = $crate::fields::Site::new();
        let object: &pyo3::PyAny = $object;
        SITE.read(object, pyo3::intern!(object.py(), $name))
    }};
}
pub(crate) use field;

/// One shared site for names only known at run time (`struct_field`).
static ANY_NAME: Site = Site::new();

/// `getattr(object, name)` through a call site's slot reading: for tests
/// (`tests/unit/test_native_fields.py`).
#[pyfunction]
pub(crate) fn struct_field<'a>(object: &'a PyAny, name: &PyString) -> PyResult<&'a PyAny> {
    ANY_NAME.read(object, name)
}
