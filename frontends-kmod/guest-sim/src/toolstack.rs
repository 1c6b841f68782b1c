//! The dom0 toolstack's part: what `xl create` (libxl) writes to xenstore for
//! a domain with `vdispl=`, `vsnd=` and `vkb=` lines, and what `xl destroy`
//! removes.
//!
//! Facts carried over from libxl (`libxl__device_add_async`,
//! `libxl__device_generic_add`, `libxl__set_xenstore_{vdispl,vsnd,vkb}`):
//! - frontend dir `/local/domain/<domid>/device/<kind>/<devid>`, owned by the
//!   guest, readable by the backend (`n<domid> r<backend>`); it holds
//!   `backend`, `backend-id`, `state`=1 and the device's configuration. vdispl
//!   writes its configuration (`be-alloc`, `<i>/resolution`, `<i>/unique-id`)
//!   as read-only entries owned by the backend (`n<backend> r<domid>`) so the
//!   guest cannot change it; vsnd writes its card tree as ordinary entries.
//! - backend dir `/local/domain/<backend>/backend/<kind>/<domid>/<devid>`,
//!   owned by the backend domain, readable by the guest; it holds `frontend`,
//!   `frontend-id`, `online`=1, `state`=1 and, for vkb, the `feature-*`,
//!   `width`/`height` and multi-touch keys.
//! - `/libxl/<domid>/device/<kind>/<devid>/{frontend,backend}` for the
//!   toolstack's own bookkeeping.
//! - everything for one device is written in one transaction.
//!
//! The plan ([`DevicePlan`]) is pure data so that it can be checked in unit
//! tests; [`Toolstack`] applies it through a [`Store`].

use futures::FutureExt;
use pvgate_platform::{store, Perm, PermAccess, Store, StoreError};

use crate::config::{DisplayConfig, GuestConfig, InputConfig, PcmParams, SoundCardConfig};
use crate::DomId;

/// XenbusStateInitialising, what the toolstack writes for both ends.
const STATE_INITIALISING: &str = "1";
/// XenbusStateClosing and XenbusStateClosed, for teardown.
const STATE_CLOSING: &str = "5";
const STATE_CLOSED: &str = "6";

/// One xenstore entry to write, relative to a device directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    /// `None`: inherit the directory's permissions (xenstored's default for
    /// a new node).
    pub perms: Option<Vec<Perm>>,
}

/// Everything libxl writes for one device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevicePlan {
    /// Frontend kind (`vdispl`, `vsnd`, `vkbd`).
    pub kind: &'static str,
    /// Backend kind (differs for a vkb with backend-type=linux: `vinput`).
    pub backend_kind: &'static str,
    pub domid: DomId,
    pub backend: DomId,
    pub devid: u32,
    pub frontend_path: String,
    pub backend_path: String,
    pub libxl_path: String,
    pub frontend_perms: Vec<Perm>,
    pub backend_perms: Vec<Perm>,
    pub frontend_entries: Vec<Entry>,
    pub backend_entries: Vec<Entry>,
}

fn perm(domid: DomId, access: PermAccess) -> Perm {
    Perm { domid, access }
}

fn entry(key: impl Into<String>, value: impl Into<String>) -> Entry {
    Entry {
        key: key.into(),
        value: value.into(),
        perms: None,
    }
}

