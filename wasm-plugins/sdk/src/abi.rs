//! The symbols wasi-libc provides to `std` plugins and a `no_std` plugin
//! lacks, because linking wasi-libc is what we avoid.
//!
//! - `cabi_realloc`, the export through which the gateway allocates in the
//!   plugin's memory (for the strings and lists it passes in). wit-bindgen
//!   provides it only on wasm32-wasip1 and wasm32-unknown-unknown; on
//!   wasm32-wasip2 it leaves it to wasi-libc.
//! - `memcmp` and `bcmp`, which LLVM calls for slice and string comparisons.
//!   (`memcpy`, `memmove` and `memset` need nothing: with bulk-memory, on by
//!   default on wasm32-wasip2, they are the `memory.copy`/`memory.fill`
//!   instructions.)

use alloc::alloc::{alloc, realloc, Layout};

/// wit-bindgen's own `cabi_realloc`, over the global allocator.
///
/// # Safety
///
/// Called only by the component model's canonical ABI, with the contract of
/// `cabi_realloc`: a zero `old_len` allocates, otherwise `old_ptr` was
/// returned by this function for `old_len` bytes at `align`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cabi_realloc(
    old_ptr: *mut u8,
    old_len: usize,
    align: usize,
    new_len: usize,
) -> *mut u8 {
    let ptr = unsafe {
        if old_len == 0 {
            if new_len == 0 {
                return align as *mut u8;
            }
            alloc(Layout::from_size_align_unchecked(new_len, align))
        } else {
            realloc(
                old_ptr,
                Layout::from_size_align_unchecked(old_len, align),
                new_len,
            )
        }
    };
    if ptr.is_null() {
        // Out of memory while the host passes arguments: trap, as a failed
        // allocation anywhere else does.
        core::arch::wasm32::unreachable();
    }
    ptr
}

/// # Safety
///
/// `a` and `b` are valid for reads of `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // A plain loop: LLVM turns loops into memset/memcpy calls but not into
    // memcmp, so this cannot end up calling itself.
    let mut i = 0;
    while i < n {
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        i += 1;
    }
    0
}

/// `memcmp` where only equality matters.
///
/// # Safety
///
/// As [`memcmp`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    unsafe { memcmp(a, b, n) }
}
