//! `#[repr(C)]` mirrors of the C structs and the C-named constants of Xen's
//! public headers (`ring.h`, `displif.h`, `sndif.h`, `kbdif.h`, `xenbus.h`).
//!
//! Why mirrors: every offset the codecs in this crate read or write is taken
//! from these structs with [`core::mem::offset_of!`], and the layout test
//! (`tests/c_layout.rs`) compiles a C program against the installed headers
//! and compares every size, offset and constant with what
//! [`layout_entries`] reports here. So a wrong offset cannot hide in a codec:
//! it would have to be wrong in the mirror, and the test would see it.
//!
//! The names are the C names on purpose, so that a reader can put this file
//! next to the header. Nothing here is meant to be used as a value at run time
//! other than through `offset_of!`/`size_of`.

#![allow(non_camel_case_types)]

pub mod displif;
pub mod kbdif;
pub mod ring;
pub mod sndif;
pub mod xenbus;

use std::fmt;

/// One field of a C aggregate, addressed from the outermost named type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldLayout {
    /// C member path as `offsetof` would take it, e.g. `op.dbuf_create`.
    pub path: String,
    pub offset: usize,
    pub size: usize,
}

/// A Rust mirror of a C aggregate that can list its members.
pub trait CLayout: Sized {
    /// `struct name` / `union name`; empty for anonymous aggregates, which
    /// are only reported inside the type that contains them.
    const C_NAME: &'static str;
    fn fields(prefix: &str, base: usize, out: &mut Vec<FieldLayout>);
}

/// The value of a C constant: a number or a string literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutValue {
    Num(i128),
    Str(String),
}

impl fmt::Display for LayoutValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutValue::Num(n) => write!(f, "{n}"),
            LayoutValue::Str(s) => write!(f, "{s:?}"),
        }
    }
}

impl From<&str> for LayoutValue {
    fn from(s: &str) -> Self {
        LayoutValue::Str(s.to_owned())
    }
}

macro_rules! num_value_from {
    ($($t:ty),*) => {$(
        impl From<$t> for LayoutValue {
            fn from(v: $t) -> Self { LayoutValue::Num(v as i128) }
        }
    )*};
}
num_value_from!(u8, u16, u32, u64, usize, i8, i16, i32, i64);

/// Size of a struct field, found through a (never called) accessor so that
/// the field's real type decides, not a type written next to it.
pub(crate) fn field_size<T, F>(_accessor: fn(&T) -> &F) -> usize {
    core::mem::size_of::<F>()
}

/// Size of a union field, found through a (never called) constructor, which
/// unlike reading a union field needs no `unsafe`.
pub(crate) fn union_field_size<F, U>(_constructor: fn(F) -> U) -> usize {
    core::mem::size_of::<F>()
}

/// Strips the raw-identifier prefix: the C member `type` is `r#type` here.
pub(crate) fn c_member_name(rust: &str) -> &str {
    rust.trim_start_matches("r#")
}

/// Implements [`CLayout`] for a `#[repr(C)]` struct. A member written
/// `name => Type` is an anonymous aggregate in C whose members are listed
/// under `name.`.
macro_rules! c_struct {
    ($ty:ty, $cname:expr, { $( $field:ident $( => $inner:ty )? ),* $(,)? }) => {
        impl $crate::abi::CLayout for $ty {
            const C_NAME: &'static str = $cname;
            fn fields(prefix: &str, base: usize, out: &mut Vec<$crate::abi::FieldLayout>) {
                $(
                    let offset = base + core::mem::offset_of!($ty, $field);
                    let path = format!("{}{}", prefix, $crate::abi::c_member_name(stringify!($field)));
                    let size = $crate::abi::field_size(|s: &$ty| &s.$field);
                    $(
                        let _same_type: fn(&$ty) -> &$inner = |s| &s.$field;
                        <$inner as $crate::abi::CLayout>::fields(&format!("{path}."), offset, out);
                    )?
                    out.push($crate::abi::FieldLayout { path, offset, size });
                )*
            }
        }
    };
}

/// Implements [`CLayout`] for a `#[repr(C)]` union; members carry their type
/// (checked by constructing the union from it).
macro_rules! c_union {
    ($ty:ident, $cname:expr, { $( $field:ident : $fty:ty $( => $inline:tt )? ),* $(,)? }) => {
        impl $crate::abi::CLayout for $ty {
            const C_NAME: &'static str = $cname;
            fn fields(prefix: &str, base: usize, out: &mut Vec<$crate::abi::FieldLayout>) {
                $(
                    let offset = base + core::mem::offset_of!($ty, $field);
                    let path = format!("{}{}", prefix, $crate::abi::c_member_name(stringify!($field)));
                    let size = $crate::abi::union_field_size(|v: $fty| $ty { $field: v });
                    $(
                        let _ = stringify!($inline);
                        <$fty as $crate::abi::CLayout>::fields(&format!("{path}."), offset, out);
                    )?
                    out.push($crate::abi::FieldLayout { path, offset, size });
                )*
            }
        }
    };
}

pub(crate) use c_struct;
pub(crate) use c_union;

fn push_type<T: CLayout>(out: &mut Vec<(String, LayoutValue)>) {
    out.push((
        format!("sizeof {}", T::C_NAME),
        core::mem::size_of::<T>().into(),
    ));
    let mut fields = Vec::new();
    T::fields("", 0, &mut fields);
    for f in fields {
        out.push((
            format!("offsetof {} {}", T::C_NAME, f.path),
            f.offset.into(),
        ));
        out.push((format!("sizeof {} {}", T::C_NAME, f.path), f.size.into()));
    }
}

/// Every size, offset and constant this crate relies on, named the way the
/// layout test's C program names them:
/// - `sizeof struct NAME` / `sizeof union NAME`
/// - `offsetof struct NAME a.b` and `sizeof struct NAME a.b` for every member
/// - `define NAME` for every object-like macro with a value
/// - `enum NAME` for enumerators
/// - `ring_size NAME` for `__CONST_RING_SIZE(NAME, 4096)`
pub fn layout_entries() -> Vec<(String, LayoutValue)> {
    let mut out = Vec::new();
    ring::push_entries(&mut out);
    displif::push_entries(&mut out);
    sndif::push_entries(&mut out);
    kbdif::push_entries(&mut out);
    xenbus::push_entries(&mut out);
    out
}

/// Pushes `define NAME` entries for C-named constants.
macro_rules! defines {
    ($out:expr, $( $name:ident ),* $(,)?) => {
        $( $out.push((concat!("define ", stringify!($name)).to_string(), $crate::abi::LayoutValue::from($name))); )*
    };
}
pub(crate) use defines;

pub(crate) fn push_type_entries<T: CLayout>(out: &mut Vec<(String, LayoutValue)>) {
    push_type::<T>(out)
}
