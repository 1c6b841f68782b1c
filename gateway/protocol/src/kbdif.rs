//! kbdif input events (backend → frontend, 40 bytes each) as typed values.
//!
//! Keys and buttons are Linux `KEY_*`/`BTN_*` codes. Absolute positions are
//! in the range the backend advertised (`width`/`height`, or
//! `multi-touch-width`/`-height`, or 0..=0x7fff with `request-raw-pointer`).

use crate::abi::kbdif::*;
use crate::wire::*;
use core::mem::offset_of;

/// A kbdif event slot.
pub type KbdSlot = [u8; XENKBD_IN_EVENT_SIZE];

const TYPE: usize = offset_of!(xenkbd_in_event, r#type);
const MOTION: usize = offset_of!(xenkbd_in_event, motion);
const KEY: usize = offset_of!(xenkbd_in_event, key);
const POS: usize = offset_of!(xenkbd_in_event, pos);
const MT: usize = offset_of!(xenkbd_in_event, mtouch);
const MT_EVENT_TYPE: usize = MT + offset_of!(xenkbd_mtouch, event_type);
const MT_CONTACT: usize = MT + offset_of!(xenkbd_mtouch, contact_id);
const MT_U: usize = MT + offset_of!(xenkbd_mtouch, u);
const MT_ABS_X: usize =
    MT_U + offset_of!(xenkbd_mtouch_u, pos) + offset_of!(xenkbd_mtouch_pos, abs_x);
const MT_ABS_Y: usize =
    MT_U + offset_of!(xenkbd_mtouch_u, pos) + offset_of!(xenkbd_mtouch_pos, abs_y);
const MT_MAJOR: usize =
    MT_U + offset_of!(xenkbd_mtouch_u, shape) + offset_of!(xenkbd_mtouch_shape, major);
const MT_MINOR: usize =
    MT_U + offset_of!(xenkbd_mtouch_u, shape) + offset_of!(xenkbd_mtouch_shape, minor);
const MT_ORIENT: usize = MT_U + offset_of!(xenkbd_mtouch_u, orientation);

/// Why a kbdif event was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KbdDecodeError {
    /// Frontends must skip these ("frontends should ignore unknown in
    /// events"), so the consumer treats this as "skip", not "close".
    #[error("unknown kbdif event type {0}")]
    UnknownType(u8),
    #[error("unknown kbdif multi-touch event type {0}")]
    UnknownMtEventType(u8),
    #[error("kbdif defines no out events, but the frontend sent type {event_type}")]
    UnexpectedOutEvent { event_type: u8 },
}

/// Multi-touch sub-events (`XENKBD_MT_EV_*`), each for one contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtEvent {
    Down {
        abs_x: i32,
        abs_y: i32,
    },
    Up,
    Motion {
        abs_x: i32,
        abs_y: i32,
    },
    Syn,
    Shape {
        major: u32,
        minor: u32,
    },
    /// Clockwise angle of the major axis to +Y, degrees in [-180, 180].
    Orient {
        orientation: i16,
    },
}

/// One input event (`union xenkbd_in_event`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KbdInEvent {
    /// `XENKBD_TYPE_MOTION`: relative pointer movement; `rel_z` is the wheel.
    Motion { rel_x: i32, rel_y: i32, rel_z: i32 },
    /// `XENKBD_TYPE_KEY`: a key or pointer button.
    Key { pressed: bool, keycode: u32 },
    /// `XENKBD_TYPE_POS`: absolute pointer position.
    Position { abs_x: i32, abs_y: i32, rel_z: i32 },
    /// `XENKBD_TYPE_MTOUCH`
    MultiTouch { contact_id: u8, event: MtEvent },
}

