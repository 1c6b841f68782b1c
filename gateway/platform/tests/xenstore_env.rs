//! `XsStore::connect(None)` finds the simulated xenstored through
//! `XENSTORED_PATH`, as the gateway finds a real one. Alone in its test
//! binary because it sets a process-wide environment variable.

use pvgate_platform::sim::xenstore::{XenstoreConfig, XenstoreServer};
use pvgate_platform::store::{Store, StoreOps};
use pvgate_platform::xs_client::XsStore;

#[tokio::test]
async fn xenstored_path_names_the_sim_socket() {
    let dir = tempfile::tempdir().unwrap();
    let server = XenstoreServer::start(dir.path(), XenstoreConfig::default())
        .await
        .unwrap();
    std::env::set_var("XENSTORED_PATH", server.dom0_socket());
    let store = XsStore::connect(None).await.unwrap();
    assert_eq!(store.target(), server.dom0_socket().display().to_string());
    store.write("/found", "via XENSTORED_PATH").await.unwrap();
    assert_eq!(store.read("/found").await.unwrap(), "via XENSTORED_PATH");
    assert_eq!(store.get_domain_path(0).await.unwrap(), "/local/domain/0");

    // A socket that is not there is an error naming it, not a silent
    // fallback to the xenbus device.
    std::env::set_var("XENSTORED_PATH", dir.path().join("missing.sock"));
    let err = XsStore::connect(None).await.err().expect("no such socket");
    assert!(err.to_string().contains("missing.sock"), "{err}");
}
