//! Thin wrappers over the few Linux calls the simulated hypervisor needs:
//! open-file-description byte-range locks (the kernel drops them when the
//! holder dies, which is what makes the sim's pin counts crash-safe), `flock`
//! with a deadline (another process must never be able to hang us), and page
//! mappings.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

pub(crate) const PAGE_SIZE: usize = 4096;

/// Which kind of byte-range lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LockKind {
    Shared,
    Exclusive,
}

fn flock_struct(kind: libc::c_short, start: u64, len: u64) -> io::Result<libc::flock> {
    let overflow = || io::Error::new(io::ErrorKind::InvalidInput, "lock range overflows off_t");
    // SAFETY: flock is plain old data; all-zero is a valid value (l_pid must be 0 for OFD locks).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = libc::off_t::try_from(start).map_err(|_| overflow())?;
    fl.l_len = libc::off_t::try_from(len).map_err(|_| overflow())?;
    Ok(fl)
}

/// Try to take an OFD lock on `len` bytes at `start` (`len == 0`: to the end of
/// all offsets). Returns `Ok(false)` if another open file description holds a
/// conflicting lock. Never blocks.
pub(crate) fn try_range_lock(
    file: &File,
    start: u64,
    len: u64,
    kind: LockKind,
) -> io::Result<bool> {
    let t = match kind {
        LockKind::Shared => libc::F_RDLCK,
        LockKind::Exclusive => libc::F_WRLCK,
    };
    let fl = flock_struct(t as libc::c_short, start, len)?;
    // SAFETY: valid fd and a valid flock struct.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
        _ => Err(e),
    }
}

/// Drop this file description's locks on `len` bytes at `start` (`len == 0`: all).
pub(crate) fn range_unlock(file: &File, start: u64, len: u64) -> io::Result<()> {
    let fl = flock_struct(libc::F_UNLCK as libc::c_short, start, len)?;
    // SAFETY: valid fd and a valid flock struct.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Does any other lock holder (another open file description, or a POSIX
/// lock of any process) hold a lock on these bytes?
pub(crate) fn range_locked_by_other(file: &File, start: u64, len: u64) -> io::Result<bool> {
    let mut fl = flock_struct(libc::F_WRLCK as libc::c_short, start, len)?;
    // SAFETY: valid fd and a valid, writable flock struct.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

/// How long we wait for a whole-file `flock` held by another process before
/// giving up with an error, so that a stuck or hostile process cannot hang us.
pub(crate) const FLOCK_DEADLINE: Duration = Duration::from_secs(2);

/// An exclusive `flock` on a file, released on drop.
pub(crate) struct FlockGuard<'a>(&'a File);

impl Drop for FlockGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: valid fd. Failure leaves the lock to be dropped with the fd.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// Take an exclusive `flock`, retrying until [`FLOCK_DEADLINE`].
pub(crate) fn flock_exclusive(file: &File) -> io::Result<FlockGuard<'_>> {
    let start = Instant::now();
    let mut pause = Duration::from_micros(50);
    loop {
        // SAFETY: valid fd.
        let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if r == 0 {
            return Ok(FlockGuard(file));
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(e);
        }
        if start.elapsed() > FLOCK_DEADLINE {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("lock held by another process for more than {FLOCK_DEADLINE:?}"),
            ));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}

/// A range of our address space, unmapped on drop.
pub(crate) struct Region {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the region is only a pointer and a length; unmapping it from any
// thread is fine, and every access goes through `Mapping`'s methods.
unsafe impl Send for Region {}
unsafe impl Sync for Region {}

impl Region {
    /// Reserve `pages` pages of address space with no access, so that pages
    /// can be placed into it one by one (gntdev hands out one contiguous
    /// range, whatever the frames behind it).
    pub(crate) fn reserve(pages: usize) -> io::Result<Region> {
        let len = pages
            .checked_mul(PAGE_SIZE)
            .filter(|&l| l > 0)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad region size"))?;
        // SAFETY: a fresh anonymous mapping; the kernel chooses the address.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Region { ptr, len })
    }

    /// Map the whole of `file` (`len` bytes from offset 0) shared.
    pub(crate) fn map_file(file: &File, len: usize, writable: bool) -> io::Result<Region> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty file"));
        }
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: a fresh shared mapping of a file we hold open.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Region { ptr, len })
    }

    /// Put page `frame` of `file` at page `slot` of this region.
    pub(crate) fn place_page(
        &self,
        slot: usize,
        file: &File,
        frame: u64,
        writable: bool,
    ) -> io::Result<()> {
        let bad = || {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "page slot or frame out of range",
            )
        };
        let offset = slot
            .checked_mul(PAGE_SIZE)
            .filter(|&o| o < self.len)
            .ok_or_else(bad)?;
        let file_offset = frame
            .checked_mul(PAGE_SIZE as u64)
            .and_then(|o| libc::off_t::try_from(o).ok())
            .ok_or_else(bad)?;
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: the target lies inside our own reservation (checked above),
        // so MAP_FIXED replaces only pages we own.
        let ptr = unsafe {
            libc::mmap(
                (self.ptr as *mut u8).add(offset) as *mut libc::c_void,
                PAGE_SIZE,
                prot,
                libc::MAP_SHARED | libc::MAP_FIXED,
                file.as_raw_fd(),
                file_offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub(crate) fn ptr(&self) -> *mut u8 {
        self.ptr as *mut u8
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: we own this range.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}