impl DevicePlan {
    fn new(
        kind: &'static str,
        backend_kind: &'static str,
        domid: DomId,
        backend: DomId,
        devid: u32,
    ) -> DevicePlan {
        let frontend_path = format!("/local/domain/{domid}/device/{kind}/{devid}");
        let backend_path =
            format!("/local/domain/{backend}/backend/{backend_kind}/{domid}/{devid}");
        DevicePlan {
            kind,
            backend_kind,
            domid,
            backend,
            devid,
            libxl_path: format!("/libxl/{domid}/device/{kind}/{devid}"),
            frontend_perms: vec![
                perm(domid, PermAccess::None),
                perm(backend, PermAccess::Read),
            ],
            backend_perms: vec![
                perm(backend, PermAccess::None),
                perm(domid, PermAccess::Read),
            ],
            frontend_entries: vec![
                entry("backend", backend_path.clone()),
                entry("backend-id", backend.to_string()),
                entry("state", STATE_INITIALISING),
            ],
            backend_entries: vec![
                entry("frontend", frontend_path.clone()),
                entry("frontend-id", domid.to_string()),
                entry("online", "1"),
                entry("state", STATE_INITIALISING),
            ],
            frontend_path,
            backend_path,
        }
    }

    /// libxl's read-only frontend entry: owned by the backend, guest reads.
    fn read_only_front(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.frontend_entries.push(Entry {
            key: key.into(),
            value: value.into(),
            perms: Some(vec![
                perm(self.backend, PermAccess::None),
                perm(self.domid, PermAccess::Read),
            ]),
        });
    }

    pub fn vdispl(domid: DomId, devid: u32, cfg: &DisplayConfig) -> DevicePlan {
        let mut plan = DevicePlan::new("vdispl", "vdispl", domid, cfg.backend, devid);
        plan.read_only_front("be-alloc", if cfg.be_alloc { "1" } else { "0" });
        for (i, conn) in cfg.connectors.iter().enumerate() {
            plan.read_only_front(
                format!("{i}/resolution"),
                format!("{}x{}", conn.width, conn.height),
            );
            plan.read_only_front(format!("{i}/unique-id"), conn.unique_id.clone());
        }
        plan
    }

    pub fn vsnd(domid: DomId, devid: u32, cfg: &SoundCardConfig) -> DevicePlan {
        let mut plan = DevicePlan::new("vsnd", "vsnd", domid, cfg.backend, devid);
        if let Some(name) = &cfg.long_name {
            plan.frontend_entries.push(entry("long-name", name.clone()));
        }
        if let Some(name) = &cfg.short_name {
            plan.frontend_entries
                .push(entry("short-name", name.clone()));
        }
        push_pcm_params(&mut plan.frontend_entries, "", &cfg.params);
        for (d, pcm) in cfg.pcms.iter().enumerate() {
            if let Some(name) = &pcm.name {
                plan.frontend_entries
                    .push(entry(format!("{d}/name"), name.clone()));
            }
            push_pcm_params(&mut plan.frontend_entries, &format!("{d}/"), &pcm.params);
            for (s, stream) in pcm.streams.iter().enumerate() {
                let prefix = format!("{d}/{s}/");
                plan.frontend_entries.push(entry(
                    format!("{prefix}unique-id"),
                    stream.unique_id.clone(),
                ));
                plan.frontend_entries.push(entry(
                    format!("{prefix}type"),
                    stream.stream_type.as_xenstore(),
                ));
                push_pcm_params(&mut plan.frontend_entries, &prefix, &stream.params);
            }
        }
        plan
    }

    pub fn vkb(domid: DomId, devid: u32, cfg: &InputConfig) -> DevicePlan {
        let mut plan = DevicePlan::new("vkbd", cfg.backend_kind(), domid, cfg.backend, devid);
        let b = &mut plan.backend_entries;
        if let Some(id) = &cfg.unique_id {
            b.push(entry("unique-id", id.clone()));
        }
        let flags = [
            ("feature-disable-keyboard", cfg.feature_disable_keyboard),
            ("feature-disable-pointer", cfg.feature_disable_pointer),
            ("feature-abs-pointer", cfg.feature_abs_pointer),
            ("feature-raw-pointer", cfg.feature_raw_pointer),
        ];
        for (key, on) in flags {
            if on {
                b.push(entry(key, "1"));
            }
        }
        if cfg.feature_multi_touch {
            b.push(entry("feature-multi-touch", "1"));
            b.push(entry(
                "multi-touch-width",
                cfg.multi_touch_width.unwrap_or(0).to_string(),
            ));
            b.push(entry(
                "multi-touch-height",
                cfg.multi_touch_height.unwrap_or(0).to_string(),
            ));
            b.push(entry(
                "multi-touch-num-contacts",
                cfg.multi_touch_num_contacts.unwrap_or(0).to_string(),
            ));
        }
        if let Some(w) = cfg.width {
            b.push(entry("width", w.to_string()));
        }
        if let Some(h) = cfg.height {
            b.push(entry("height", h.to_string()));
        }
        plan
    }
}

