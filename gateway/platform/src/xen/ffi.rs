//! Run-time bindings to Xen's `libxengnttab` and `libxenevtchn`.
//!
//! Loaded with `libloading` rather than linked, so that one `pvgate` binary
//! starts on a machine without Xen (and says what is missing) and the build
//! needs no Xen libraries.
//!
//! Every function type below is written from libxen-dev's headers,
//! `/usr/include/xengnttab.h` and `/usr/include/xenevtchn.h` (Xen 4.17 in
//! Debian 12; these entry points have been stable since Xen 4.7, and the
//! libraries' sonames are still `.so.1`). Each table also describes itself
//! as C (`c_signatures`), and a test compiles those declarations against
//! the real headers with gcc, `-Werror`: a wrong argument count or type is a
//! compile error there, not memory corruption here.

use std::ffi::c_void;
use std::marker::{PhantomData, PhantomPinned};

/// The file the dynamic linker is asked for, and the Debian package with it.
pub const GNTTAB_LIBRARY: &str = "libxengnttab.so.1";
pub const GNTTAB_PACKAGE: &str = "libxengnttab1";
pub const EVTCHN_LIBRARY: &str = "libxenevtchn.so.1";
pub const EVTCHN_PACKAGE: &str = "libxenevtchn1";

/// Why a library could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot load {library} ({reason}); install it: apt-get install {package}")]
    Library {
        library: String,
        package: &'static str,
        reason: String,
    },
    #[error(
        "{library} has no function {symbol} ({reason}); it is not a usable Xen library: apt-get install {package} (Xen 4.7 or later)"
    )]
    Symbol {
        library: String,
        symbol: &'static str,
        package: &'static str,
        reason: String,
    },
}

