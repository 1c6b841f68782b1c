//! Input messages from a browser → batches of [`GuestInput`] for the
//! guest's kbdif device. Sans-IO: the caller passes the time and delivers
//! the batches. Everything a browser sends is checked here: role, rate,
//! codes, ranges, touch contacts.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use pvgate_backends::input::{GuestInput, InputError, InputSink, InputSpace, TouchPhase, KEY_MAX};
use serde_json::{Map, Value};

use crate::access::Role;

/// Where validated input goes: the guest's input device (an
/// [`InputSink`]), or a recorder in tests.
pub trait InputTarget: Send + Sync + 'static {
    fn space(&self) -> InputSpace;
    fn send(&self, batch: &[GuestInput]) -> Result<(), InputError>;
}

impl InputTarget for InputSink {
    fn space(&self) -> InputSpace {
        InputSink::space(self)
    }
    fn send(&self, batch: &[GuestInput]) -> Result<(), InputError> {
        InputSink::send(self, batch)
    }
}

/// At most this many input messages per second per session (PROTOCOL.md).
pub const MAX_RATE: u32 = 1000;
/// Wheel notches per message are clamped to ±this.
pub const MAX_WHEEL: i32 = 10;

pub const BTN_LEFT: u16 = 0x110;
pub const BTN_RIGHT: u16 = 0x111;
pub const BTN_MIDDLE: u16 = 0x112;
pub const BTN_SIDE: u16 = 0x113;
pub const BTN_EXTRA: u16 = 0x114;

/// Why an input message was dropped (each is counted for /metrics).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("this session may only watch (role view): input is ignored")]
    ViewOnly,
    #[error("more than {MAX_RATE} input messages per second: some were dropped")]
    RateLimited,
    #[error("bad {kind} message: {detail}")]
    Invalid { kind: String, detail: String },
    #[error("all {0} touch contacts of the guest are in use")]
    NoFreeContact(u8),
    #[error("touch {0} was not started")]
    UnknownTouch(String),
}

fn invalid(kind: &str, detail: impl Into<String>) -> Rejected {
    Rejected::Invalid {
        kind: kind.chars().take(16).collect(),
        detail: detail.into(),
    }
}

