//! The kbdif frontend, as xen-kbdfront drives it.
//!
//! - At probe, before the backend is ready, it reads from the BACKEND's
//!   directory `feature-disable-keyboard`, `feature-disable-pointer`,
//!   `feature-abs-pointer`, `width`, `height`, `feature-multi-touch` and
//!   `multi-touch-{num-contacts,width,height}`; it writes
//!   `request-multi-touch` and `request-abs-pointer` (=1) to its own
//!   directory when the backend offers them; grants one zeroed page,
//!   allocates an event channel, and writes `page-ref` (the frame),
//!   `page-gref` and `event-channel` in one transaction; then Initialised.
//! - Events arrive on the page's in ring at any time after that; each batch
//!   is consumed, `in_cons` published, and the backend notified.
//! - Key codes are Linux `KEY_*`/`BTN_*`; absolute positions are in the
//!   backend's `width`×`height` space (default 800×600, XENFB_WIDTH/HEIGHT).

use std::sync::{Arc, Mutex};

use pvgate_platform::{GrantRef, Platform};
use pvgate_protocol::kbdif::{KbdInEvent, MtEvent};
use pvgate_protocol::kbdpage::KbdFrontendPage;
use tokio::sync::broadcast;

use crate::content::{InputEvent, InputState};
use crate::display::publish_keys;
use crate::io::channel::GrantedPage;
use crate::xenbus::driver::FrontendOps;
use crate::xenbus::XenbusDevice;

/// XENFB_WIDTH / XENFB_HEIGHT, xen-kbdfront's default pointer size.
pub const DEFAULT_POINTER_SIZE: (u32, u32) = (800, 600);

/// What the driver found in the backend's directory at probe.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InputFeatures {
    pub keyboard: bool,
    pub pointer: bool,
    pub abs_pointer: bool,
    pub multi_touch: bool,
    pub width: u32,
    pub height: u32,
    pub mt_contacts: u32,
    pub mt_width: u32,
    pub mt_height: u32,
}

/// `xenkbd_probe`'s reads.
pub async fn read_features(dev: &XenbusDevice) -> InputFeatures {
    let (dw, dh) = DEFAULT_POINTER_SIZE;
    InputFeatures {
        keyboard: dev
            .read_backend_unsigned("feature-disable-keyboard", 0)
            .await
            == 0,
        pointer: dev
            .read_backend_unsigned("feature-disable-pointer", 0)
            .await
            == 0,
        abs_pointer: dev.read_backend_unsigned("feature-abs-pointer", 0).await != 0,
        multi_touch: dev.read_backend_unsigned("feature-multi-touch", 0).await != 0,
        width: dev.read_backend_unsigned("width", dw).await,
        height: dev.read_backend_unsigned("height", dh).await,
        mt_contacts: dev
            .read_backend_unsigned("multi-touch-num-contacts", 1)
            .await,
        mt_width: dev.read_backend_unsigned("multi-touch-width", dw).await,
        mt_height: dev.read_backend_unsigned("multi-touch-height", dh).await,
    }
}

/// Turns kbdif events into the content's input events, scaling absolute
/// positions from the device's coordinate space to the frame (sans-IO).
pub struct EventTranslator {
    pub features: InputFeatures,
    frame: (u32, u32),
}

fn scale(v: i32, from: u32, to: u32) -> i32 {
    if from == 0 {
        return v;
    }
    (i64::from(v) * i64::from(to) / i64::from(from)).clamp(i64::from(i32::MIN), i64::from(i32::MAX))
        as i32
}

impl EventTranslator {
    pub fn new(features: InputFeatures, frame: (u32, u32)) -> Self {
        EventTranslator { features, frame }
    }

    pub fn translate(&self, ev: &KbdInEvent) -> Vec<InputEvent> {
        let f = &self.features;
        let (fw, fh) = self.frame;
        let mut out = Vec::new();
        match *ev {
            KbdInEvent::Motion {
                rel_x,
                rel_y,
                rel_z,
            } => {
                out.push(InputEvent::RelMotion {
                    dx: rel_x,
                    dy: rel_y,
                });
                if rel_z != 0 {
                    // REL_WHEEL gets -rel_z.
                    out.push(InputEvent::Wheel {
                        dx: 0,
                        dy: rel_z.saturating_neg(),
                    });
                }
            }
            KbdInEvent::Key { pressed, keycode } => {
                if let Ok(code) = u16::try_from(keycode) {
                    out.push(InputEvent::Key { code, pressed });
                }
            }
            KbdInEvent::Position {
                abs_x,
                abs_y,
                rel_z,
            } => {
                out.push(InputEvent::Motion {
                    x: scale(abs_x, f.width, fw),
                    y: scale(abs_y, f.height, fh),
                });
                if rel_z != 0 {
                    out.push(InputEvent::Wheel {
                        dx: 0,
                        dy: rel_z.saturating_neg(),
                    });
                }
            }
            KbdInEvent::MultiTouch { contact_id, event } => {
                let id = i32::from(contact_id);
                match event {
                    MtEvent::Down { abs_x, abs_y } => out.push(InputEvent::TouchDown {
                        id,
                        x: scale(abs_x, f.mt_width, fw),
                        y: scale(abs_y, f.mt_height, fh),
                    }),
                    MtEvent::Motion { abs_x, abs_y } => out.push(InputEvent::TouchMove {
                        id,
                        x: scale(abs_x, f.mt_width, fw),
                        y: scale(abs_y, f.mt_height, fh),
                    }),
                    MtEvent::Up => out.push(InputEvent::TouchUp { id }),
                    _ => {}
                }
            }
        }
        out
    }
}

