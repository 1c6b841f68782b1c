//! What the session layer sends ([`GuestInput`]) and how a batch becomes
//! kbdif events, sans-IO: validation, clamping, the pointer mode the guest
//! asked for, and the multi-touch SYN.

use pvgate_protocol::kbdif::{KbdInEvent, MtEvent};

/// `KEY_MAX` of `linux/input-event-codes.h`: xen-kbdfront registers keys up
/// to it and drops anything beyond.
pub const KEY_MAX: u16 = 0x2ff;

/// A contact's step in a touch gesture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TouchPhase {
    Down,
    Move,
    Up,
}

/// One input event for a guest, in the device's [`InputSpace`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestInput {
    /// `KEY_*` and `BTN_*` codes.
    Key { code: u16, pressed: bool },
    /// Absolute, in [`InputSpace::pointer`].
    Pointer { x: u32, y: u32 },
    /// Positive = down (kbdif `rel_z`; the guest reports `REL_WHEEL` as
    /// its negation).
    Wheel { notches: i32 },
    /// In [`InputSpace::touch`].
    Touch {
        contact: u8,
        phase: TouchPhase,
        x: u32,
        y: u32,
    },
}

/// The coordinate spaces the guest was told at probe, and how many touch
/// contacts it accepts (0: the guest did not ask for multi-touch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputSpace {
    pub pointer: (u32, u32),
    pub touch: (u32, u32),
    pub contacts: u8,
}

/// Why a batch was not delivered. A refused batch delivers nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("key code {0:#x} is not a Linux KEY_*/BTN_* code (1..={KEY_MAX:#x})")]
    BadKeyCode(u16),
    #[error("touch contact {contact} is outside the guest's {contacts} contacts")]
    BadContact { contact: u8, contacts: u8 },
    #[error("a batch of {events} events cannot fit the guest's {capacity}-slot ring")]
    BatchTooLarge { events: usize, capacity: u32 },
    #[error("the guest is not consuming input: {dropped} events dropped")]
    RingFull { dropped: usize },
    #[error("input rate limit reached: {dropped} events dropped")]
    RateLimited { dropped: usize },
    #[error("the input device is not connected")]
    Disconnected,
}

/// What the guest asked for at connect (`request-*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PointerMode {
    /// `request-abs-pointer`: POS events; otherwise the guest's pointer is
    /// relative and gets MOTION deltas from the last position we sent.
    pub absolute: bool,
}

/// A batch turned into kbdif events.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Encoded {
    pub events: Vec<KbdInEvent>,
    /// Coordinates or wheel steps that had to be clamped into range.
    pub clamped: u32,
}

/// The encoder's memory between batches: where the pointer was last put
/// (for relative guests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PointerTrack {
    pub last: (u32, u32),
}

fn clamp_axis(v: u32, size: u32, clamped: &mut u32) -> i32 {
    let max = size.saturating_sub(1).min(i32::MAX as u32);
    if v > max {
        *clamped += 1;
        max as i32
    } else {
        v as i32
    }
}