/// A token bucket: [`MAX_RATE`] per second, bursts up to one second's worth.
#[derive(Debug, Clone)]
pub struct RateLimit {
    per_second: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl RateLimit {
    pub fn new(per_second: u32) -> RateLimit {
        RateLimit {
            per_second: per_second as f64,
            tokens: per_second as f64,
            last: None,
        }
    }

    pub fn allow(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + dt * self.per_second).min(self.per_second);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One session's input state.
#[derive(Debug)]
pub struct InputValidator {
    role: Role,
    /// The display size the client's coordinates are in.
    display: (u32, u32),
    space: InputSpace,
    rate: RateLimit,
    /// Keys and buttons this session pressed and has not released.
    pressed: BTreeSet<u16>,
    /// Browser touch id → contact slot.
    touches: HashMap<i64, u8>,
}

impl InputValidator {
    pub fn new(role: Role, display: (u32, u32), space: InputSpace) -> InputValidator {
        InputValidator {
            role,
            display,
            space,
            rate: RateLimit::new(MAX_RATE),
            pressed: BTreeSet::new(),
            touches: HashMap::new(),
        }
    }

    /// The guest's display changed size: coordinates come in the new size.
    pub fn set_display(&mut self, display: (u32, u32)) {
        self.display = display;
    }

    /// The role changed mid-session (the tenant's policy re-checked it).
    /// Losing control releases what is held: the events to send for that.
    pub fn set_role(&mut self, role: Role) -> Vec<GuestInput> {
        let release = if role != Role::Control && self.role == Role::Control {
            self.release_all()
        } else {
            Vec::new()
        };
        self.role = role;
        release
    }

    /// Turn one input message (a JSON object with an input `type`) into the
    /// events to send, or say why it was dropped.
    pub fn handle(
        &mut self,
        now: Instant,
        msg: &Map<String, Value>,
    ) -> Result<Vec<GuestInput>, Rejected> {
        if self.role != Role::Control {
            return Err(Rejected::ViewOnly);
        }
        if !self.rate.allow(now) {
            return Err(Rejected::RateLimited);
        }
        let kind = msg.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "key" => {
                let code = field_u64(msg, kind, "code")?;
                let code = u16::try_from(code)
                    .ok()
                    .filter(|c| (1..=KEY_MAX).contains(c))
                    .ok_or_else(|| {
                        invalid(kind, format!("code {code} is not a Linux KEY_*/BTN_* code"))
                    })?;
                let down = field_bool(msg, kind, "down")?;
                Ok(vec![self.key(code, down)])
            }
            "move" => {
                let (x, y) = self.pointer_at(msg, kind)?;
                Ok(vec![GuestInput::Pointer { x, y }])
            }
            "button" => {
                let code = match msg.get("button").and_then(Value::as_str) {
                    Some("left") => BTN_LEFT,
                    Some("right") => BTN_RIGHT,
                    Some("middle") => BTN_MIDDLE,
                    Some("side") => BTN_SIDE,
                    Some("extra") => BTN_EXTRA,
                    _ => {
                        return Err(invalid(
                            kind,
                            "button must be left, right, middle, side or extra",
                        ))
                    }
                };
                let down = field_bool(msg, kind, "down")?;
                // Move first, so the click lands where the user clicked.
                let (x, y) = self.pointer_at(msg, kind)?;
                Ok(vec![GuestInput::Pointer { x, y }, self.key(code, down)])
            }
            "wheel" => {
                let dy = msg
                    .get("dy")
                    .and_then(Value::as_f64)
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| invalid(kind, "dy must be a number"))?;
                let notches = dy.round().clamp(-(MAX_WHEEL as f64), MAX_WHEEL as f64) as i32;
                Ok(if notches == 0 {
                    Vec::new()
                } else {
                    vec![GuestInput::Wheel { notches }]
                })
            }
            "touch" => self.touch(msg),
            "release" => Ok(self.release_all()),
            other => Err(invalid(other, "not an input message")),
        }
    }

    fn key(&mut self, code: u16, down: bool) -> GuestInput {
        if down {
            self.pressed.insert(code);
        } else {
            self.pressed.remove(&code);
        }
        GuestInput::Key {
            code,
            pressed: down,
        }
    }

    /// Key-ups for every key and button this session holds down, and the
    /// end of every touch (window lost focus, or the session ends).
    pub fn release_all(&mut self) -> Vec<GuestInput> {
        let mut out: Vec<GuestInput> = std::mem::take(&mut self.pressed)
            .into_iter()
            .map(|code| GuestInput::Key {
                code,
                pressed: false,
            })
            .collect();
        let mut contacts: Vec<u8> = self.touches.drain().map(|(_, c)| c).collect();
        contacts.sort_unstable();
        out.extend(contacts.into_iter().map(|contact| GuestInput::Touch {
            contact,
            phase: TouchPhase::Up,
            x: 0,
            y: 0,
        }));
        out
    }

    fn pointer_at(&self, msg: &Map<String, Value>, kind: &str) -> Result<(u32, u32), Rejected> {
        let (x, y) = self.display_xy(msg, kind)?;
        Ok((
            scale(x, self.display.0, self.space.pointer.0),
            scale(y, self.display.1, self.space.pointer.1),
        ))
    }

