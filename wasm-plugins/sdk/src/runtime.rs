//! What `std` would provide, minus its WASI imports: the global allocator
//! and the panic handler. Only on wasm32, so the SDK's unit tests run on the
//! build machine with `std`.

use core::fmt::{self, Write};
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::types::Level;

/// dlmalloc, as Rust's std uses on wasm32: it grows the linear memory with
/// `memory.grow` and imports nothing. When the gateway's memory limit stops
/// the growth, the allocation fails, which panics, which traps.
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

static PANICKING: AtomicBool = AtomicBool::new(false);

/// Logs the panic through `host.log` (without allocating: the panic may be an
/// allocation failure), then traps with `unreachable`. The gateway answers
/// the call with its last good decision and discards the instance.
#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    // A panic while reporting a panic: trap without trying again.
    if !PANICKING.swap(true, Ordering::Relaxed) {
        let mut line = Line::new();
        let _ = write!(line, "plugin panicked: {}", info.message());
        if let Some(at) = info.location() {
            let _ = write!(line, " at {}:{}", at.file(), at.line());
        }
        crate::log::log(Level::Error, line.as_str());
    }
    core::arch::wasm32::unreachable()
}

/// A fixed buffer that keeps as much of the message as fits, cut at a UTF-8
/// character boundary.
struct Line {
    buf: [u8; 512],
    len: usize,
}

impl Line {
    fn new() -> Line {
        Line {
            buf: [0; 512],
            len: 0,
        }
    }

    fn as_str(&self) -> &str {
        // Only whole `&str` prefixes cut at char boundaries are copied in.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("plugin panicked")
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len() - self.len;
        let mut n = s.len().min(room);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        if n < s.len() {
            Err(fmt::Error)
        } else {
            Ok(())
        }
    }
}
