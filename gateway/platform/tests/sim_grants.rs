//! The simulated grant tables: a guest grants scattered pages, the backend
//! maps them as one contiguous range; validation, pinning and revocation as
//! on Xen; be-alloc sharing; and the same across processes.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

use pvgate_platform::sim::hypervisor::{
    GrantEntry, SimDomainMemory, SimGrantMapper, GRANT_ENTRIES, GTF_PERMIT_ACCESS, GTF_READING,
    GTF_READONLY, GTF_WRITING, MAX_REFS_PER_MAPPING, PAGE_SIZE,
};
use pvgate_platform::{GrantError, GrantMapper, GrantRef};

const GUEST: u16 = 5;

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ (i / PAGE_SIZE) as u8 ^ seed)
        .collect()
}

fn setup(dir: &Path) -> (SimDomainMemory, SimGrantMapper) {
    let guest = SimDomainMemory::open_or_create(dir, GUEST, 256).unwrap();
    let dom0 = SimGrantMapper::open(dir, 0).unwrap();
    (guest, dom0)
}

/// Allocate `pages` guest pages filled with `pattern(seed)` and grant them to dom0.
fn guest_buffer(
    guest: &SimDomainMemory,
    pages: usize,
    seed: u8,
    readonly: bool,
) -> (Vec<u32>, Vec<GrantRef>, Vec<u8>) {
    let frames = guest.alloc_pages(pages).unwrap();
    let data = pattern(seed, pages * PAGE_SIZE);
    guest.write_buffer(&frames, 0, &data).unwrap();
    let refs = frames
        .iter()
        .map(|&f| guest.grant_access(f, 0, readonly).unwrap())
        .collect();
    (frames, refs, data)
}

fn read_all(m: &pvgate_platform::Mapping) -> Vec<u8> {
    let mut out = vec![0u8; m.len()];
    m.read(0, &mut out).unwrap();
    out
}

fn invalid_reason(e: GrantError, domid: u16, gref: GrantRef) -> String {
    match e {
        GrantError::Invalid {
            domid: d,
            gref: g,
            reason,
        } => {
            assert_eq!(
                (d, g),
                (domid, gref),
                "error names the wrong grant: {reason}"
            );
            reason
        }
        other => panic!("expected Invalid for gref {gref}, got {other:?}"),
    }
}

#[test]
fn scattered_guest_pages_map_as_one_contiguous_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let (guest, dom0) = setup(dir.path());
    let (frames, refs, data) = guest_buffer(&guest, 6, 0x5a, false);
    // The buffer really is scattered: no page follows its predecessor.
    for pair in frames.windows(2) {
        assert_ne!(pair[1], pair[0] + 1, "frames {frames:?} are contiguous");
    }
    let m = dom0.map(GUEST, &refs, false).unwrap();
    assert_eq!(m.len(), 6 * PAGE_SIZE);
    assert!(!m.is_writable());
    assert_eq!(read_all(&m), data);
    for &r in &refs {
        let e = guest.grant_entry(r).unwrap();
        assert_eq!(
            e.flags & (GTF_READING | GTF_WRITING),
            GTF_READING,
            "gref {r}: {e:?}"
        );
    }
    // Later guest writes show through (shared memory, not a copy).
    guest
        .write_buffer(&frames, PAGE_SIZE - 3, b"across")
        .unwrap();
    let mut seen = [0u8; 6];
    m.read(PAGE_SIZE - 3, &mut seen).unwrap();
    assert_eq!(&seen, b"across");
    drop(m);
    for &r in &refs {
        assert_eq!(
            guest.grant_entry(r).unwrap().flags,
            GTF_PERMIT_ACCESS,
            "gref {r} still marked in use"
        );
    }
}