/// Validate `batch` against `space` and encode it. Codes and contacts out
/// of range refuse the whole batch (they have no sensible nearest value);
/// positions and wheel steps are clamped and counted. A batch with touch
/// events ends with one SYN, which is when xen-kbdfront reports the frame.
pub fn encode_batch(
    batch: &[GuestInput],
    space: &InputSpace,
    mode: PointerMode,
    max_wheel_notches: u32,
    track: &mut PointerTrack,
) -> Result<Encoded, InputError> {
    for input in batch {
        match *input {
            GuestInput::Key { code, .. } if code == 0 || code > KEY_MAX => {
                return Err(InputError::BadKeyCode(code));
            }
            GuestInput::Touch { contact, .. } if contact >= space.contacts => {
                return Err(InputError::BadContact {
                    contact,
                    contacts: space.contacts,
                });
            }
            _ => {}
        }
    }
    let mut out = Encoded::default();
    let mut pointer = track.last;
    let mut last_contact = None;
    let wheel_max = max_wheel_notches.min(i32::MAX as u32) as i32;
    for input in batch {
        let event = match *input {
            GuestInput::Key { code, pressed } => KbdInEvent::Key {
                pressed,
                keycode: u32::from(code),
            },
            GuestInput::Pointer { x, y } => {
                let (w, h) = space.pointer;
                let x = clamp_axis(x, w, &mut out.clamped);
                let y = clamp_axis(y, h, &mut out.clamped);
                let (px, py) = pointer;
                pointer = (x as u32, y as u32);
                if mode.absolute {
                    KbdInEvent::Position {
                        abs_x: x,
                        abs_y: y,
                        rel_z: 0,
                    }
                } else {
                    KbdInEvent::Motion {
                        rel_x: x - px as i32,
                        rel_y: y - py as i32,
                        rel_z: 0,
                    }
                }
            }
            GuestInput::Wheel { notches } => {
                let n = notches.clamp(-wheel_max, wheel_max);
                if n != notches {
                    out.clamped += 1;
                }
                if n == 0 {
                    continue;
                }
                // MOTION with zero movement: the wheel alone, whatever the
                // pointer mode (REL_WHEEL is always a capability).
                KbdInEvent::Motion {
                    rel_x: 0,
                    rel_y: 0,
                    rel_z: n,
                }
            }
            GuestInput::Touch {
                contact,
                phase,
                x,
                y,
            } => {
                let (w, h) = space.touch;
                let abs_x = clamp_axis(x, w, &mut out.clamped);
                let abs_y = clamp_axis(y, h, &mut out.clamped);
                last_contact = Some(contact);
                KbdInEvent::MultiTouch {
                    contact_id: contact,
                    event: match phase {
                        TouchPhase::Down => MtEvent::Down { abs_x, abs_y },
                        TouchPhase::Move => MtEvent::Motion { abs_x, abs_y },
                        TouchPhase::Up => MtEvent::Up,
                    },
                }
            }
        };
        out.events.push(event);
    }
    if let Some(contact_id) = last_contact {
        // xen-kbdfront selects the slot by contact id on every MT event:
        // the last contact's id avoids a needless slot switch.
        out.events.push(KbdInEvent::MultiTouch {
            contact_id,
            event: MtEvent::Syn,
        });
    }
    track.last = pointer;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPACE: InputSpace = InputSpace {
        pointer: (1280, 720),
        touch: (1280, 720),
        contacts: 10,
    };
    const ABS: PointerMode = PointerMode { absolute: true };

    fn enc(batch: &[GuestInput]) -> Result<Encoded, InputError> {
        encode_batch(batch, &SPACE, ABS, 10, &mut PointerTrack::default())
    }

    #[test]
    fn keys_pointer_and_wheel_in_order() {
        let e = enc(&[
            GuestInput::Pointer { x: 100, y: 200 },
            GuestInput::Key {
                code: 0x110,
                pressed: true,
            },
            GuestInput::Key {
                code: 0x110,
                pressed: false,
            },
            GuestInput::Wheel { notches: -2 },
        ])
        .unwrap();
        assert_eq!(
            e.events,
            vec![
                KbdInEvent::Position {
                    abs_x: 100,
                    abs_y: 200,
                    rel_z: 0
                },
                KbdInEvent::Key {
                    pressed: true,
                    keycode: 0x110
                },
                KbdInEvent::Key {
                    pressed: false,
                    keycode: 0x110
                },
                KbdInEvent::Motion {
                    rel_x: 0,
                    rel_y: 0,
                    rel_z: -2
                },
            ]
        );
        assert_eq!(e.clamped, 0);
    }

    #[test]
    fn bad_codes_and_contacts_refuse_the_whole_batch() {
        let ok = GuestInput::Key {
            code: 30,
            pressed: true,
        };
        for bad in [0u16, KEY_MAX + 1, u16::MAX] {
            assert_eq!(
                enc(&[
                    ok,
                    GuestInput::Key {
                        code: bad,
                        pressed: true
                    }
                ]),
                Err(InputError::BadKeyCode(bad))
            );
        }
        assert!(enc(&[GuestInput::Key {
            code: KEY_MAX,
            pressed: true
        }])
        .is_ok());
        let touch = |contact| GuestInput::Touch {
            contact,
            phase: TouchPhase::Down,
            x: 1,
            y: 1,
        };
        assert_eq!(
            enc(&[touch(10)]),
            Err(InputError::BadContact {
                contact: 10,
                contacts: 10
            })
        );
        // A guest that did not ask for multi-touch has no contacts at all.
        let no_touch = InputSpace {
            contacts: 0,
            ..SPACE
        };
        assert!(encode_batch(
            &[touch(0)],
            &no_touch,
            ABS,
            10,
            &mut PointerTrack::default()
        )
        .is_err());
    }

    #[test]
    fn positions_and_wheel_are_clamped_and_counted() {
        let e = enc(&[
            GuestInput::Pointer {
                x: 5000,
                y: u32::MAX,
            },
            GuestInput::Wheel { notches: i32::MIN },
            GuestInput::Wheel { notches: 0 },
        ])
        .unwrap();
        assert_eq!(
            e.events,
            vec![
                KbdInEvent::Position {
                    abs_x: 1279,
                    abs_y: 719,
                    rel_z: 0
                },
                KbdInEvent::Motion {
                    rel_x: 0,
                    rel_y: 0,
                    rel_z: -10
                },
            ]
        );
        assert_eq!(e.clamped, 3);
        // A zero-sized space cannot overflow either.
        let empty = InputSpace {
            pointer: (0, 0),
            ..SPACE
        };
        let e = encode_batch(
            &[GuestInput::Pointer { x: 3, y: 0 }],
            &empty,
            ABS,
            10,
            &mut PointerTrack::default(),
        )
        .unwrap();
        assert_eq!(e.clamped, 1);
    }

    #[test]
    fn touch_batches_end_with_one_syn() {
        let t = |contact, phase, x| GuestInput::Touch {
            contact,
            phase,
            x,
            y: 50,
        };
        let e = enc(&[
            t(0, TouchPhase::Down, 10),
            t(1, TouchPhase::Down, 20),
            t(1, TouchPhase::Move, 30),
            t(0, TouchPhase::Up, 0),
        ])
        .unwrap();
        assert_eq!(e.events.len(), 5);
        assert_eq!(
            e.events[3],
            KbdInEvent::MultiTouch {
                contact_id: 0,
                event: MtEvent::Up
            }
        );
        assert_eq!(
            e.events[4],
            KbdInEvent::MultiTouch {
                contact_id: 0,
                event: MtEvent::Syn
            }
        );
        // No touch, no SYN.
        assert!(enc(&[GuestInput::Key {
            code: 30,
            pressed: true
        }])
        .unwrap()
        .events
        .iter()
        .all(|e| !matches!(e, KbdInEvent::MultiTouch { .. })));
    }

    #[test]
    fn a_relative_guest_gets_deltas_from_the_last_position() {
        let mut track = PointerTrack::default();
        let rel = PointerMode { absolute: false };
        let e = encode_batch(
            &[
                GuestInput::Pointer { x: 100, y: 50 },
                GuestInput::Pointer { x: 90, y: 60 },
            ],
            &SPACE,
            rel,
            10,
            &mut track,
        )
        .unwrap();
        assert_eq!(
            e.events,
            vec![
                KbdInEvent::Motion {
                    rel_x: 100,
                    rel_y: 50,
                    rel_z: 0
                },
                KbdInEvent::Motion {
                    rel_x: -10,
                    rel_y: 10,
                    rel_z: 0
                },
            ]
        );
        assert_eq!(track.last, (90, 60));
        // A refused batch leaves the track alone.
        let _ = encode_batch(
            &[
                GuestInput::Pointer { x: 1, y: 1 },
                GuestInput::Key {
                    code: 0,
                    pressed: true,
                },
            ],
            &SPACE,
            rel,
            10,
            &mut track,
        );
        assert_eq!(track.last, (90, 60));
    }
}
