//! The flip path's second half: copying a flipped framebuffer into the
//! gateway's own frame, off the request loop.
//!
//! # Why the guest is answered before the copy
//!
//! xen-drm-front treats the PG_FLIP answer and EVT_PG_FLIP as its vsync, so
//! every microsecond before them is a microsecond the guest's compositor
//! waits. A guest that double-buffers draws only into its back buffer: the
//! buffer it just flipped to is its front buffer, which it does not write
//! until it has flipped away from it again — and that takes another PG_FLIP
//! on the same connector. So the request loop answers at once and hands the
//! copy to this worker, and before it answers the *next* PG_FLIP on that
//! connector it waits until this copy is done ([`CopyProgress::idle`]).
//! That is the only point where the guest could change the pixels we are
//! reading, and we are finished with them by then.
//!
//! A guest that draws into its front buffer (single-buffered, or a cursor
//! drawn in place) may change pixels while we copy: our frame can then mix
//! old and new lines (tearing) for one frame. Nothing worse: every read is
//! a bounded copy out of the mapping, and the next flip repairs the picture.
//!
//! DBUF_DESTROY is answered only when no copy is in flight on any connector,
//! because the guest frees the pages as soon as it has the answer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use pvgate_media::hub::{ConnectorFeed, FrameUpdate};
use pvgate_media::{DamageTracker, FrameChain, SourceLayout};
use tokio::sync::watch;

use super::buffers::Framebuffer;
use super::outputs::{ConnectorOutput, OutputKey};

/// Where a flip is on its way; reported to a [`FlipHook`] (tests, tracing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlipStage {
    /// The PG_FLIP was taken off the ring and accepted.
    Received { seq: u64 },
    /// The PG_FLIP response and EVT_PG_FLIP were published to the guest.
    Answered { seq: u64 },
    /// The worker starts reading the framebuffer.
    CopyStarted { seq: u64 },
    /// The gateway's frame holds the flipped picture.
    CopyDone { seq: u64 },
}

/// Told of every flip stage, on the thread where it happens. A hook that
/// blocks in `CopyStarted` holds the copy (tests of the ordering use that).
pub type FlipHook = Arc<dyn Fn(OutputKey, FlipStage) + Send + Sync>;

/// One flip to copy.
pub struct FlipJob {
    pub seq: u64,
    pub fb: Framebuffer,
    pub flipped: Instant,
}

/// How far a connector's copies have got; shared with every request loop of
/// the device (DBUF_DESTROY waits for all connectors).
pub struct CopyProgress {
    submitted: AtomicU64,
    done: watch::Receiver<u64>,
}

impl CopyProgress {
    /// Wait until every submitted copy is finished (or the worker is gone).
    pub async fn idle(&self) {
        let want = self.submitted.load(Ordering::Acquire);
        let mut done = self.done.clone();
        let _ = done.wait_for(|d| *d >= want).await;
    }
}

/// One connector's copy thread.
pub struct CopyWorker {
    tx: Option<mpsc::Sender<FlipJob>>,
    progress: Arc<CopyProgress>,
    thread: Option<JoinHandle<()>>,
}

impl CopyWorker {
    pub fn spawn(
        output: Arc<ConnectorOutput>,
        feed: ConnectorFeed,
        hook: Option<FlipHook>,
    ) -> std::io::Result<CopyWorker> {
        let (tx, rx) = mpsc::channel::<FlipJob>();
        let (done_tx, done_rx) = watch::channel(0u64);
        let key = output.key;
        let thread = std::thread::Builder::new()
            .name(format!(
                "flip-{}.{}.{}",
                key.domid, key.devid, key.connector
            ))
            .spawn(move || copy_loop(rx, done_tx, output, feed, hook))?;
        Ok(CopyWorker {
            tx: Some(tx),
            progress: Arc::new(CopyProgress {
                submitted: AtomicU64::new(0),
                done: done_rx,
            }),
            thread: Some(thread),
        })
    }

    pub fn progress(&self) -> Arc<CopyProgress> {
        self.progress.clone()
    }

    /// A handle for the request loop to submit copies through.
    pub fn submitter(&self) -> Option<CopySubmitter> {
        Some(CopySubmitter {
            tx: self.tx.clone()?,
            progress: self.progress.clone(),
        })
    }