/// libxl writes lists with ',' (sndif's XENSND_LIST_SEPARATOR) and only the
/// parameters that were given, so that the rest is inherited.
fn push_pcm_params(out: &mut Vec<Entry>, prefix: &str, p: &PcmParams) {
    if !p.sample_rates.is_empty() {
        let rates: Vec<String> = p.sample_rates.iter().map(u32::to_string).collect();
        out.push(entry(format!("{prefix}sample-rates"), rates.join(",")));
    }
    if !p.sample_formats.is_empty() {
        out.push(entry(
            format!("{prefix}sample-formats"),
            p.sample_formats.join(","),
        ));
    }
    if let Some(v) = p.channels_min.filter(|v| *v != 0) {
        out.push(entry(format!("{prefix}channels-min"), v.to_string()));
    }
    if let Some(v) = p.channels_max.filter(|v| *v != 0) {
        out.push(entry(format!("{prefix}channels-max"), v.to_string()));
    }
    if let Some(v) = p.buffer_size.filter(|v| *v != 0) {
        out.push(entry(format!("{prefix}buffer-size"), v.to_string()));
    }
}

/// All devices of a guest, devids numbered per kind from 0 as libxl does.
pub fn plan_devices(cfg: &GuestConfig) -> Vec<DevicePlan> {
    let mut plans = Vec::new();
    for (i, d) in cfg.displays.iter().enumerate() {
        plans.push(DevicePlan::vdispl(cfg.domid, i as u32, d));
    }
    for (i, c) in cfg.sound_cards.iter().enumerate() {
        plans.push(DevicePlan::vsnd(cfg.domid, i as u32, c));
    }
    for (i, k) in cfg.inputs.iter().enumerate() {
        plans.push(DevicePlan::vkb(cfg.domid, i as u32, k));
    }
    plans
}

/// Registering a domain with xenstored (XS_INTRODUCE / XS_RELEASE). Only the
/// toolstack may do this; on the simulator it is how a domain comes to exist.
#[async_trait::async_trait]
pub trait DomainRegistry: Send + Sync {
    async fn introduce(&self, domid: DomId) -> Result<(), StoreError>;
    async fn release(&self, domid: DomId) -> Result<(), StoreError>;
}

/// dom0's toolstack, talking to xenstore as dom0.
pub struct Toolstack<'a> {
    store: &'a dyn Store,
    registry: &'a dyn DomainRegistry,
}

impl<'a> Toolstack<'a> {
    pub fn new(store: &'a dyn Store, registry: &'a dyn DomainRegistry) -> Self {
        Toolstack { store, registry }
    }

    /// Make the domain known to xenstore and create all its devices.
    pub async fn create_domain(&self, cfg: &GuestConfig) -> Result<Vec<DevicePlan>, StoreError> {
        let domid = cfg.domid;
        self.registry.introduce(domid).await?;
        let dom_path = format!("/local/domain/{domid}");
        let name = cfg.name.clone();
        store::transaction(self.store, |tx| {
            let dom_path = dom_path.clone();
            let name = name.clone();
            async move {
                // libxl__domain_make: the domain's own dir is readable by the
                // guest but not writable; `device` (and friends) are the
                // guest's.
                tx.mkdir(&dom_path).await?;
                tx.set_perms(
                    &dom_path,
                    &[perm(0, PermAccess::None), perm(domid, PermAccess::Read)],
                )
                .await?;
                for sub in [
                    "device", "control", "data", "drivers", "feature", "attr", "error",
                ] {
                    let p = format!("{dom_path}/{sub}");
                    tx.mkdir(&p).await?;
                    tx.set_perms(&p, &[perm(domid, PermAccess::None)]).await?;
                }
                tx.write(&format!("{dom_path}/name"), &name).await?;
                tx.write(&format!("{dom_path}/domid"), &domid.to_string())
                    .await?;
                Ok(())
            }
            .boxed()
        })
        .await?;
        let plans = plan_devices(cfg);
        for plan in &plans {
            self.add_device(plan).await?;
        }
        Ok(plans)
    }

