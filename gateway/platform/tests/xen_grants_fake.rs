//! The xen platform's grant mapper end to end, without Xen: a fake
//! `libxengnttab` (C, built here with gcc) that "maps" grants as anonymous
//! memory stamped with each page's ref. It shows that our calls pass the
//! right counts, domains, refs and protections, that every mapping and
//! share is undone on drop, that a refused ref is named, and that guest
//! counts beyond the cap never reach the library. Real gntdev/gntalloc
//! behaviour waits for the QEMU test in tests/xen-qemu/.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use pvgate_platform::xen::ffi::GnttabFns;
use pvgate_platform::xen::grants::MAX_REFS_PER_MAPPING;
use pvgate_platform::xen::XenGrantMapper;
use pvgate_platform::{GrantError, GrantMapper};

const FAKE: &str = r#"
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static int mapped, shared, map_calls, unmaps, gntalloc_absent;
static uint32_t max_grants, last_domid, last_writable;

void *xengnttab_open(void *logger, unsigned flags) { return malloc(1); }
int xengnttab_close(void *h) { free(h); return 0; }
int xengnttab_set_max_grants(void *h, uint32_t n) { max_grants = n; return 0; }
void *xengnttab_map_domain_grant_refs(void *h, uint32_t count, uint32_t domid,
                                      uint32_t *refs, int prot) {
    map_calls++;
    for (uint32_t i = 0; i < count; i++) {
        /* 666: not a grant of this domain; 777: a read-only grant. */
        if (refs[i] == 666 || (refs[i] == 777 && (prot & PROT_WRITE))) {
            errno = EINVAL;
            return NULL;
        }
    }
    uint32_t *p = mmap(NULL, count * 4096, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    for (uint32_t i = 0; i < count; i++) p[i * 1024] = refs[i];
    mprotect(p, count * 4096, prot);
    mapped += count;
    last_domid = domid;
    return p;
}
int xengnttab_unmap(void *h, void *addr, uint32_t count) {
    munmap(addr, count * 4096);
    mapped -= count;
    unmaps++;
    return 0;
}
void *xengntshr_open(void *logger, unsigned flags) {
    if (gntalloc_absent) { errno = ENOENT; return NULL; }
    return malloc(1);
}
int xengntshr_close(void *h) { free(h); return 0; }
void *xengntshr_share_pages(void *h, uint32_t domid, int count, uint32_t *refs,
                            int writable) {
    void *p = mmap(NULL, count * 4096, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    for (int i = 0; i < count; i++) refs[i] = 100 + i;
    shared += count;
    last_domid = domid;
    last_writable = writable;
    return p;
}
int xengntshr_unshare(void *h, void *addr, uint32_t count) {
    munmap(addr, count * 4096);
    shared -= count;
    return 0;
}

int fake_mapped(void) { return mapped; }
int fake_shared(void) { return shared; }
int fake_map_calls(void) { return map_calls; }
int fake_unmaps(void) { return unmaps; }
uint32_t fake_max_grants(void) { return max_grants; }
uint32_t fake_last_domid(void) { return last_domid; }
uint32_t fake_last_writable(void) { return last_writable; }
void fake_gntalloc_absent(int absent) { gntalloc_absent = absent; }
"#;

fn build_fake(dir: &Path) -> PathBuf {
    let src = dir.join("fake_gnttab.c");
    let lib = dir.join("libfakegnttab.so");
    std::fs::write(&src, FAKE).unwrap();
    let out = Command::new("gcc")
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(&lib)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run gcc ({e}); this test needs it: apt-get install gcc")
        });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    lib
}

/// The fake's counters (dlopen of the same path shares its state).
struct Fake(libloading::Library);

impl Fake {
    fn open(path: &Path) -> Fake {
        // SAFETY: our fake library.
        Fake(unsafe { libloading::Library::new(path) }.unwrap())
    }
    fn get(&self, name: &str) -> u32 {
        let mut cname = name.as_bytes().to_vec();
        cname.push(0);
        // SAFETY: every fake_* counter is `T fake_x(void)` with a 32-bit T.
        unsafe {
            let f: unsafe extern "C" fn() -> u32 = *self.0.get(&cname).unwrap();
            f()
        }
    }
    fn gntalloc_absent(&self) {
        // SAFETY: `void fake_gntalloc_absent(int)`.
        unsafe {
            let f: unsafe extern "C" fn(i32) = *self.0.get(b"fake_gntalloc_absent\0").unwrap();
            f(1)
        }
    }
}

fn mapper(path: &Path) -> XenGrantMapper {
    let fns = GnttabFns::load_from(path.to_str().unwrap()).unwrap();
    XenGrantMapper::open(Arc::new(fns)).unwrap()
}

