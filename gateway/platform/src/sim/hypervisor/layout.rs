//! Where each piece of the simulated hypervisor lives in the sim directory,
//! and the fixed sizes. The module docs of [`super`] describe the formats.

use std::path::{Path, PathBuf};

use crate::DomId;

/// Entries in every simulated v1 grant table.
pub const GRANT_ENTRIES: u32 = 32768;
/// Bytes per `struct grant_entry_v1`.
pub const GRANT_ENTRY_SIZE: usize = 8;
/// Size of the `grant-table` file.
pub const GRANT_TABLE_BYTES: usize = GRANT_ENTRIES as usize * GRANT_ENTRY_SIZE;
/// Grefs below this are never handed out by our allocator (Linux keeps 0..7
/// for the toolstack; 0 also means "no grant" in every PV protocol).
pub const FIRST_ALLOCATABLE_GREF: u32 = 8;
/// The largest simulated memory we accept (frames must fit the u32 `frame` field
/// and file offsets must stay sane): 4 GiB.
pub const MAX_MEMORY_PAGES: usize = 1 << 20;

/// The files of one domain under `DIR/domains/<domid>/`.
#[derive(Clone, Debug)]
pub struct DomainPaths {
    pub dir: PathBuf,
}

impl DomainPaths {
    pub fn new(sim_dir: &Path, domid: DomId) -> DomainPaths {
        DomainPaths {
            dir: sim_dir.join("domains").join(domid.to_string()),
        }
    }
    /// The domain's RAM: frame f is bytes [f*4096, (f+1)*4096).
    pub fn memory(&self) -> PathBuf {
        self.dir.join("memory")
    }
    /// Byte-range lock file: byte f is write-locked by whoever owns frame f.
    pub fn memory_owners(&self) -> PathBuf {
        self.dir.join("memory-owners")
    }
    /// The v1 grant table.
    pub fn grant_table(&self) -> PathBuf {
        self.dir.join("grant-table")
    }
    /// Byte-range lock file: bytes 2g and 2g+1 are the pins of gref g.
    pub fn grant_pins(&self) -> PathBuf {
        self.dir.join("grant-pins")
    }
    /// The event channel control socket (connections to it are this domain).
    pub fn evtchn_socket(&self) -> PathBuf {
        self.dir.join("evtchn.sock")
    }
    /// Notification sockets and peer links.
    pub fn ports_dir(&self) -> PathBuf {
        self.dir.join("ports")
    }
    /// The link the hypervisor keeps from a bound port to its peer's socket.
    pub fn peer_link(&self, port: crate::Port) -> PathBuf {
        self.ports_dir().join(format!("{port}.peer"))
    }
}
