//! The real-Xen platform.
//!
//! Not built yet: the real-Xen issue adds the `libxengnttab`/`libxenevtchn`
//! bindings (loaded at run time) and runs against a real dom0. Until then
//! [`connect`] looks at the machine, says exactly what a Xen dom0 would need
//! that is missing here, and points to the simulator, instead of pretending.

use std::path::{Path, PathBuf};

/// One thing the xen platform needs, and whether this machine has it.
#[derive(Debug, Clone)]
pub struct Requirement {
    pub what: &'static str,
    /// Where we looked (paths or library names).
    pub looked_at: Vec<PathBuf>,
    pub present: bool,
    /// What to do when it is missing.
    pub hint: &'static str,
}

/// What the xen platform needs from the machine. Paths are relative to
/// `root` so tests can probe a fake tree.
pub fn probe(root: &Path) -> Vec<Requirement> {
    let at = |p: &str| root.join(p.trim_start_matches('/'));
    let any_exists = |paths: &[PathBuf]| paths.iter().any(|p| p.exists());
    let hypervisor_type = std::fs::read_to_string(at("/sys/hypervisor/type")).unwrap_or_default();
    let lib_dirs = [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
        "/usr/local/lib",
    ];
    let lib = |name: &str| -> Vec<PathBuf> { lib_dirs.iter().map(|d| at(d).join(name)).collect() };

    let mut reqs = Vec::new();
    reqs.push(Requirement {
        what: "a Xen hypervisor",
        looked_at: vec![at("/sys/hypervisor/type")],
        present: hypervisor_type.trim() == "xen",
        hint: "run pvgate in a Xen dom0 (or a driver domain)",
    });
    let store = vec![at("/run/xenstored/socket"), at("/dev/xen/xenbus")];
    reqs.push(Requirement {
        what: "xenstore (the xenstored socket or the xenbus device)",
        present: any_exists(&store),
        looked_at: store,
        hint: "start xenstored (xencommons); in a container pass /dev/xen/xenbus or mount /run/xenstored",
    });
    for (what, dev) in [
        ("the grant device", "/dev/xen/gntdev"),
        ("the event channel device", "/dev/xen/evtchn"),
    ] {
        let p = vec![at(dev)];
        reqs.push(Requirement {
            what,
            present: any_exists(&p),
            looked_at: p,
            hint: "load xen-gntdev / xen-evtchn in dom0; in a container pass the device",
        });
    }
    for (what, name) in [
        ("libxengnttab", "libxengnttab.so.1"),
        ("libxenevtchn", "libxenevtchn.so.1"),
    ] {
        let p = lib(name);
        reqs.push(Requirement {
            what,
            present: any_exists(&p),
            looked_at: p,
            hint:
                "apt-get install libxengnttab1 libxenevtchn1 (Debian: from the xen-utils packages)",
        });
    }
    reqs
}

/// Why the xen platform cannot start here, written for the person who ran us.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

/// Open the xen platform. Always fails in this build, with a message naming
/// what this machine lacks and how to run without Xen.
pub fn connect() -> Result<crate::Platform, Unavailable> {
    Err(unavailable_report(&probe(Path::new("/"))))
}

fn unavailable_report(reqs: &[Requirement]) -> Unavailable {
    let mut msg = String::from("cannot start the xen platform.\n");
    let missing: Vec<_> = reqs.iter().filter(|r| !r.present).collect();
    if missing.is_empty() {
        msg.push_str("  This machine looks like a Xen dom0, but this pvgate build has no real-Xen support yet.\n");
    } else {
        msg.push_str("  Missing on this machine:\n");
        for r in &missing {
            let looked: Vec<_> = r
                .looked_at
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            msg.push_str(&format!(
                "  - {} (looked at {}): {}\n",
                r.what,
                looked.join(", "),
                r.hint
            ));
        }
        msg.push_str(
            "  Also, this pvgate build has no real-Xen support yet (only the simulator).\n",
        );
    }
    msg.push_str(
        "  To see pvgate without Xen, run `pvgate demo` (simulated hypervisor and guests),\n  \
         or `pvgate serve --platform sim --sim-dir DIR` against `pvgate sim-xen --dir DIR`.",
    );
    Unavailable(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_machine_lacks_everything_and_the_report_says_what_to_do() {
        let root = tempfile::tempdir().unwrap();
        let reqs = probe(root.path());
        assert!(reqs.iter().all(|r| !r.present));
        let msg = unavailable_report(&reqs).0;
        assert!(msg.contains("/dev/xen/gntdev"), "{msg}");
        assert!(msg.contains("xenstored"), "{msg}");
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
        assert!(reqs.iter().all(|r| r.present), "{reqs:?}");
        assert!(unavailable_report(&reqs)
            .0
            .contains("no real-Xen support yet"));
    }
}
