//! Restarts: the frontend re-initialising (driver reload, guest reboot) and
//! the gateway restarting under connected frontends. Either way the guest
//! flips again afterwards, and every page the gateway had mapped is let go
//! when it disconnects (the guest's grants show no mapping left).

mod display_common;

use display_common::*;
use pvgate_guest_sim::content::Scene;
use pvgate_guest_sim::display::{Dbuf, FlipOutcome};
use pvgate_guest_sim::guest::{GuestSim, StartOptions};
use pvgate_guest_sim::xenbus::XenbusState;
use pvgate_platform::sim::hypervisor::{SimDomainMemory, GTF_READING, GTF_WRITING};
use pvgate_platform::GrantRef;
use pvgate_protocol::displif::PixelFormat;
use pvgate_protocol::pagedir::{self, DirPage, DirectoryWalker};

fn is_mapped(mem: &SimDomainMemory, r: GrantRef) -> bool {
    mem.grant_entry(r)
        .is_some_and(|e| e.flags & (GTF_READING | GTF_WRITING) != 0)
}

/// Every grant behind a buffer: directory pages and data pages.
fn buffer_refs(mem: &SimDomainMemory, dbuf: &Dbuf) -> Vec<GrantRef> {
    let mut walker =
        DirectoryWalker::new(dbuf.gref_directory, pagedir::grant_count(dbuf.size)).unwrap();
    while let Some(r) = walker.next_page_ref() {
        let frame = mem.grant_entry(r).expect("directory grant").frame;
        let mut page: DirPage = [0u8; pagedir::PAGE_SIZE];
        mem.read(frame, 0, &mut page).expect("read directory page");
        walker.feed(&page).expect("directory");
    }
    let mut refs = dbuf.dir_refs.clone();
    refs.extend(walker.finish().expect("directory"));
    refs
}

/// The connector's ring and event page grants as the frontend published them.
async fn ring_refs(h: &Harness, domid: u16) -> Vec<GrantRef> {
    let mut out = Vec::new();
    for k in ["req-ring-ref", "evt-ring-ref"] {
        let v = h
            .dom0
            .store
            .read(&format!("/local/domain/{domid}/device/vdispl/0/0/{k}"))
            .await
            .expect("ring ref");
        out.push(v.parse().expect("number"));
    }
    out
}

/// How many of `refs` the gateway still maps, after giving an unmap on the
/// copy thread a moment.
async fn still_mapped(mem: &SimDomainMemory, refs: &[GrantRef]) -> usize {
    let count = || refs.iter().filter(|r| is_mapped(mem, **r)).count();
    for _ in 0..200 {
        if count() == 0 {
            return 0;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frontend_restart_releases_everything_and_reconnects() {
    let h = Harness::start().await;
    let (guest, mem) = h.add_guest_with_memory(51, &["connectors=64x64"]).await;
    let be = h.backend(51, 0);
    let session = guest.displays[0].connected(WAIT).await.expect("connected");
    let mut screen = Screen::new(session.clone(), 0, PixelFormat::Xrgb8888, Scene::Pattern).await;
    assert_eq!(screen.flip_next().await.1, FlipOutcome::Done);
    let mut refs: Vec<GrantRef> = screen
        .bufs
        .iter()
        .flat_map(|b| buffer_refs(&mem, b))
        .collect();
    let data_pages: usize = screen
        .bufs
        .iter()
        .map(|b| pagedir::grant_count(b.size) as usize)
        .sum();
    assert_eq!(
        refs.iter().filter(|r| is_mapped(&mem, **r)).count(),
        data_pages,
        "while connected the gateway maps every data page (and no directory page)"
    );
    refs.extend(ring_refs(&h, 51).await);

    // The guest's driver goes away (Closing, Closed) and comes back.
    let (config, platform) = (guest.config.clone(), guest.platform.clone());
    guest.shutdown().await;
    assert_eq!(
        still_mapped(&mem, &refs).await,
        0,
        "nothing of the old connection stays mapped"
    );
    assert!(h.outputs.of_guest(51).is_empty());
    let guest = GuestSim::start(config, platform, StartOptions::default())
        .await
        .expect("guest again");
    let session2 = guest.displays[0]
        .connected(WAIT)
        .await
        .expect("reconnected");
    let mut screen2 = Screen::new(session2, 0, PixelFormat::Xrgb8888, Scene::Desktop).await;
    for _ in 0..3 {
        assert_eq!(screen2.flip_next().await.1, FlipOutcome::Done);
    }
    h.wait_copies(key(51, 0, 0), 4).await;
    drop(screen);
    drop(guest);
    be.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_restart_releases_everything_and_the_guest_comes_back() {
    let h = Harness::start().await;
    let (guest, mem) = h
        .add_guest_with_memory(52, &["be-alloc=0,connectors=64x64;32x32"])
        .await;
    let be = h.backend(52, 0);
    let display = guest.displays[0].clone();
    let session = display.connected(WAIT).await.expect("connected");
    let mut screen = Screen::new(session.clone(), 0, PixelFormat::Xrgb8888, Scene::Pattern).await;
    assert_eq!(screen.flip_next().await.1, FlipOutcome::Done);
    let mut refs: Vec<GrantRef> = screen
        .bufs
        .iter()
        .flat_map(|b| buffer_refs(&mem, b))
        .collect();
    refs.extend(ring_refs(&h, 52).await);
    assert!(refs.iter().any(|r| is_mapped(&mem, *r)));

    // The gateway stops without a word to the guest…
    be.stop().await;
    assert_eq!(
        still_mapped(&mem, &refs).await,
        0,
        "a stopped gateway maps nothing"
    );
    assert!(h.outputs.of_guest(52).is_empty());
    // …and a new one starts: the frontend re-publishes (Reconfiguring,
    // Initialising) and connects again.
    let be = h.backend(52, 0);
    let session2 = display
        .connected_after(Some(&session), WAIT)
        .await
        .expect("the guest reconnects to the new gateway");
    display
        .wait_state(XenbusState::Connected, WAIT)
        .await
        .expect("frontend Connected");
    let mut screen2 = Screen::new(session2, 1, PixelFormat::Rgb565, Scene::Desktop).await;
    for _ in 0..3 {
        assert_eq!(screen2.flip_next().await.1, FlipOutcome::Done);
    }
    h.wait_copies(key(52, 0, 1), 4).await;
    drop(screen);
    drop(guest);
    be.stop().await;
}
