//! Finding the guests' devices: the backend directories under
//! `/local/domain/<self>/backend/<type>/<frontend domid>/<devid>`.
//!
//! `xl create` gives a backend only 10 s to reach InitWait, so the gateway
//! watches these directories from the start rather than polling.

use std::collections::BTreeSet;

use anyhow::Context;
use futures::StreamExt;
use pvgate_platform::{DomId, Platform, Store};

/// The device types pvgate serves (`vinput` is the older name of `vkbd`).
pub const DEVICE_TYPES: [&str; 4] = ["vdispl", "vsnd", "vkbd", "vinput"];

/// One backend device instance.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeviceId {
    pub kind: &'static str,
    pub frontend: DomId,
    pub devid: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Added(DeviceId),
    Removed(DeviceId),
}

/// The devices we know of; turns fresh listings into changes (sans-IO).
#[derive(Default)]
pub struct DeviceSet {
    known: BTreeSet<DeviceId>,
}

impl DeviceSet {
    /// Replace what we know of `kind` with `listing` and say what changed.
    pub fn update(&mut self, kind: &'static str, listing: &[DeviceId]) -> Vec<Change> {
        let fresh: BTreeSet<DeviceId> =
            listing.iter().filter(|d| d.kind == kind).cloned().collect();
        let mut changes = Vec::new();
        self.known.retain(|d| {
            if d.kind == kind && !fresh.contains(d) {
                changes.push(Change::Removed(d.clone()));
                false
            } else {
                true
            }
        });
        for d in fresh {
            if self.known.insert(d.clone()) {
                changes.push(Change::Added(d));
            }
        }
        changes
    }
}

/// List the devices of one kind below `backend_root`. Entries that are not
/// numbers are ignored: the toolstack owns this tree, but a stray node must
/// not stop us serving the others.
async fn list(
    store: &dyn Store,
    backend_root: &str,
    kind: &'static str,
) -> anyhow::Result<Vec<DeviceId>> {
    let dir = format!("{backend_root}/{kind}");
    let mut out = Vec::new();
    let Ok(frontends) = store.directory(&dir).await else {
        return Ok(out);
    };
    for fe in frontends {
        let Ok(frontend) = fe.parse::<DomId>() else {
            continue;
        };
        let Ok(devids) = store.directory(&format!("{dir}/{fe}")).await else {
            continue;
        };
        for dev in devids {
            if let Ok(devid) = dev.parse::<u32>() {
                out.push(DeviceId {
                    kind,
                    frontend,
                    devid,
                });
            }
        }
    }
    Ok(out)
}

/// Watch the backend directories and report each device that appears or goes.
pub async fn run(platform: &Platform, mut on_change: impl FnMut(Change)) -> anyhow::Result<()> {
    let store = platform.store.as_ref();
    let root = format!("{}/backend", store.get_domain_path(platform.domid).await?);
    let mut watches = futures::stream::SelectAll::new();
    for kind in DEVICE_TYPES {
        let path = format!("{root}/{kind}");
        let watch = store
            .watch(&path)
            .await
            .with_context(|| format!("cannot watch {path}"))?;
        watches.push(watch.map(move |_| kind));
    }
    let mut set = DeviceSet::default();
    while let Some(kind) = watches.next().await {
        for change in set.update(kind, &list(store, &root, kind).await?) {
            on_change(change);
        }
    }
    anyhow::bail!("the xenstore connection closed")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(kind: &'static str, frontend: DomId, devid: u32) -> DeviceId {
        DeviceId {
            kind,
            frontend,
            devid,
        }
    }

    #[test]
    fn listings_become_additions_and_removals_per_kind() {
        let mut set = DeviceSet::default();
        let a = dev("vdispl", 5, 0);
        let b = dev("vdispl", 6, 0);
        let s = dev("vsnd", 5, 0);
        assert_eq!(
            set.update("vsnd", std::slice::from_ref(&s)),
            vec![Change::Added(s.clone())]
        );
        assert_eq!(
            set.update("vdispl", &[a.clone(), b.clone()]),
            vec![Change::Added(a.clone()), Change::Added(b.clone())]
        );
        assert_eq!(
            set.update("vdispl", std::slice::from_ref(&b)),
            vec![Change::Removed(a)]
        );
        // Another kind's listing never removes this kind's devices.
        assert_eq!(set.update("vdispl", &[b]), vec![]);
        assert_eq!(set.update("vsnd", &[]), vec![Change::Removed(s)]);
    }
}