/// Opaque handle types: only ever used behind pointers the library gives us.
macro_rules! opaque {
    ($($(#[$m:meta])* $name:ident;)*) => {$(
        $(#[$m])*
        #[repr(C)]
        pub struct $name {
            _private: [u8; 0],
            _not_send_sync_unpin: PhantomData<(*mut u8, PhantomPinned)>,
        }
    )*};
}

opaque! {
    /// `xengnttab_handle` (`struct xengntdev_handle`).
    GnttabHandle;
    /// `xengntshr_handle` (also `struct xengntdev_handle` in C, but a
    /// separate handle from a separate `open`).
    GntshrHandle;
    /// `xenevtchn_handle`.
    EvtchnHandle;
    /// `struct xentoollog_logger`; we always pass NULL (the library then
    /// logs its own errors to stderr).
    Logger;
}

/// The C spelling of a Rust type used in these bindings, for the header
/// check. `u32` covers both `uint32_t` and `unsigned` (the same type in
/// C on every Linux ABI), `i32` covers `int`.
pub trait CType {
    const C: &'static str;
}

macro_rules! c_type {
    ($($t:ty => $c:literal,)*) => {$(
        impl CType for $t {
            const C: &'static str = $c;
        }
    )*};
}

c_type! {
    u32 => "uint32_t",
    i32 => "int",
    *mut u32 => "uint32_t *",
    *mut c_void => "void *",
    *mut GnttabHandle => "xengnttab_handle *",
    *mut GntshrHandle => "xengntshr_handle *",
    *mut EvtchnHandle => "xenevtchn_handle *",
    *mut Logger => "struct xentoollog_logger *",
}

/// One function as C would declare it, for the header check.
#[derive(Debug, Clone)]
pub struct CSignature {
    pub name: &'static str,
    pub ret: &'static str,
    pub args: Vec<&'static str>,
}

impl CSignature {
    /// A C snippet that fails to compile (under `-Werror`) unless the
    /// header declares `name` with exactly these types.
    pub fn c_check(&self) -> String {
        format!(
            "typedef {ret} (*pvgate_{name}_t)({args});\n\
             pvgate_{name}_t pvgate_{name} = {name};\n",
            ret = self.ret,
            name = self.name,
            args = self.args.join(", "),
        )
    }
}

fn open_library(file: &str, package: &'static str) -> Result<libloading::Library, LoadError> {
    // SAFETY: loading a Xen library runs its ELF constructors, which only
    // set up the library's own state.
    unsafe { libloading::Library::new(file) }.map_err(|e| LoadError::Library {
        library: file.to_string(),
        package,
        reason: e.to_string(),
    })
}

/// # Safety
/// `T` must be the function type the library's header declares for `name`.
unsafe fn symbol<T: Copy>(
    lib: &libloading::Library,
    file: &str,
    package: &'static str,
    name: &'static str,
) -> Result<T, LoadError> {
    let mut cname = name.as_bytes().to_vec();
    cname.push(0);
    // SAFETY: the caller vouches for T; the pointer stays valid while the
    // table that copies it also holds `lib`.
    unsafe { lib.get::<T>(&cname) }
        .map(|s| *s)
        .map_err(|e| LoadError::Symbol {
            library: file.to_string(),
            symbol: name,
            package,
            reason: e.to_string(),
        })
}

/// A table of functions from one library, kept loaded as long as the table.
macro_rules! xen_functions {
    (
        $(#[$m:meta])*
        pub struct $table:ident in $library:ident, $package:ident {
            $(
                $(#[$fm:meta])*
                fn $f:ident($($arg:ident: $t:ty),* $(,)?) -> $ret:ty;
            )*
        }
    ) => {
        $(#[$m])*
        pub struct $table {
            $(
                $(#[$fm])*
                pub $f: unsafe extern "C" fn($($arg: $t),*) -> $ret,
            )*
            _library: libloading::Library,
        }

        impl $table {
            /// Load from the system (the dynamic linker's search path).
            pub fn load() -> Result<$table, LoadError> {
                $table::load_from($library)
            }

            /// Load from `file`: a soname or a path.
            pub fn load_from(file: &str) -> Result<$table, LoadError> {
                let library = open_library(file, $package)?;
                // SAFETY: every type is written from the library's header
                // (and checked against it by the header test).
                unsafe {
                    Ok($table {
                        $($f: symbol(&library, file, $package, stringify!($f))?,)*
                        _library: library,
                    })
                }
            }

            /// The table's functions as C declarations (for the header test).
            pub fn c_signatures() -> Vec<CSignature> {
                vec![$(CSignature {
                    name: stringify!($f),
                    ret: <$ret as CType>::C,
                    args: vec![$(<$t as CType>::C),*],
                }),*]
            }
        }

        impl std::fmt::Debug for $table {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($table), " from "))?;
                f.write_str($library)
            }
        }
    };
}

xen_functions! {
    /// libxengnttab: the consumer side (`xengnttab_*`, mapping other
    /// domains' grants through /dev/xen/gntdev) and the producer side
    /// (`xengntshr_*`, granting our pages through /dev/xen/gntalloc).
    pub struct GnttabFns in GNTTAB_LIBRARY, GNTTAB_PACKAGE {
        /// `xengnttab_handle *xengnttab_open(struct xentoollog_logger *logger, unsigned open_flags);`
        /// NULL with errno on failure.
        fn xengnttab_open(logger: *mut Logger, open_flags: u32) -> *mut GnttabHandle;
        /// `int xengnttab_close(xengnttab_handle *xgt);` (unmaps what is left)
        fn xengnttab_close(xgt: *mut GnttabHandle) -> i32;
        /// `int xengnttab_set_max_grants(xengnttab_handle *xgt, uint32_t nr_grants);`
        /// Must come before any other call on the handle.
        fn xengnttab_set_max_grants(xgt: *mut GnttabHandle, nr_grants: u32) -> i32;
        /// `void *xengnttab_map_domain_grant_refs(xengnttab_handle *xgt, uint32_t count,
        ///      uint32_t domid, uint32_t *refs, int prot);`
        /// One contiguous mapping; NULL with errno (and nothing mapped) on failure.
        fn xengnttab_map_domain_grant_refs(
            xgt: *mut GnttabHandle,
            count: u32,
            domid: u32,
            refs: *mut u32,
            prot: i32,
        ) -> *mut c_void;
        /// `int xengnttab_unmap(xengnttab_handle *xgt, void *start_address, uint32_t count);`
        fn xengnttab_unmap(xgt: *mut GnttabHandle, start_address: *mut c_void, count: u32) -> i32;
        /// `xengntshr_handle *xengntshr_open(struct xentoollog_logger *logger, unsigned open_flags);`
        fn xengntshr_open(logger: *mut Logger, open_flags: u32) -> *mut GntshrHandle;
        /// `int xengntshr_close(xengntshr_handle *xgs);`
        fn xengntshr_close(xgs: *mut GntshrHandle) -> i32;
        /// `void *xengntshr_share_pages(xengntshr_handle *xgs, uint32_t domid, int count,
        ///      uint32_t *refs, int writable);`
        /// Allocates `count` zeroed pages, grants them to `domid`, writes the
        /// refs; NULL with errno on failure.
        fn xengntshr_share_pages(
            xgs: *mut GntshrHandle,
            domid: u32,
            count: i32,
            refs: *mut u32,
            writable: i32,
        ) -> *mut c_void;
        /// `int xengntshr_unshare(xengntshr_handle *xgs, void *start_address, uint32_t count);`
        fn xengntshr_unshare(xgs: *mut GntshrHandle, start_address: *mut c_void, count: u32) -> i32;
    }
}

xen_functions! {
    /// libxenevtchn: event channels through /dev/xen/evtchn.
    pub struct EvtchnFns in EVTCHN_LIBRARY, EVTCHN_PACKAGE {
        /// `xenevtchn_handle *xenevtchn_open(struct xentoollog_logger *logger, unsigned int flags);`
        fn xenevtchn_open(logger: *mut Logger, flags: u32) -> *mut EvtchnHandle;
        /// `int xenevtchn_close(xenevtchn_handle *xce);`
        fn xenevtchn_close(xce: *mut EvtchnHandle) -> i32;
        /// `int xenevtchn_fd(xenevtchn_handle *xce);` (pollable for pending ports)
        fn xenevtchn_fd(xce: *mut EvtchnHandle) -> i32;
        /// `int xenevtchn_notify(xenevtchn_handle *xce, evtchn_port_t port);`
        fn xenevtchn_notify(xce: *mut EvtchnHandle, port: u32) -> i32;
        /// `xenevtchn_port_or_error_t xenevtchn_bind_unbound_port(xenevtchn_handle *xce, uint32_t domid);`
        fn xenevtchn_bind_unbound_port(xce: *mut EvtchnHandle, domid: u32) -> i32;
        /// `xenevtchn_port_or_error_t xenevtchn_bind_interdomain(xenevtchn_handle *xce,
        ///      uint32_t domid, evtchn_port_t remote_port);`
        fn xenevtchn_bind_interdomain(xce: *mut EvtchnHandle, domid: u32, remote_port: u32) -> i32;
        /// `int xenevtchn_unbind(xenevtchn_handle *xce, evtchn_port_t port);`
        fn xenevtchn_unbind(xce: *mut EvtchnHandle, port: u32) -> i32;
        /// `xenevtchn_port_or_error_t xenevtchn_pending(xenevtchn_handle *xce);`
        /// The next pending port, now masked; may block (poll the fd first).
        fn xenevtchn_pending(xce: *mut EvtchnHandle) -> i32;
        /// `int xenevtchn_unmask(xenevtchn_handle *xce, evtchn_port_t port);`
        fn xenevtchn_unmask(xce: *mut EvtchnHandle, port: u32) -> i32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_names_itself_and_the_package() {
        let err = GnttabFns::load_from("libxengnttab-pvgate-test-absent.so.1").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("libxengnttab-pvgate-test-absent.so.1"),
            "{msg}"
        );
        assert!(msg.contains("apt-get install libxengnttab1"), "{msg}");
        let err = EvtchnFns::load_from("/nonexistent/libxenevtchn.so.1").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/nonexistent/libxenevtchn.so.1"), "{msg}");
        assert!(msg.contains("apt-get install libxenevtchn1"), "{msg}");
    }

    #[test]
    fn a_library_without_the_functions_is_named_with_the_missing_symbol() {
        // libc is always there and has none of Xen's functions.
        let err = EvtchnFns::load_from("libc.so.6").unwrap_err();
        match &err {
            LoadError::Symbol { symbol, .. } => assert_eq!(*symbol, "xenevtchn_open"),
            other => panic!("expected a missing symbol, got {other}"),
        }
        assert!(err.to_string().contains("libxenevtchn1"), "{err}");
    }

    #[test]
    fn c_signatures_spell_every_argument() {
        let sigs = GnttabFns::c_signatures();
        let map = sigs
            .iter()
            .find(|s| s.name == "xengnttab_map_domain_grant_refs")
            .unwrap();
        assert_eq!(map.ret, "void *");
        assert_eq!(
            map.args,
            [
                "xengnttab_handle *",
                "uint32_t",
                "uint32_t",
                "uint32_t *",
                "int"
            ]
        );
        assert_eq!(EvtchnFns::c_signatures().len(), 9);
    }
}