impl KbdInEvent {
    pub fn encode(&self) -> KbdSlot {
        let mut b = [0u8; XENKBD_IN_EVENT_SIZE];
        match *self {
            KbdInEvent::Motion {
                rel_x,
                rel_y,
                rel_z,
            } => {
                put_u8(&mut b, TYPE, XENKBD_TYPE_MOTION);
                put_i32(&mut b, MOTION + offset_of!(xenkbd_motion, rel_x), rel_x);
                put_i32(&mut b, MOTION + offset_of!(xenkbd_motion, rel_y), rel_y);
                put_i32(&mut b, MOTION + offset_of!(xenkbd_motion, rel_z), rel_z);
            }
            KbdInEvent::Key { pressed, keycode } => {
                put_u8(&mut b, TYPE, XENKBD_TYPE_KEY);
                put_u8(
                    &mut b,
                    KEY + offset_of!(xenkbd_key, pressed),
                    u8::from(pressed),
                );
                put_u32(&mut b, KEY + offset_of!(xenkbd_key, keycode), keycode);
            }
            KbdInEvent::Position {
                abs_x,
                abs_y,
                rel_z,
            } => {
                put_u8(&mut b, TYPE, XENKBD_TYPE_POS);
                put_i32(&mut b, POS + offset_of!(xenkbd_position, abs_x), abs_x);
                put_i32(&mut b, POS + offset_of!(xenkbd_position, abs_y), abs_y);
                put_i32(&mut b, POS + offset_of!(xenkbd_position, rel_z), rel_z);
            }
            KbdInEvent::MultiTouch { contact_id, event } => {
                put_u8(&mut b, TYPE, XENKBD_TYPE_MTOUCH);
                put_u8(&mut b, MT_CONTACT, contact_id);
                let sub = match event {
                    MtEvent::Down { abs_x, abs_y } | MtEvent::Motion { abs_x, abs_y } => {
                        put_i32(&mut b, MT_ABS_X, abs_x);
                        put_i32(&mut b, MT_ABS_Y, abs_y);
                        if matches!(event, MtEvent::Down { .. }) {
                            XENKBD_MT_EV_DOWN
                        } else {
                            XENKBD_MT_EV_MOTION
                        }
                    }
                    MtEvent::Up => XENKBD_MT_EV_UP,
                    MtEvent::Syn => XENKBD_MT_EV_SYN,
                    MtEvent::Shape { major, minor } => {
                        put_u32(&mut b, MT_MAJOR, major);
                        put_u32(&mut b, MT_MINOR, minor);
                        XENKBD_MT_EV_SHAPE
                    }
                    MtEvent::Orient { orientation } => {
                        put_i16(&mut b, MT_ORIENT, orientation);
                        XENKBD_MT_EV_ORIENT
                    }
                };
                put_u8(&mut b, MT_EVENT_TYPE, sub);
            }
        }
        b
    }

    /// Frontend side (the guest simulator). `pressed` is true for any
    /// non-zero byte, as xen-kbdfront passes it straight to
    /// `input_report_key`.
    pub fn decode(b: &KbdSlot) -> Result<KbdInEvent, KbdDecodeError> {
        Ok(match u8_at(b, TYPE) {
            XENKBD_TYPE_MOTION => KbdInEvent::Motion {
                rel_x: i32_at(b, MOTION + offset_of!(xenkbd_motion, rel_x)),
                rel_y: i32_at(b, MOTION + offset_of!(xenkbd_motion, rel_y)),
                rel_z: i32_at(b, MOTION + offset_of!(xenkbd_motion, rel_z)),
            },
            XENKBD_TYPE_KEY => KbdInEvent::Key {
                pressed: u8_at(b, KEY + offset_of!(xenkbd_key, pressed)) != 0,
                keycode: u32_at(b, KEY + offset_of!(xenkbd_key, keycode)),
            },
            XENKBD_TYPE_POS => KbdInEvent::Position {
                abs_x: i32_at(b, POS + offset_of!(xenkbd_position, abs_x)),
                abs_y: i32_at(b, POS + offset_of!(xenkbd_position, abs_y)),
                rel_z: i32_at(b, POS + offset_of!(xenkbd_position, rel_z)),
            },
            XENKBD_TYPE_MTOUCH => {
                let event = match u8_at(b, MT_EVENT_TYPE) {
                    XENKBD_MT_EV_DOWN => MtEvent::Down {
                        abs_x: i32_at(b, MT_ABS_X),
                        abs_y: i32_at(b, MT_ABS_Y),
                    },
                    XENKBD_MT_EV_UP => MtEvent::Up,
                    XENKBD_MT_EV_MOTION => MtEvent::Motion {
                        abs_x: i32_at(b, MT_ABS_X),
                        abs_y: i32_at(b, MT_ABS_Y),
                    },
                    XENKBD_MT_EV_SYN => MtEvent::Syn,
                    XENKBD_MT_EV_SHAPE => MtEvent::Shape {
                        major: u32_at(b, MT_MAJOR),
                        minor: u32_at(b, MT_MINOR),
                    },
                    XENKBD_MT_EV_ORIENT => MtEvent::Orient {
                        orientation: i16_at(b, MT_ORIENT),
                    },
                    other => return Err(KbdDecodeError::UnknownMtEventType(other)),
                };
                KbdInEvent::MultiTouch {
                    contact_id: u8_at(b, MT_CONTACT),
                    event,
                }
            }
            other => return Err(KbdDecodeError::UnknownType(other)),
        })
    }
}