    /// The message's `x`, `y`, inside the display (fractions truncated).
    fn display_xy(&self, msg: &Map<String, Value>, kind: &str) -> Result<(u32, u32), Rejected> {
        let coord = |key: &str, limit: u32| -> Result<u32, Rejected> {
            let v = msg
                .get(key)
                .and_then(Value::as_f64)
                .filter(|v| v.is_finite())
                .ok_or_else(|| invalid(kind, format!("{key} must be a number")))?;
            if v < 0.0 || v >= limit as f64 {
                return Err(invalid(
                    kind,
                    format!("{key}={v} is outside the display (0..{limit})"),
                ));
            }
            Ok(v as u32)
        };
        Ok((coord("x", self.display.0)?, coord("y", self.display.1)?))
    }

    fn touch(&mut self, msg: &Map<String, Value>) -> Result<Vec<GuestInput>, Rejected> {
        let kind = "touch";
        let id = msg
            .get("id")
            .and_then(|v| v.as_i64().or_else(|| v.as_u64().map(|u| u as i64)))
            .ok_or_else(|| invalid(kind, "id must be an integer"))?;
        let phase = msg.get("phase").and_then(Value::as_str);
        let (x, y) = match phase {
            // End and cancel may come without a position (or outside the
            // display, when the finger left it).
            Some("end") | Some("cancel") => self.display_xy(msg, kind).unwrap_or((0, 0)),
            _ => self.display_xy(msg, kind)?,
        };
        let (x, y) = (
            scale(x, self.display.0, self.space.touch.0),
            scale(y, self.display.1, self.space.touch.1),
        );
        match phase {
            Some("start") => {
                let contact = match self.touches.get(&id) {
                    Some(c) => *c,
                    None => {
                        let used: BTreeSet<u8> = self.touches.values().copied().collect();
                        let free = (0..self.space.contacts).find(|c| !used.contains(c));
                        let c = free.ok_or(Rejected::NoFreeContact(self.space.contacts))?;
                        self.touches.insert(id, c);
                        c
                    }
                };
                Ok(vec![GuestInput::Touch {
                    contact,
                    phase: TouchPhase::Down,
                    x,
                    y,
                }])
            }
            Some("move") => {
                let contact = *self
                    .touches
                    .get(&id)
                    .ok_or_else(|| Rejected::UnknownTouch(id.to_string()))?;
                Ok(vec![GuestInput::Touch {
                    contact,
                    phase: TouchPhase::Move,
                    x,
                    y,
                }])
            }
            Some("end") | Some("cancel") => {
                let contact = self
                    .touches
                    .remove(&id)
                    .ok_or_else(|| Rejected::UnknownTouch(id.to_string()))?;
                Ok(vec![GuestInput::Touch {
                    contact,
                    phase: TouchPhase::Up,
                    x,
                    y,
                }])
            }
            _ => Err(invalid(kind, "phase must be start, move, end or cancel")),
        }
    }

    #[cfg(test)]
    pub fn pressed(&self) -> usize {
        self.pressed.len()
    }
}

fn field_u64(msg: &Map<String, Value>, kind: &str, key: &str) -> Result<u64, Rejected> {
    msg.get(key)
        .and_then(Value::as_u64)
        .ok_or_else(|| invalid(kind, format!("{key} must be a non-negative integer")))
}

fn field_bool(msg: &Map<String, Value>, kind: &str, key: &str) -> Result<bool, Rejected> {
    msg.get(key)
        .and_then(Value::as_bool)
        .ok_or_else(|| invalid(kind, format!("{key} must be true or false")))
}

/// `v` in `0..from` → the same place in `0..to` (pixel centres line up
/// at the edges: 0 → 0, from-1 → to-1).
pub fn scale(v: u32, from: u32, to: u32) -> u32 {
    if from <= 1 || to == 0 {
        return 0;
    }
    let scaled = (v as u64 * (to as u64 - 1) + (from as u64 - 1) / 2) / (from as u64 - 1);
    scaled.min(to as u64 - 1) as u32
}