/// Finds the frame number a granted page lives at (for `page-ref`); the
/// simulator can tell, a platform that cannot leaves it 0.
pub type FrameLookup = Arc<dyn Fn(GrantRef) -> Option<u64> + Send + Sync>;

/// The driver-specific half of the xenbus loop for kbdif.
pub struct InputOps {
    platform: Platform,
    frame_size: (u32, u32),
    state: Arc<Mutex<InputState>>,
    events: broadcast::Sender<KbdInEvent>,
    frame_lookup: Option<FrameLookup>,
    page: Option<GrantedPage>,
    task: Option<tokio::task::JoinHandle<()>>,
    pub features: Option<InputFeatures>,
    /// Where the features read at each probe are reported (tests check
    /// what the guest saw).
    report: Option<Arc<Mutex<Option<InputFeatures>>>>,
}

impl InputOps {
    pub fn new(
        platform: Platform,
        frame_size: (u32, u32),
        state: Arc<Mutex<InputState>>,
        events: broadcast::Sender<KbdInEvent>,
        frame_lookup: Option<FrameLookup>,
    ) -> InputOps {
        InputOps {
            platform,
            frame_size,
            state,
            events,
            frame_lookup,
            page: None,
            task: None,
            features: None,
            report: None,
        }
    }

    /// Also store the features read at every probe in `report`.
    pub fn with_features_report(mut self, report: Arc<Mutex<Option<InputFeatures>>>) -> InputOps {
        self.report = Some(report);
        self
    }
}

impl Drop for InputOps {
    fn drop(&mut self) {
        // The consumer task holds its own references to the page.
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

#[async_trait::async_trait]
impl FrontendOps for InputOps {
    async fn publish(&mut self, dev: &XenbusDevice) -> Result<(), String> {
        let features = read_features(dev).await;
        if features.multi_touch {
            dev.write_own("request-multi-touch", "1")
                .await
                .map_err(|e| e.to_string())?;
        }
        if features.pointer && features.abs_pointer {
            dev.write_own("request-abs-pointer", "1")
                .await
                .map_err(|e| e.to_string())?;
        }
        if !(features.keyboard || features.pointer || features.multi_touch) {
            return Err("backend disabled keyboard, pointer and has no multi-touch".into());
        }
        let page = GrantedPage::allocate(&self.platform, dev.otherend_id).await?;
        let frame = self
            .frame_lookup
            .as_ref()
            .and_then(|f| f(page.gref))
            .unwrap_or(0);
        // Start consuming before publishing, as the driver binds its
        // interrupt handler first.
        let translator = EventTranslator::new(features, self.frame_size);
        let shm = page.shm.clone();
        let evtchn = page.evtchn.clone();
        let state = self.state.clone();
        let events = self.events.clone();
        let label = dev.nodename.clone();
        self.task = Some(tokio::spawn(async move {
            let mut ring = match KbdFrontendPage::attach(shm) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(%label, "cannot attach to the kbdif page: {e}");
                    return;
                }
            };
            loop {
                let mut any = false;
                loop {
                    match ring.next_raw() {
                        Ok(Some(raw)) => {
                            any = true;
                            // Unknown types are ignored, as the driver does.
                            let Ok(ev) = KbdInEvent::decode(&raw) else {
                                continue;
                            };
                            tracing::debug!(%label, ?ev, "input event");
                            {
                                let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
                                for e in translator.translate(&ev) {
                                    st.apply(e);
                                }
                            }
                            let _ = events.send(ev);
                        }
                        Ok(None) => break,
                        Err(e) => {
                            tracing::error!(%label, "backend broke the in ring: {e}");
                            return;
                        }
                    }
                }
                if any {
                    let _ = evtchn.notify();
                }
                if evtchn.wait().await.is_err() {
                    return;
                }
            }
        }));
        let keys = vec![
            (format!("{}/page-ref", dev.nodename), frame.to_string()),
            (format!("{}/page-gref", dev.nodename), page.gref.to_string()),
            (
                format!("{}/event-channel", dev.nodename),
                page.port().to_string(),
            ),
        ];
        self.page = Some(page);
        self.features = Some(features);
        if let Some(r) = &self.report {
            *r.lock().unwrap_or_else(|p| p.into_inner()) = Some(features);
        }
        publish_keys(dev, keys)
            .await
            .map_err(|e| format!("writing xenstore: {e}"))
    }

    async fn connect(&mut self, _dev: &XenbusDevice) -> Result<(), String> {
        Ok(())
    }

    async fn teardown(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        self.page = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_scale_to_the_frame_and_wheel_inverts() {
        let f = InputFeatures {
            width: 1000,
            height: 500,
            mt_width: 100,
            mt_height: 100,
            ..Default::default()
        };
        let t = EventTranslator::new(f, (2000, 1000));
        assert_eq!(
            t.translate(&KbdInEvent::Position {
                abs_x: 500,
                abs_y: 250,
                rel_z: 1
            }),
            vec![
                InputEvent::Motion { x: 1000, y: 500 },
                InputEvent::Wheel { dx: 0, dy: -1 }
            ]
        );
        assert_eq!(
            t.translate(&KbdInEvent::Key {
                pressed: true,
                keycode: 30
            }),
            vec![InputEvent::Key {
                code: 30,
                pressed: true
            }]
        );
        assert_eq!(
            t.translate(&KbdInEvent::Key {
                pressed: true,
                keycode: 70_000
            }),
            vec![]
        );
        assert_eq!(
            t.translate(&KbdInEvent::MultiTouch {
                contact_id: 2,
                event: MtEvent::Down {
                    abs_x: 50,
                    abs_y: 10
                }
            }),
            vec![InputEvent::TouchDown {
                id: 2,
                x: 1000,
                y: 100
            }]
        );
    }
}
