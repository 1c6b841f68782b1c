//! The store on real Xen: [`XsStore`] over the xenstored socket when there is
//! one, else over the xenbus device, and our own domain id from it.

use std::path::{Path, PathBuf};

use crate::store::{StoreError, StoreOps};
use crate::xs_client::{XsStore, DEFAULT_XENSTORED_PATH, XENBUS_DEVICE};
use crate::DomId;

/// Where to reach xenstore: `$XENSTORED_PATH` if set (as for Xen's own
/// tools and xenstore-rs), else the xenstored socket if present, else the
/// xenbus device. Paths relative to `root` (tests), except the variable.
pub fn store_path(root: &Path, env: Option<PathBuf>) -> PathBuf {
    if let Some(p) = env {
        return p;
    }
    let socket = root.join(DEFAULT_XENSTORED_PATH.trim_start_matches('/'));
    if socket.exists() {
        socket
    } else {
        root.join(XENBUS_DEVICE.trim_start_matches('/'))
    }
}

/// Connect to xenstore on this machine.
pub async fn open() -> Result<XsStore, String> {
    let path = store_path(
        Path::new("/"),
        std::env::var_os("XENSTORED_PATH").map(PathBuf::from),
    );
    XsStore::connect(Some(&path))
        .await
        .map_err(|e| format!("cannot reach xenstore at {}: {e}", path.display()))
}

/// Our domain id: xenstore's relative `domid` resolves to
/// `/local/domain/<us>/domid`. dom0's entry is written by the toolstack at
/// boot (xen-init-dom0); without it we are dom0.
pub async fn own_domid(store: &dyn StoreOps) -> Result<DomId, String> {
    match store.read("domid").await {
        Ok(text) => parse_domid(&text),
        Err(StoreError::NotFound { .. }) | Err(StoreError::PermissionDenied { .. }) => Ok(0),
        Err(e) => Err(format!("cannot read our domain id from xenstore: {e}")),
    }
}

/// Parse the `domid` entry (trusted: our own domain's, written by the
/// toolstack, but still not worth a panic).
pub fn parse_domid(text: &str) -> Result<DomId, String> {
    text.trim()
        .parse::<DomId>()
        .ok()
        .filter(|&d| d < super::grants::DOMID_FIRST_RESERVED)
        .ok_or_else(|| format!("xenstore's domid entry {text:?} is not a domain id"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_is_preferred_then_the_device_and_the_variable_wins() {
        let root = tempfile::tempdir().unwrap();
        let dev = store_path(root.path(), None);
        assert!(dev.ends_with("dev/xen/xenbus"), "{}", dev.display());
        let socket = root.path().join("run/xenstored/socket");
        std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
        std::fs::write(&socket, "").unwrap();
        assert_eq!(store_path(root.path(), None), socket);
        let env = PathBuf::from("/tmp/other");
        assert_eq!(store_path(root.path(), Some(env.clone())), env);
    }

    #[test]
    fn domid_entries_are_parsed_strictly() {
        assert_eq!(parse_domid("0"), Ok(0));
        assert_eq!(parse_domid("7\n"), Ok(7));
        assert!(parse_domid("").is_err());
        assert!(parse_domid("-1").is_err());
        assert!(parse_domid("32753").is_err()); // DOMID_SELF
        assert!(parse_domid("99999").is_err());
    }
}