#[test]
fn writes_through_a_writable_mapping_reach_the_guest() {
    let dir = tempfile::tempdir().unwrap();
    let (guest, dom0) = setup(dir.path());
    let (frames, refs, mut data) = guest_buffer(&guest, 3, 1, false);
    let m = dom0.map(GUEST, &refs, true).unwrap();
    assert!(m.is_writable());
    for &r in &refs {
        assert_eq!(
            guest.grant_entry(r).unwrap().flags & GTF_WRITING,
            GTF_WRITING
        );
    }
    let msg = b"written by the backend across a page boundary";
    let at = 2 * PAGE_SIZE - 10;
    m.write(at, msg).unwrap();
    data[at..at + msg.len()].copy_from_slice(msg);
    let mut back = vec![0u8; data.len()];
    guest.read_buffer(&frames, 0, &mut back).unwrap();
    assert_eq!(back, data);
}

#[test]
fn invalid_grants_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (guest, dom0) = setup(dir.path());
    let (_, good, _) = guest_buffer(&guest, 2, 2, false);
    let (_, ro, _) = guest_buffer(&guest, 1, 3, true);

    let r = invalid_reason(dom0.map(GUEST, &[0], false).unwrap_err(), GUEST, 0);
    assert!(r.contains("gref 0"), "{r}");
    let r = invalid_reason(
        dom0.map(GUEST, &[GRANT_ENTRIES], false).unwrap_err(),
        GUEST,
        GRANT_ENTRIES,
    );
    assert!(r.contains("outside"), "{r}");
    invalid_reason(
        dom0.map(GUEST, &[u32::MAX], false).unwrap_err(),
        GUEST,
        u32::MAX,
    );

    // Granted to domain 9, not to us.
    let frame = guest.alloc_pages(1).unwrap()[0];
    let other = guest.grant_access(frame, 9, false).unwrap();
    let r = invalid_reason(dom0.map(GUEST, &[other], false).unwrap_err(), GUEST, other);
    assert!(r.contains("domain 9"), "{r}");

    // Read-only grant: read-only mapping fine, writable refused.
    let r = invalid_reason(dom0.map(GUEST, &[ro[0]], true).unwrap_err(), GUEST, ro[0]);
    assert!(r.contains("read-only"), "{r}");
    assert_eq!(
        guest.grant_entry(ro[0]).unwrap().flags,
        GTF_PERMIT_ACCESS | GTF_READONLY
    );
    drop(dom0.map(GUEST, &ro, false).unwrap());

    // Revoked grant.
    let frame = guest.alloc_pages(1).unwrap()[0];
    let revoked = guest.grant_access(frame, 0, false).unwrap();
    guest.end_access(revoked).unwrap();
    let r = invalid_reason(
        dom0.map(GUEST, &[revoked], false).unwrap_err(),
        GUEST,
        revoked,
    );
    assert!(r.contains("not granted"), "{r}");

    // A frame beyond the guest's memory, and garbage flags, written by a hostile guest.
    let beyond = 100;
    guest.write_grant_entry_raw(
        beyond,
        GrantEntry {
            flags: GTF_PERMIT_ACCESS,
            domid: 0,
            frame: 256,
        },
    );
    let r = invalid_reason(
        dom0.map(GUEST, &[beyond], false).unwrap_err(),
        GUEST,
        beyond,
    );
    assert!(r.contains("beyond"), "{r}");
    guest.write_grant_entry_raw(
        101,
        GrantEntry {
            flags: 0xffff,
            domid: 0,
            frame: 1,
        },
    );
    invalid_reason(dom0.map(GUEST, &[101], false).unwrap_err(), GUEST, 101);

    // One bad ref in a list fails the whole map, and pins nothing.
    let list = [good[0], good[1], revoked];
    invalid_reason(dom0.map(GUEST, &list, false).unwrap_err(), GUEST, revoked);
    for &g in &good {
        assert_eq!(guest.grant_entry(g).unwrap().flags, GTF_PERMIT_ACCESS);
        guest.end_access(g).unwrap();
    }

    // No such domain.
    assert!(matches!(
        dom0.map(77, &[8], false),
        Err(GrantError::Invalid {
            domid: 77,
            gref: 8,
            ..
        })
    ));
}

