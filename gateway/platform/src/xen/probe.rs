//! What the xen platform needs from the machine, checked without touching
//! Xen, so that a failed start can say everything that is missing at once
//! (not only the first thing that failed).

use std::path::{Path, PathBuf};

use super::ffi::{EVTCHN_LIBRARY, GNTTAB_LIBRARY};

/// One thing the xen platform needs, and whether this machine has it.
#[derive(Debug, Clone)]
pub struct Requirement {
    pub what: &'static str,
    /// Where we looked (paths or library names).
    pub looked_at: Vec<PathBuf>,
    pub present: bool,
    /// Without it the platform does not start; the others only disable a
    /// feature (the grant-alloc device: be-alloc display buffers).
    pub required: bool,
    /// What to do when it is missing.
    pub hint: &'static str,
}

/// Directories where Debian and other distributions put the Xen libraries.
/// Only for the report: the loader itself asks the dynamic linker.
const LIB_DIRS: [&str; 5] = [
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
];

/// What the xen platform needs from the machine. Paths are relative to
/// `root` so tests can probe a fake tree.
pub fn probe(root: &Path) -> Vec<Requirement> {
    let at = |p: &str| root.join(p.trim_start_matches('/'));
    let any_exists = |paths: &[PathBuf]| paths.iter().any(|p| p.exists());
    let hypervisor_type = std::fs::read_to_string(at("/sys/hypervisor/type")).unwrap_or_default();
    let lib = |name: &str| -> Vec<PathBuf> { LIB_DIRS.iter().map(|d| at(d).join(name)).collect() };

    let mut reqs = Vec::new();
    reqs.push(Requirement {
        what: "a Xen hypervisor",
        looked_at: vec![at("/sys/hypervisor/type")],
        present: hypervisor_type.trim() == "xen",
        required: true,
        hint: "run pvgate in a Xen dom0 (or a driver domain)",
    });
    let store = vec![at("/run/xenstored/socket"), at("/dev/xen/xenbus")];
    reqs.push(Requirement {
        what: "xenstore (the xenstored socket or the xenbus device)",
        present: any_exists(&store),
        looked_at: store,
        required: true,
        hint: "start xenstored (xencommons); in a container pass /dev/xen/xenbus or mount /run/xenstored",
    });
    for (what, dev, required, hint) in [
        (
            "the grant device",
            "/dev/xen/gntdev",
            true,
            "load xen-gntdev in dom0; in a container pass the device",
        ),
        (
            "the event channel device",
            "/dev/xen/evtchn",
            true,
            "load xen-evtchn in dom0; in a container pass the device",
        ),
        (
            "the grant-alloc device (be-alloc display buffers only)",
            "/dev/xen/gntalloc",
            false,
            "load xen-gntalloc in dom0; in a container pass the device",
        ),
    ] {
        let p = vec![at(dev)];
        reqs.push(Requirement {
            what,
            present: any_exists(&p),
            looked_at: p,
            required,
            hint,
        });
    }
    for (what, name, hint) in [
        (
            "libxengnttab",
            GNTTAB_LIBRARY,
            "apt-get install libxengnttab1 (Debian's Xen runtime libraries)",
        ),
        (
            "libxenevtchn",
            EVTCHN_LIBRARY,
            "apt-get install libxenevtchn1 (Debian's Xen runtime libraries)",
        ),
    ] {
        let p = lib(name);
        reqs.push(Requirement {
            what,
            present: any_exists(&p),
            looked_at: p,
            required: true,
            hint,
        });
    }
    reqs
}

/// Why the xen platform cannot start here, written for the person who ran us.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

/// The report for a start that failed with `failure` (None: the probe
/// alone found something missing), listing what the probe found missing.
pub fn unavailable_report(reqs: &[Requirement], failure: Option<&str>) -> Unavailable {
    let mut msg = String::from("cannot start the xen platform.\n");
    if let Some(failure) = failure {
        msg.push_str(&format!("  {failure}\n"));
    }
    let missing: Vec<_> = reqs.iter().filter(|r| !r.present).collect();
    if !missing.is_empty() {
        msg.push_str("  Missing on this machine:\n");
        for r in &missing {
            let looked: Vec<_> = r
                .looked_at
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            msg.push_str(&format!(
                "  - {}{} (looked at {}): {}\n",
                r.what,
                if r.required { "" } else { " [optional]" },
                looked.join(", "),
                r.hint
            ));
        }
    }
    msg.push_str(
        "  pvgate needs root in a Xen dom0 (or a driver domain) for the real platform.\n  \
         To see pvgate without Xen, run `pvgate demo` (simulated hypervisor and guests),\n  \
         or `pvgate serve --platform sim --sim-dir DIR` against `pvgate sim-xen --dir DIR`.",
    );
    Unavailable(msg)
}

/// The required things the probe found missing, if any.
pub fn missing_required(reqs: &[Requirement]) -> bool {
    reqs.iter().any(|r| r.required && !r.present)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_machine_lacks_everything_and_the_report_says_what_to_do() {
        let root = tempfile::tempdir().unwrap();
        let reqs = probe(root.path());
        assert!(reqs.iter().all(|r| !r.present));
        assert!(missing_required(&reqs));
        let msg = unavailable_report(&reqs, None).0;
        assert!(msg.contains("/dev/xen/gntdev"), "{msg}");
        assert!(msg.contains("/dev/xen/evtchn"), "{msg}");
        assert!(msg.contains("xenstored"), "{msg}");
        assert!(msg.contains("apt-get install libxengnttab1"), "{msg}");
        assert!(msg.contains("apt-get install libxenevtchn1"), "{msg}");
        assert!(
            msg.contains("[optional] (looked at") && msg.contains("gntalloc"),
            "{msg}"
        );
        assert!(msg.contains("pvgate demo"), "{msg}");
    }

    #[test]
    fn a_dom0_like_tree_is_recognised() {
        let root = tempfile::tempdir().unwrap();
        let mk = |p: &str, content: &str| {
            let path = root.path().join(p.trim_start_matches('/'));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        };
        mk("/sys/hypervisor/type", "xen\n");
        mk("/dev/xen/xenbus", "");
        mk("/dev/xen/gntdev", "");
        mk("/dev/xen/evtchn", "");
        mk("/usr/lib/x86_64-linux-gnu/libxengnttab.so.1", "");
        mk("/usr/lib/x86_64-linux-gnu/libxenevtchn.so.1", "");
        let reqs = probe(root.path());
        // Only the optional grant-alloc device is missing.
        assert!(!missing_required(&reqs), "{reqs:?}");
        let missing: Vec<_> = reqs.iter().filter(|r| !r.present).collect();
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert!(!missing[0].required);
        mk("/dev/xen/gntalloc", "");
        assert!(probe(root.path()).iter().all(|r| r.present));
    }

    #[test]
    fn a_failure_is_reported_before_the_missing_list() {
        let root = tempfile::tempdir().unwrap();
        let msg = unavailable_report(&probe(root.path()), Some("xengnttab_open failed: ENOENT")).0;
        let failure = msg.find("xengnttab_open failed").unwrap();
        let missing = msg.find("Missing on this machine").unwrap();
        assert!(failure < missing, "{msg}");
    }
}