/// How long a client may go without rate tokens before a warning is worth
/// sending again (errors for dropped input must not flood the socket).
pub const WARN_EVERY: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(o) => o,
            _ => unreachable!(),
        }
    }

    fn space() -> InputSpace {
        InputSpace {
            pointer: (65536, 65536),
            touch: (1280, 720),
            contacts: 2,
        }
    }

    fn v() -> InputValidator {
        InputValidator::new(Role::Control, (1280, 720), space())
    }

    #[test]
    fn keys_are_checked_and_remembered_for_release() {
        let mut iv = v();
        let t = Instant::now();
        assert_eq!(
            iv.handle(t, &obj(json!({"type":"key","code":30,"down":true}))),
            Ok(vec![GuestInput::Key {
                code: 30,
                pressed: true
            }])
        );
        for bad in [
            json!({"type":"key","code":0,"down":true}),
            json!({"type":"key","code":0x300,"down":true}),
            json!({"type":"key","code":-1,"down":true}),
            json!({"type":"key","code":70000,"down":true}),
            json!({"type":"key","code":30}),
            json!({"type":"key","code":"a","down":true}),
        ] {
            assert!(
                matches!(
                    iv.handle(t, &obj(bad.clone())),
                    Err(Rejected::Invalid { .. })
                ),
                "{bad}"
            );
        }
        iv.handle(
            t,
            &obj(json!({"type":"button","button":"right","down":true,"x":0,"y":0})),
        )
        .unwrap();
        assert_eq!(iv.pressed(), 2);
        assert_eq!(
            iv.handle(t, &obj(json!({"type":"release"}))),
            Ok(vec![
                GuestInput::Key {
                    code: 30,
                    pressed: false
                },
                GuestInput::Key {
                    code: BTN_RIGHT,
                    pressed: false
                }
            ])
        );
        assert_eq!(iv.pressed(), 0);
        assert_eq!(iv.handle(t, &obj(json!({"type":"release"}))), Ok(vec![]));
    }

    #[test]
    fn pointer_coordinates_are_scaled_to_the_device_space() {
        let mut iv = v();
        let t = Instant::now();
        let at = |iv: &mut InputValidator, x: f64, y: f64| {
            iv.handle(t, &obj(json!({"type":"move","x":x,"y":y})))
        };
        assert_eq!(
            at(&mut iv, 0.0, 0.0),
            Ok(vec![GuestInput::Pointer { x: 0, y: 0 }])
        );
        assert_eq!(
            at(&mut iv, 1279.0, 719.0),
            Ok(vec![GuestInput::Pointer { x: 65535, y: 65535 }])
        );
        assert_eq!(
            at(&mut iv, 639.5, 359.0),
            Ok(vec![GuestInput::Pointer {
                x: scale(639, 1280, 65536),
                y: scale(359, 720, 65536)
            }])
        );
        for (x, y) in [(1280.0, 0.0), (0.0, 720.0), (-1.0, 5.0)] {
            assert!(matches!(at(&mut iv, x, y), Err(Rejected::Invalid { .. })));
        }
        assert!(iv
            .handle(t, &obj(json!({"type":"move","x":"1","y":2})))
            .is_err());
        // A button moves the pointer, then presses.
        assert_eq!(
            iv.handle(
                t,
                &obj(json!({"type":"button","button":"left","down":true,"x":1279,"y":0}))
            ),
            Ok(vec![
                GuestInput::Pointer { x: 65535, y: 0 },
                GuestInput::Key {
                    code: BTN_LEFT,
                    pressed: true
                }
            ])
        );
        assert!(iv
            .handle(
                t,
                &obj(json!({"type":"button","button":"fourth","down":true,"x":1,"y":1}))
            )
            .is_err());
        // Same size spaces map one to one.
        assert_eq!(scale(17, 1280, 1280), 17);
        assert_eq!(scale(5, 1, 100), 0);
    }

    #[test]
    fn wheel_is_clamped() {
        let mut iv = v();
        let t = Instant::now();
        assert_eq!(
            iv.handle(t, &obj(json!({"type":"wheel","dy":250}))),
            Ok(vec![GuestInput::Wheel { notches: 10 }])
        );
        assert_eq!(
            iv.handle(t, &obj(json!({"type":"wheel","dy":-3}))),
            Ok(vec![GuestInput::Wheel { notches: -3 }])
        );
        assert_eq!(
            iv.handle(t, &obj(json!({"type":"wheel","dy":0}))),
            Ok(vec![])
        );
        assert!(iv.handle(t, &obj(json!({"type":"wheel"}))).is_err());
    }

    #[test]
    fn touches_get_contact_slots_freed_on_end_and_cancel() {
        let mut iv = InputValidator::new(
            Role::Control,
            (1280, 720),
            InputSpace {
                pointer: (1280, 720),
                touch: (640, 360),
                contacts: 2,
            },
        );
        let t = Instant::now();
        let touch = |iv: &mut InputValidator, id: i64, phase: &str, x: u32, y: u32| {
            iv.handle(
                t,
                &obj(json!({"type":"touch","id":id,"phase":phase,"x":x,"y":y})),
            )
        };
        assert_eq!(
            touch(&mut iv, 901, "start", 1279, 719),
            Ok(vec![GuestInput::Touch {
                contact: 0,
                phase: TouchPhase::Down,
                x: 639,
                y: 359
            }])
        );
        assert!(matches!(
            touch(&mut iv, 902, "start", 10, 10).unwrap()[0],
            GuestInput::Touch { contact: 1, .. }
        ));
        assert_eq!(
            touch(&mut iv, 903, "start", 10, 10),
            Err(Rejected::NoFreeContact(2))
        );
        assert!(matches!(
            touch(&mut iv, 902, "move", 20, 20).unwrap()[0],
            GuestInput::Touch {
                contact: 1,
                phase: TouchPhase::Move,
                x: 10,
                y: 10
            }
        ));
        assert!(matches!(
            touch(&mut iv, 901, "cancel", 0, 0).unwrap()[0],
            GuestInput::Touch {
                contact: 0,
                phase: TouchPhase::Up,
                ..
            }
        ));
        assert_eq!(
            touch(&mut iv, 901, "move", 1, 1),
            Err(Rejected::UnknownTouch("901".into()))
        );
        // The freed slot is reused.
        assert!(matches!(
            touch(&mut iv, 904, "start", 10, 10).unwrap()[0],
            GuestInput::Touch { contact: 0, .. }
        ));
        assert!(touch(&mut iv, 905, "wiggle", 1, 1).is_err());
        // Release ends the remaining touches.
        let released = iv.release_all();
        assert_eq!(released.len(), 2);
        assert!(released.iter().all(|e| matches!(
            e,
            GuestInput::Touch {
                phase: TouchPhase::Up,
                ..
            }
        )));
    }

    #[test]
    fn view_only_sessions_send_nothing() {
        let mut iv = InputValidator::new(Role::View, (1280, 720), space());
        assert_eq!(
            iv.handle(
                Instant::now(),
                &obj(json!({"type":"key","code":30,"down":true}))
            ),
            Err(Rejected::ViewOnly)
        );
        assert!(iv.release_all().is_empty());
    }

    #[test]
    fn at_most_1000_messages_per_second() {
        let mut iv = v();
        let t0 = Instant::now();
        let msg = obj(json!({"type":"move","x":1,"y":1}));
        let ok = (0..1500).filter(|_| iv.handle(t0, &msg).is_ok()).count();
        assert_eq!(ok, 1000);
        assert_eq!(iv.handle(t0, &msg), Err(Rejected::RateLimited));
        // Half a second later half a second's worth is back.
        let t1 = t0 + Duration::from_millis(500);
        let ok = (0..1000).filter(|_| iv.handle(t1, &msg).is_ok()).count();
        assert_eq!(ok, 500);
    }
}
