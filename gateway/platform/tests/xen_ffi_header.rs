//! Our run-time bindings to libxengnttab and libxenevtchn against Xen's own
//! headers: every function type we load is written out as C and compiled
//! against `/usr/include/xengnttab.h` and `xenevtchn.h` with `-Werror`, so
//! a wrong argument count or type fails here rather than corrupting memory
//! in dom0. Also: the installed libraries have every symbol we load.

use std::io::Write;
use std::process::{Command, Stdio};

use pvgate_platform::xen::ffi::{CSignature, EvtchnFns, GnttabFns};

const INSTALL_HINT: &str = "apt-get install libxen-dev gcc";

/// Compile `decls` after the two headers; Ok or gcc's complaint.
fn compile(decls: &str) -> Result<(), String> {
    let source = format!("#include <xengnttab.h>\n#include <xenevtchn.h>\n{decls}");
    let mut gcc = Command::new("gcc")
        .args([
            "-std=c11",
            "-Wall",
            "-Werror",
            "-fsyntax-only",
            "-x",
            "c",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run gcc ({e}); this test needs it: {INSTALL_HINT}"));
    gcc.stdin
        .take()
        .unwrap()
        .write_all(source.as_bytes())
        .unwrap();
    let out = gcc.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn all_signatures() -> Vec<CSignature> {
    let mut sigs = GnttabFns::c_signatures();
    sigs.extend(EvtchnFns::c_signatures());
    sigs
}

#[test]
fn every_loaded_function_matches_the_header() {
    assert!(
        std::path::Path::new("/usr/include/xengnttab.h").exists(),
        "Xen's headers are missing: {INSTALL_HINT}"
    );
    let sigs = all_signatures();
    assert_eq!(sigs.len(), 9 + 9);
    let decls: String = sigs.iter().map(CSignature::c_check).collect();
    if let Err(e) = compile(&decls) {
        panic!("our bindings disagree with Xen's headers:\n{e}\n--- checked:\n{decls}");
    }
}

#[test]
fn the_check_catches_a_wrong_signature() {
    // set_max_grants returns int; claiming void * must not compile, nor may
    // a missing argument.
    let wrong_return = CSignature {
        name: "xengnttab_set_max_grants",
        ret: "void *",
        args: vec!["xengnttab_handle *", "uint32_t"],
    };
    assert!(compile(&wrong_return.c_check()).is_err());
    let missing_arg = CSignature {
        name: "xengnttab_map_domain_grant_refs",
        ret: "void *",
        args: vec!["xengnttab_handle *", "uint32_t", "uint32_t *", "int"],
    };
    assert!(compile(&missing_arg.c_check()).is_err());
    let wrong_width = CSignature {
        name: "xenevtchn_notify",
        ret: "int",
        args: vec!["xenevtchn_handle *", "uint16_t"],
    };
    assert!(compile(&wrong_width.c_check()).is_err());
}

#[test]
fn the_installed_libraries_have_every_function_we_load() {
    // libxen-dev (installed by deploy/install-deps.sh) pulls both in.
    GnttabFns::load().unwrap_or_else(|e| panic!("{e}"));
    EvtchnFns::load().unwrap_or_else(|e| panic!("{e}"));
}