    /// `libxl__device_generic_add` for one device, in one transaction.
    pub async fn add_device(&self, plan: &DevicePlan) -> Result<(), StoreError> {
        store::transaction(self.store, |tx| {
            let plan = plan.clone();
            async move {
                let _ = tx.rm(&plan.libxl_path).await;
                tx.write(
                    &format!("{}/frontend", plan.libxl_path),
                    &plan.frontend_path,
                )
                .await?;
                tx.write(&format!("{}/backend", plan.libxl_path), &plan.backend_path)
                    .await?;

                ignore_missing(tx.rm(&plan.frontend_path).await)?;
                tx.mkdir(&plan.frontend_path).await?;
                tx.set_perms(&plan.frontend_path, &plan.frontend_perms)
                    .await?;
                for e in &plan.frontend_entries {
                    let path = format!("{}/{}", plan.frontend_path, e.key);
                    tx.write(&path, &e.value).await?;
                    tx.set_perms(&path, e.perms.as_deref().unwrap_or(&plan.frontend_perms))
                        .await?;
                }

                ignore_missing(tx.rm(&plan.backend_path).await)?;
                tx.mkdir(&plan.backend_path).await?;
                tx.set_perms(&plan.backend_path, &plan.backend_perms)
                    .await?;
                for e in &plan.backend_entries {
                    let path = format!("{}/{}", plan.backend_path, e.key);
                    tx.write(&path, &e.value).await?;
                    if let Some(perms) = &e.perms {
                        tx.set_perms(&path, perms).await?;
                    }
                }
                Ok(())
            }
            .boxed()
        })
        .await
    }

    /// What `xl destroy` does to a device: ask both ends to close, then
    /// remove the nodes.
    pub async fn remove_device(&self, plan: &DevicePlan) -> Result<(), StoreError> {
        // Best effort: an end may already have gone.
        let _ = self
            .store
            .write(&format!("{}/online", plan.backend_path), "0")
            .await;
        let _ = self
            .store
            .write(&format!("{}/state", plan.backend_path), STATE_CLOSING)
            .await;
        let _ = self
            .store
            .write(&format!("{}/state", plan.frontend_path), STATE_CLOSED)
            .await;
        ignore_missing(self.store.rm(&plan.frontend_path).await)?;
        ignore_missing(self.store.rm(&plan.backend_path).await)?;
        ignore_missing(self.store.rm(&plan.libxl_path).await)?;
        Ok(())
    }

    /// Remove every device, the domain's nodes, and release the domain.
    pub async fn destroy_domain(
        &self,
        domid: DomId,
        plans: &[DevicePlan],
    ) -> Result<(), StoreError> {
        for plan in plans {
            self.remove_device(plan).await?;
        }
        ignore_missing(self.store.rm(&format!("/local/domain/{domid}")).await)?;
        ignore_missing(self.store.rm(&format!("/libxl/{domid}")).await)?;
        self.registry.release(domid).await
    }
}