#[test]
fn mapping_limits_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (_guest, dom0) = setup(dir.path());
    let refs = vec![8; MAX_REFS_PER_MAPPING + 1];
    assert!(matches!(
        dom0.map(GUEST, &refs, false),
        Err(GrantError::TooMany { count, limit }) if count == MAX_REFS_PER_MAPPING + 1 && limit == MAX_REFS_PER_MAPPING
    ));
    invalid_reason(dom0.map(GUEST, &[], false).unwrap_err(), GUEST, 0);
    assert!(matches!(
        dom0.share(GUEST, MAX_REFS_PER_MAPPING + 1, true),
        Err(GrantError::TooMany { .. })
    ));
}

#[test]
fn revoking_is_refused_while_mapped_and_allowed_after_unmap() {
    let dir = tempfile::tempdir().unwrap();
    let (guest, dom0) = setup(dir.path());
    let (_, refs, _) = guest_buffer(&guest, 2, 4, false);
    let m = dom0.map(GUEST, &refs, true).unwrap();
    for &r in &refs {
        assert!(
            matches!(guest.end_access(r), Err(GrantError::InUse { gref, by: 0 }) if gref == r),
            "revoked gref {r} while mapped"
        );
    }
    drop(m);
    for &r in &refs {
        guest.end_access(r).unwrap();
        assert_eq!(guest.grant_entry(r).unwrap().flags, 0);
    }
    // Revoked means gone: the backend can no longer map them.
    invalid_reason(dom0.map(GUEST, &refs, false).unwrap_err(), GUEST, refs[0]);
}

#[test]
fn one_grant_can_be_mapped_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (guest, dom0) = setup(dir.path());
    let (_, refs, data) = guest_buffer(&guest, 1, 5, false);
    let g = refs[0];
    let writer = dom0.map(GUEST, &refs, true).unwrap();
    let reader = dom0.map(GUEST, &[g, g], false).unwrap();
    assert_eq!(&read_all(&reader)[..PAGE_SIZE], &data[..]);
    writer.write(0, b"twice").unwrap();
    let mut seen = [0u8; 5];
    reader.read(PAGE_SIZE, &mut seen).unwrap();
    assert_eq!(&seen, b"twice");

    drop(writer);
    // The reader still pins it: reading stays, writing goes.
    assert_eq!(
        guest.grant_entry(g).unwrap().flags,
        GTF_PERMIT_ACCESS | GTF_READING
    );
    assert!(matches!(guest.end_access(g), Err(GrantError::InUse { .. })));
    drop(reader);
    assert_eq!(guest.grant_entry(g).unwrap().flags, GTF_PERMIT_ACCESS);
    guest.end_access(g).unwrap();
}

