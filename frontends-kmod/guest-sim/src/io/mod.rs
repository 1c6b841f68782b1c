//! The I/O shell shared by the frontends: shared memory, rings and event
//! pages over the platform's grants and event channels.

pub mod channel;
pub mod shm;
pub mod snapshot;