fn ignore_missing(r: Result<(), StoreError>) -> Result<(), StoreError> {
    match r {
        Err(StoreError::NotFound { .. }) => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::*;

    fn find<'a>(entries: &'a [Entry], key: &str) -> &'a Entry {
        entries
            .iter()
            .find(|e| e.key == key)
            .unwrap_or_else(|| panic!("no {key}"))
    }

    #[test]
    fn vdispl_plan_matches_libxl() {
        let cfg =
            DisplayConfig::parse("backend=0,be-alloc=1,connectors=a:1280x720;b:1920x1080").unwrap();
        let p = DevicePlan::vdispl(5, 0, &cfg);
        assert_eq!(p.frontend_path, "/local/domain/5/device/vdispl/0");
        assert_eq!(p.backend_path, "/local/domain/0/backend/vdispl/5/0");
        assert_eq!(
            p.frontend_perms,
            vec![perm(5, PermAccess::None), perm(0, PermAccess::Read)]
        );
        assert_eq!(
            p.backend_perms,
            vec![perm(0, PermAccess::None), perm(5, PermAccess::Read)]
        );
        assert_eq!(find(&p.frontend_entries, "state").value, "1");
        assert_eq!(find(&p.frontend_entries, "backend-id").value, "0");
        assert_eq!(find(&p.frontend_entries, "backend").value, p.backend_path);
        let res = find(&p.frontend_entries, "1/resolution");
        assert_eq!(res.value, "1920x1080");
        // Read-only for the guest: owned by the backend.
        assert_eq!(
            res.perms,
            Some(vec![perm(0, PermAccess::None), perm(5, PermAccess::Read)])
        );
        assert_eq!(find(&p.frontend_entries, "be-alloc").value, "1");
        assert_eq!(find(&p.frontend_entries, "0/unique-id").value, "a");
        assert_eq!(find(&p.backend_entries, "frontend-id").value, "5");
        assert_eq!(find(&p.backend_entries, "online").value, "1");
        assert_eq!(find(&p.backend_entries, "frontend").value, p.frontend_path);
    }

    #[test]
    fn vsnd_plan_writes_only_given_params() {
        let card = SoundCardConfig::parse(
            "card, short-name=C, sample-rates=44100;48000 | pcm, name=d0 | stream, unique-id=s0, type=p, channels-max=2 | stream, type=c",
        )
        .unwrap();
        let p = DevicePlan::vsnd(3, 0, &card);
        assert_eq!(
            find(&p.frontend_entries, "sample-rates").value,
            "44100,48000"
        );
        assert_eq!(find(&p.frontend_entries, "short-name").value, "C");
        assert_eq!(find(&p.frontend_entries, "0/name").value, "d0");
        assert_eq!(find(&p.frontend_entries, "0/0/type").value, "p");
        assert_eq!(find(&p.frontend_entries, "0/0/unique-id").value, "s0");
        assert_eq!(find(&p.frontend_entries, "0/0/channels-max").value, "2");
        assert_eq!(find(&p.frontend_entries, "0/1/type").value, "c");
        assert!(p
            .frontend_entries
            .iter()
            .all(|e| e.key != "0/1/channels-max"));
        assert!(p.frontend_entries.iter().all(|e| e.key != "buffer-size"));
    }

    #[test]
    fn vkb_plan_puts_features_in_backend_dir() {
        let k = InputConfig::parse("backend-type=linux,feature-abs-pointer=1,width=800,height=600,multi-touch-num-contacts=3")
            .unwrap();
        let p = DevicePlan::vkb(4, 0, &k);
        assert_eq!(p.frontend_path, "/local/domain/4/device/vkbd/0");
        assert_eq!(p.backend_path, "/local/domain/0/backend/vinput/4/0");
        assert_eq!(find(&p.backend_entries, "feature-abs-pointer").value, "1");
        assert_eq!(find(&p.backend_entries, "width").value, "800");
        assert_eq!(
            find(&p.backend_entries, "multi-touch-num-contacts").value,
            "3"
        );
        assert!(p
            .frontend_entries
            .iter()
            .all(|e| !e.key.starts_with("feature")));
    }
}
