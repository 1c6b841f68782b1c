//! Little-endian field access on a copied slot. Xen's ring protocols are
//! little-endian on every architecture Xen runs on (x86, Arm).
//!
//! Offsets come from `offset_of!` on the `abi` mirrors and are constants, so
//! the bounds checks below are resolved at compile time in practice; they
//! return 0 rather than panic if a caller ever passes a bad offset.

pub(crate) fn u8_at<const N: usize>(b: &[u8; N], off: usize) -> u8 {
    b.get(off).copied().unwrap_or(0)
}

pub(crate) fn u16_at<const N: usize>(b: &[u8; N], off: usize) -> u16 {
    u16::from_le_bytes(arr(b, off))
}

pub(crate) fn u32_at<const N: usize>(b: &[u8; N], off: usize) -> u32 {
    u32::from_le_bytes(arr(b, off))
}

pub(crate) fn i32_at<const N: usize>(b: &[u8; N], off: usize) -> i32 {
    i32::from_le_bytes(arr(b, off))
}

pub(crate) fn i16_at<const N: usize>(b: &[u8; N], off: usize) -> i16 {
    i16::from_le_bytes(arr(b, off))
}

pub(crate) fn u64_at<const N: usize>(b: &[u8; N], off: usize) -> u64 {
    u64::from_le_bytes(arr(b, off))
}

fn arr<const N: usize, const K: usize>(b: &[u8; N], off: usize) -> [u8; K] {
    let mut out = [0u8; K];
    if let Some(src) = off.checked_add(K).and_then(|end| b.get(off..end)) {
        out.copy_from_slice(src);
    }
    out
}

pub(crate) fn put<const N: usize>(b: &mut [u8; N], off: usize, bytes: &[u8]) {
    if let Some(dst) = off
        .checked_add(bytes.len())
        .and_then(|end| b.get_mut(off..end))
    {
        dst.copy_from_slice(bytes);
    }
}

pub(crate) fn put_u8<const N: usize>(b: &mut [u8; N], off: usize, v: u8) {
    put(b, off, &[v]);
}

pub(crate) fn put_u16<const N: usize>(b: &mut [u8; N], off: usize, v: u16) {
    put(b, off, &v.to_le_bytes());
}

pub(crate) fn put_u32<const N: usize>(b: &mut [u8; N], off: usize, v: u32) {
    put(b, off, &v.to_le_bytes());
}

pub(crate) fn put_i32<const N: usize>(b: &mut [u8; N], off: usize, v: i32) {
    put(b, off, &v.to_le_bytes());
}

pub(crate) fn put_i16<const N: usize>(b: &mut [u8; N], off: usize, v: i16) {
    put(b, off, &v.to_le_bytes());
}

pub(crate) fn put_u64<const N: usize>(b: &mut [u8; N], off: usize, v: u64) {
    put(b, off, &v.to_le_bytes());
}