#[test]
fn be_alloc_pages_shared_by_dom0_are_mapped_by_the_guest() {
    let dir = tempfile::tempdir().unwrap();
    let (guest, dom0) = setup(dir.path());
    let shared = dom0.share(GUEST, 4, true).unwrap();
    assert_eq!(shared.refs.len(), 4);
    assert_eq!(shared.mapping.len(), 4 * PAGE_SIZE);
    assert_eq!(
        read_all(&shared.mapping),
        vec![0u8; 4 * PAGE_SIZE],
        "shared pages start zeroed"
    );
    let frames: Vec<u32> = shared
        .refs
        .iter()
        .map(|&r| dom0.memory().grant_entry(r).unwrap().frame)
        .collect();
    for pair in frames.windows(2) {
        assert_ne!(
            pair[1],
            pair[0] + 1,
            "dom0 frames {frames:?} are contiguous"
        );
    }

    // The guest maps dom0's grants with the same code the backend uses.
    let guest_mapper = SimGrantMapper::new(guest.clone());
    let view = guest_mapper.map(0, &shared.refs, true).unwrap();
    let data = pattern(9, 4 * PAGE_SIZE);
    view.write(0, &data).unwrap();
    assert_eq!(read_all(&shared.mapping), data);
    shared
        .mapping
        .write(3 * PAGE_SIZE + 1, b"from dom0")
        .unwrap();
    let mut seen = [0u8; 9];
    view.read(3 * PAGE_SIZE + 1, &mut seen).unwrap();
    assert_eq!(&seen, b"from dom0");

    // A read-only share cannot be mapped writable by the guest.
    let ro = dom0.share(GUEST, 1, false).unwrap();
    invalid_reason(
        guest_mapper.map(0, &ro.refs, true).unwrap_err(),
        0,
        ro.refs[0],
    );
    drop(guest_mapper.map(0, &ro.refs, false).unwrap());
    drop(ro);

    // Dropping the share while the guest still maps it cannot revoke: the
    // pages stay granted (and allocated) until Xen would free them.
    let refs = shared.refs.clone();
    drop(shared);
    for &r in &refs {
        assert_eq!(
            dom0.memory().grant_entry(r).unwrap().flags & GTF_PERMIT_ACCESS,
            GTF_PERMIT_ACCESS
        );
    }
    let mut still = [0u8; 4];
    view.read(0, &mut still).unwrap();
    assert_eq!(&still, &data[..4]);
    drop(view);

    // An unmapped share is revoked on drop.
    let share = dom0.share(GUEST, 2, true).unwrap();
    let refs = share.refs.clone();
    drop(share);
    for &r in &refs {
        assert_eq!(dom0.memory().grant_entry(r).unwrap().flags, 0);
    }
}

#[test]
fn revoking_never_succeeds_while_a_mapping_lives() {
    use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let (guest, dom0) = setup(dir.path());
    let frame = guest.alloc_pages(1).unwrap()[0];
    guest.write(frame, 0, b"stable").unwrap();
    let current = AtomicU32::new(guest.grant_access(frame, 0, false).unwrap());
    // Counts mappings that certainly exist: raised after map returns, lowered
    // before the mapping is dropped.
    let live = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let mapped = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for writable in [false, true, false, true] {
            let (dom0, current, live, stop, mapped) = (&dom0, &current, &live, &stop, &mapped);
            s.spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let Ok(m) = dom0.map(GUEST, &[current.load(Ordering::SeqCst)], writable) else {
                        continue;
                    };
                    live.fetch_add(1, Ordering::SeqCst);
                    mapped.fetch_add(1, Ordering::SeqCst);
                    // Hold it a while, so that revokes race with live mappings.
                    for _ in 0..20 {
                        let mut b = [0u8; 6];
                        m.read(0, &mut b).unwrap();
                        assert_eq!(&b, b"stable");
                        std::thread::yield_now();
                    }
                    live.fetch_sub(1, Ordering::SeqCst);
                    drop(m);
                }
            });
        }
        // Stop the mappers even if an assertion below fails, or the scope
        // would wait for them forever.
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let _stop = StopOnDrop(&stop);
        let (mut revoked, mut refused) = (0, 0);
        // Keep going until both outcomes were seen: on a loaded machine the
        // scheduler may not interleave the threads within 60 revokes.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while (revoked < 60 || refused == 0) && std::time::Instant::now() < deadline {
            let gref = current.load(Ordering::SeqCst);
            match guest.end_access(gref) {
                Ok(()) => {
                    assert_eq!(
                        live.load(Ordering::SeqCst),
                        0,
                        "revoked gref {gref} while mapped"
                    );
                    revoked += 1;
                    current.store(
                        guest.grant_access(frame, 0, false).unwrap(),
                        Ordering::SeqCst,
                    );
                }
                Err(GrantError::InUse { .. }) => {
                    refused += 1;
                    std::thread::yield_now();
                }
                Err(e) => panic!("{e}"),
            }
        }
        stop.store(true, Ordering::SeqCst);
        assert!(
            refused > 0,
            "no revoke ever met a live mapping: the test raced nothing"
        );
    });
    assert!(
        mapped.load(Ordering::SeqCst) > 0,
        "the mappers never got a mapping"
    );
}

