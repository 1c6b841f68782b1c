//! The xenstore seam.
//!
//! The gateway talks to xenstored (real or simulated) through [`Store`]. Paths
//! are absolute xenstore paths; values are strings, as every xenbus driver
//! treats them.

use std::pin::Pin;

use futures::Stream;

use crate::DomId;

/// A stream of paths that changed at or below a watched path. The first item
/// is always the watched path itself (xenstored fires every new watch once).
pub type WatchStream = Pin<Box<dyn Stream<Item = String> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("xenstore: {path}: no such node")]
    NotFound { path: String },
    #[error("xenstore: {path}: permission denied")]
    PermissionDenied { path: String },
    /// A transaction conflicted with another writer; retry it.
    #[error("xenstore: transaction conflict, retry")]
    Again,
    #[error("xenstore: {path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("xenstore: {0}")]
    Io(#[from] std::io::Error),
}

/// Access rights in one xenstore permission entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PermAccess {
    None,
    Read,
    Write,
    Both,
}

/// One xenstore permission entry. In a node's permission list the first entry
/// names the owner and the access every domain not listed gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Perm {
    pub domid: DomId,
    pub access: PermAccess,
}

impl Perm {
    /// The wire form: `n0`, `r5`, `w1`, `b2`.
    pub fn to_wire(self) -> String {
        let c = match self.access {
            PermAccess::None => 'n',
            PermAccess::Read => 'r',
            PermAccess::Write => 'w',
            PermAccess::Both => 'b',
        };
        format!("{c}{}", self.domid)
    }

    pub fn from_wire(s: &str) -> Option<Perm> {
        let mut chars = s.chars();
        let access = match chars.next()? {
            'n' => PermAccess::None,
            'r' => PermAccess::Read,
            'w' => PermAccess::Write,
            'b' => PermAccess::Both,
            _ => return None,
        };
        let domid = chars.as_str().parse().ok()?;
        Some(Perm { domid, access })
    }
}

/// Operations valid both outside and inside a transaction.
#[async_trait::async_trait]
pub trait StoreOps: Send + Sync {
    async fn read(&self, path: &str) -> Result<String, StoreError>;
    async fn write(&self, path: &str, value: &str) -> Result<(), StoreError>;
    async fn mkdir(&self, path: &str) -> Result<(), StoreError>;
    /// Remove a node and everything below it.
    async fn rm(&self, path: &str) -> Result<(), StoreError>;
    /// The names (not full paths) of a node's children.
    async fn directory(&self, path: &str) -> Result<Vec<String>, StoreError>;
    async fn get_perms(&self, path: &str) -> Result<Vec<Perm>, StoreError>;
    async fn set_perms(&self, path: &str, perms: &[Perm]) -> Result<(), StoreError>;

    /// `read`, with "no such node" as `None`.
    async fn read_opt(&self, path: &str) -> Result<Option<String>, StoreError> {
        match self.read(path).await {
            Ok(v) => Ok(Some(v)),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A connection to xenstore.
#[async_trait::async_trait]
pub trait Store: StoreOps {
    /// Watch `path` and everything below it.
    async fn watch(&self, path: &str) -> Result<WatchStream, StoreError>;
    /// `/local/domain/<domid>`.
    async fn get_domain_path(&self, domid: DomId) -> Result<String, StoreError>;
    /// Start a transaction. Prefer [`transaction`], which retries on conflict.
    async fn transaction_start(&self) -> Result<Box<dyn StoreTransaction>, StoreError>;
}

/// An open transaction: reads see a snapshot, writes become visible together
/// at commit, or not at all.
#[async_trait::async_trait]
pub trait StoreTransaction: StoreOps {
    /// Commit. `Err(StoreError::Again)` means another writer changed what the
    /// transaction touched: start again.
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;
    async fn abort(self: Box<Self>) -> Result<(), StoreError>;
}

/// How many times [`transaction`] retries a conflicting transaction.
pub const TRANSACTION_RETRIES: usize = 16;

/// Run `body` in a transaction, retrying it from the start on conflict.
pub async fn transaction<T, F>(store: &dyn Store, mut body: F) -> Result<T, StoreError>
where
    F: for<'a> FnMut(
        &'a dyn StoreTransaction,
    ) -> futures::future::BoxFuture<'a, Result<T, StoreError>>,
{
    for _ in 0..TRANSACTION_RETRIES {
        let tx = store.transaction_start().await?;
        let value = match body(tx.as_ref()).await {
            Ok(v) => v,
            Err(e) => {
                // The body failed: drop its writes. An abort error changes nothing.
                let _ = tx.abort().await;
                return Err(e);
            }
        };
        match tx.commit().await {
            Ok(()) => return Ok(value),
            Err(StoreError::Again) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Again)
}