    /// Let the thread finish its last copy and end; returns once it has.
    pub async fn shutdown(mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

/// The request loop's end of a [`CopyWorker`].
#[derive(Clone)]
pub struct CopySubmitter {
    tx: mpsc::Sender<FlipJob>,
    progress: Arc<CopyProgress>,
}

impl CopySubmitter {
    /// Queue a copy; returns false if the worker is gone.
    pub fn submit(&self, fb: Framebuffer, flipped: Instant) -> Option<u64> {
        let seq = self.progress.submitted.load(Ordering::Acquire) + 1;
        self.tx.send(FlipJob { seq, fb, flipped }).ok()?;
        self.progress.submitted.store(seq, Ordering::Release);
        Some(seq)
    }

    /// The next sequence number a submit would get.
    pub fn next_seq(&self) -> u64 {
        self.progress.submitted.load(Ordering::Acquire) + 1
    }

    pub async fn idle(&self) {
        self.progress.idle().await
    }
}

/// Damage tracking state for one framebuffer geometry: frames of the same
/// layout (a double-buffering guest's two buffers) share it, so each flip
/// is compared with the picture before it.
///
/// The published frame is always still held (by the snapshot slot in
/// [`ConnectorOutput`], by encoders), so it cannot be written in place;
/// [`FrameChain`] recycles frames nobody holds any more and brings them up
/// to date tile by tile, so a flip costs its damage, not a whole frame.
struct Copier {
    layout: SourceLayout,
    tracker: DamageTracker,
    chain: FrameChain,
}

fn layout_of(fb: &Framebuffer) -> Result<SourceLayout, String> {
    let format =
        pvgate_media::PixelFormat::from_fourcc(fb.format.fourcc()).map_err(|e| e.to_string())?;
    SourceLayout::dumb(fb.width, fb.height, format, fb.buffer.data_ofs as usize)
        .map_err(|e| e.to_string())
}

fn copier_for(current: Option<Copier>, fb: &Framebuffer) -> Result<Copier, String> {
    let layout = layout_of(fb)?;
    if let Some(c) = current {
        if c.layout == layout {
            return Ok(c);
        }
    }
    let tracker = DamageTracker::new(layout).map_err(|e| e.to_string())?;
    let chain = FrameChain::new(fb.width, fb.height).map_err(|e| e.to_string())?;
    Ok(Copier {
        layout,
        tracker,
        chain,
    })
}

fn copy_loop(
    rx: mpsc::Receiver<FlipJob>,
    done: watch::Sender<u64>,
    output: Arc<ConnectorOutput>,
    feed: ConnectorFeed,
    hook: Option<FlipHook>,
) {
    let key = output.key;
    let mut copier: Option<Copier> = None;
    while let Ok(job) = rx.recv() {
        if let Some(h) = &hook {
            h(key, FlipStage::CopyStarted { seq: job.seq });
        }
        let start = Instant::now();
        match copier_for(copier.take(), &job.fb) {
            Ok(mut c) => {
                let result = c.chain.update(&mut c.tracker, &*job.fb.buffer);
                let copied = c.chain.last_copied_bytes();
                match result {
                    Ok((frame, damage)) => {
                        let changed = !damage.is_empty();
                        feed.publish(FrameUpdate {
                            frame: frame.clone(),
                            damaged: changed,
                            captured: job.flipped,
                        });
                        output.record_copy(frame, start.elapsed(), changed, copied);
                    }
                    Err(e) => {
                        tracing::warn!(guest = key.domid, device = key.devid, connector = key.connector,
                            fb = job.fb.cookie, error = %e, "cannot copy the flipped framebuffer");
                        // The chain's frames are intact (the failed update
                        // wrote only into a recycled one it dropped); the
                        // tracker's hashes are not, so compare everything next
                        // time.
                        c.tracker.invalidate();
                        output.record_copied_bytes(copied);
                    }
                }
                copier = Some(c);
            }
            Err(e) => {
                tracing::warn!(guest = key.domid, device = key.devid, connector = key.connector,
                    fb = job.fb.cookie, error = %e, "framebuffer geometry unusable for copying");
            }
        }
        // The buffer reference goes before we report the copy done, so a
        // DBUF_DESTROY answered after `idle` finds no reader left.
        let seq = job.seq;
        drop(job);
        // Reported before the request loop may go on, so a hook sees the
        // stages in the order they are guaranteed to happen.
        if let Some(h) = &hook {
            h(key, FlipStage::CopyDone { seq });
        }
        done.send_replace(seq);
    }
}