// ---- across processes -------------------------------------------------------

/// Env var that turns a re-executed test binary into a helper process.
const ROLE: &str = "PVGATE_SIM_GRANTS_ROLE";
const DIR: &str = "PVGATE_SIM_GRANTS_DIR";

struct Helper {
    child: Child,
    stdin: ChildStdin,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Helper {
    fn spawn(role: &str, dir: &Path, extra: &[(&str, String)]) -> Helper {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "helper_process_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, role)
        .env(DIR, dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Helper {
            child,
            stdin,
            lines,
        }
    }

    /// The next line the helper printed with our prefix, without the prefix.
    fn expect(&mut self, prefix: &str) -> String {
        for line in self.lines.by_ref() {
            let line = line.unwrap();
            // libtest prints "test helper_process_entry ... " before the
            // helper's first line.
            if let Some((_, rest)) = line.split_once(&format!("{prefix} ")) {
                return rest.trim().to_string();
            }
        }
        panic!("helper exited before printing {prefix}");
    }

    fn send(&mut self, cmd: &str) {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
    }
}

fn numbers(s: &str) -> Vec<u32> {
    s.split_whitespace().map(|w| w.parse().unwrap()).collect()
}

/// Not a test on its own: the entry point of helper processes spawned by the
/// tests below (it returns at once when run normally).
#[test]
fn helper_process_entry() {
    let (Ok(role), Ok(dir)) = (std::env::var(ROLE), std::env::var(DIR)) else {
        return;
    };
    let dir = Path::new(&dir);
    let stdin = std::io::stdin();
    let mut commands = stdin.lock().lines();
    match role.as_str() {
        // A guest (domain 7) that grants 3 scattered pages to dom0 and then
        // reads its pages or revokes its grants on command.
        "guest" => {
            let mem = SimDomainMemory::open_or_create(dir, 7, 128).unwrap();
            let frames = mem.alloc_pages(3).unwrap();
            mem.write_buffer(&frames, 0, &pattern(7, 3 * PAGE_SIZE))
                .unwrap();
            let refs: Vec<String> = frames
                .iter()
                .map(|&f| mem.grant_access(f, 0, false).unwrap().to_string())
                .collect();
            println!("GREFS {}", refs.join(" "));
            for cmd in commands.by_ref() {
                match cmd.unwrap().as_str() {
                    "READ" => {
                        let mut buf = [0u8; 16];
                        mem.read_buffer(&frames, PAGE_SIZE - 8, &mut buf).unwrap();
                        println!("READ {}", String::from_utf8_lossy(&buf));
                    }
                    "REVOKE" => {
                        let results: Vec<&str> = refs
                            .iter()
                            .map(|r| match mem.end_access(r.parse().unwrap()) {
                                Ok(()) => "ok",
                                Err(GrantError::InUse { .. }) => "inuse",
                                Err(_) => "error",
                            })
                            .collect();
                        println!("REVOKE {}", results.join(" "));
                    }
                    _ => return,
                }
            }
        }
        // A second dom0 process sharing pages while the test shares too.
        "dom0-share" => {
            let dom0 = SimGrantMapper::open(dir, 0).unwrap();
            let shared = dom0.share(GUEST, 64, true).unwrap();
            let frames: Vec<String> = shared
                .refs
                .iter()
                .map(|&r| dom0.memory().grant_entry(r).unwrap().frame.to_string())
                .collect();
            let refs: Vec<String> = shared.refs.iter().map(|r| r.to_string()).collect();
            println!("REFS {}", refs.join(" "));
            println!("FRAMES {}", frames.join(" "));
            let _ = commands.next();
        }
        // A backend that maps the given grefs of domain 7 and then hangs
        // around (to be killed).
        "mapper" => {
            let dom0 = SimGrantMapper::open(dir, 0).unwrap();
            let refs = numbers(&std::env::var("PVGATE_SIM_GREFS").unwrap());
            let m = dom0.map(7, &refs, true).unwrap();
            println!("MAPPED {}", m.len());
            let _ = commands.next();
        }
        other => panic!("unknown helper role {other}"),
    }
}

#[test]
fn a_guest_process_grants_and_the_backend_maps() {
    let dir = tempfile::tempdir().unwrap();
    let dom0 = SimGrantMapper::open(dir.path(), 0).unwrap();
    let mut guest = Helper::spawn("guest", dir.path(), &[]);
    let refs = numbers(&guest.expect("GREFS"));
    assert_eq!(refs.len(), 3);

    let m = dom0.map(7, &refs, true).unwrap();
    assert_eq!(read_all(&m), pattern(7, 3 * PAGE_SIZE));
    m.write(PAGE_SIZE - 8, b"dom0 wrote this!").unwrap();
    guest.send("READ");
    assert_eq!(guest.expect("READ"), "dom0 wrote this!");

    guest.send("REVOKE");
    assert_eq!(guest.expect("REVOKE"), "inuse inuse inuse");
    drop(m);
    guest.send("REVOKE");
    assert_eq!(guest.expect("REVOKE"), "ok ok ok");
    guest.send("EXIT");
    assert!(guest.child.wait().unwrap().success());
}

#[test]
fn two_dom0_processes_share_pages_without_collisions() {
    let dir = tempfile::tempdir().unwrap();
    let dom0 = SimGrantMapper::open(dir.path(), 0).unwrap();
    let mut other = Helper::spawn("dom0-share", dir.path(), &[]);
    let mine = dom0.share(GUEST, 64, true).unwrap();
    let their_refs = numbers(&other.expect("REFS"));
    let their_frames = numbers(&other.expect("FRAMES"));
    let my_frames: Vec<u32> = mine
        .refs
        .iter()
        .map(|&r| dom0.memory().grant_entry(r).unwrap().frame)
        .collect();
    assert_eq!(their_refs.len(), 64);
    for r in &mine.refs {
        assert!(!their_refs.contains(r), "gref {r} handed out twice");
    }
    for f in &my_frames {
        assert!(!their_frames.contains(f), "frame {f} handed out twice");
    }
    other.send("EXIT");
    assert!(other.child.wait().unwrap().success());
}

#[test]
fn a_killed_mapper_does_not_keep_grants_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let guest = SimDomainMemory::open_or_create(dir.path(), 7, 64).unwrap();
    let frames = guest.alloc_pages(2).unwrap();
    let refs: Vec<GrantRef> = frames
        .iter()
        .map(|&f| guest.grant_access(f, 0, false).unwrap())
        .collect();
    let list = refs
        .iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join(" ");
    let mut mapper = Helper::spawn("mapper", dir.path(), &[("PVGATE_SIM_GREFS", list)]);
    assert_eq!(mapper.expect("MAPPED"), (2 * PAGE_SIZE).to_string());
    assert!(matches!(
        guest.end_access(refs[0]),
        Err(GrantError::InUse { by: 0, .. })
    ));
    mapper.child.kill().unwrap();
    mapper.child.wait().unwrap();
    // The kernel dropped the dead mapper's pins; its flags were left set,
    // and revoking still works, as after gntdev's release on Xen.
    assert_eq!(
        guest.grant_entry(refs[0]).unwrap().flags & GTF_WRITING,
        GTF_WRITING
    );
    for &r in &refs {
        guest.end_access(r).unwrap();
        assert_eq!(guest.grant_entry(r).unwrap().flags, 0);
    }
}