#[test]
fn grants_are_mapped_in_order_with_the_asked_protection_and_unmapped_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let path = build_fake(dir.path());
    let fake = Fake::open(&path);
    let grants = mapper(&path);
    assert_eq!(fake.get("fake_max_grants"), 1 << 18);

    let m = grants.map(5, &[11, 12, 13], false).unwrap();
    assert_eq!(m.len(), 3 * 4096);
    assert!(!m.is_writable());
    for (i, gref) in [11u32, 12, 13].iter().enumerate() {
        assert_eq!(m.load_u32_acquire(i * 4096).unwrap(), *gref);
    }
    assert_eq!(fake.get("fake_last_domid"), 5);
    assert_eq!(fake.get("fake_mapped"), 3);
    let w = grants.map(6, &[20], true).unwrap();
    assert!(w.is_writable());
    w.store_u32_release(8, 42).unwrap();
    drop(m);
    drop(w);
    assert_eq!(fake.get("fake_mapped"), 0);
    assert_eq!(fake.get("fake_unmaps"), 2);
}

#[test]
fn a_refused_ref_is_named_and_nothing_stays_mapped() {
    let dir = tempfile::tempdir().unwrap();
    let path = build_fake(dir.path());
    let fake = Fake::open(&path);
    let grants = mapper(&path);

    // A few refs: retried one by one to name the bad one.
    match grants.map(5, &[1, 2, 666, 4], false) {
        Err(GrantError::Invalid {
            domid: 5,
            gref: 666,
            reason,
        }) => {
            assert!(reason.contains("read-only"), "{reason}")
        }
        other => panic!("expected ref 666 named, got {other:?}"),
    }
    // A read-only grant mapped writable is named too.
    let err = grants.map(5, &[1, 777], true).unwrap_err();
    assert!(
        matches!(err, GrantError::Invalid { gref: 777, .. }),
        "{err}"
    );
    assert!(grants.map(5, &[1, 777], false).is_ok());
    // Many refs: not retried (the guest picks the count); the first is named.
    let many: Vec<u32> = (1..=40).chain([666]).collect();
    let calls = fake.get("fake_map_calls");
    match grants.map(5, &many, false) {
        Err(GrantError::Invalid {
            gref: 1, reason, ..
        }) => {
            assert!(reason.contains("41 refs"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.get("fake_map_calls"), calls + 1);
    assert_eq!(fake.get("fake_mapped"), 0);
}

#[test]
fn guest_chosen_counts_beyond_the_cap_never_reach_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let path = build_fake(dir.path());
    let fake = Fake::open(&path);
    let grants = mapper(&path);
    let refs = vec![8u32; MAX_REFS_PER_MAPPING + 1];
    assert!(matches!(
        grants.map(5, &refs, false),
        Err(GrantError::TooMany { .. })
    ));
    assert!(matches!(
        grants.map(5, &[], false),
        Err(GrantError::Invalid { domid: 5, .. })
    ));
    assert!(matches!(
        grants.share(5, MAX_REFS_PER_MAPPING + 1, true),
        Err(GrantError::TooMany { .. })
    ));
    assert!(grants.map(0x7FF1, &[8], false).is_err());
    assert_eq!(fake.get("fake_map_calls"), 0);
}

#[test]
fn shared_pages_are_zeroed_writable_for_us_and_unshared_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let path = build_fake(dir.path());
    let fake = Fake::open(&path);
    let grants = mapper(&path);
    let shared = grants.share(7, 4, false).unwrap();
    assert_eq!(shared.refs, [100, 101, 102, 103]);
    assert_eq!(shared.mapping.len(), 4 * 4096);
    assert!(shared.mapping.is_writable(), "our own pages");
    assert_eq!(fake.get("fake_last_domid"), 7);
    assert_eq!(fake.get("fake_last_writable"), 0);
    let mut page = vec![1u8; 4096];
    shared.mapping.read(3 * 4096, &mut page).unwrap();
    assert!(page.iter().all(|&b| b == 0));
    shared.mapping.write(0, b"be-alloc").unwrap();
    assert_eq!(fake.get("fake_shared"), 4);
    drop(shared);
    assert_eq!(fake.get("fake_shared"), 0);
}

#[test]
fn without_gntalloc_sharing_is_refused_with_the_reason_and_mapping_works() {
    let dir = tempfile::tempdir().unwrap();
    let path = build_fake(dir.path());
    let fake = Fake::open(&path);
    fake.gntalloc_absent();
    let grants = mapper(&path);
    let err = grants.share(7, 1, true).err().unwrap().to_string();
    assert!(
        err.contains("/dev/xen/gntalloc") && err.contains("domain 7"),
        "{err}"
    );
    assert!(grants.map(7, &[9], false).is_ok());
}
