//! What the guest has been told by its input device: pointer position, buttons, wheel, held
//! keys, typed text and touch contacts. The kbdif frontend turns ring events into
//! [`InputEvent`]s; the overlay draws the resulting state so tests can see input arrive.

use std::collections::{BTreeMap, BTreeSet};

use super::keymap::{
    char_to_key, key_to_char, BTN_LEFT, BTN_MIDDLE, BTN_RIGHT, KEY_BACKSPACE, KEY_CAPSLOCK,
    KEY_ENTER, KEY_KPENTER, KEY_LEFTSHIFT, KEY_RIGHTSHIFT,
};

/// One input event, in frame pixel coordinates for absolute positions. Mouse buttons may
/// arrive either as `Button` or as `Key` with a `BTN_*` code (kbdif sends them as keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputEvent {
    Key { code: u16, pressed: bool },
    Motion { x: i32, y: i32 },
    RelMotion { dx: i32, dy: i32 },
    Button { code: u16, pressed: bool },
    Wheel { dx: i32, dy: i32 },
    TouchDown { id: i32, x: i32, y: i32 },
    TouchMove { id: i32, x: i32, y: i32 },
    TouchUp { id: i32 },
}

/// Typed characters kept; the text line shows the tail that fits.
pub const TEXT_CAPACITY: usize = 256;
/// Touch contacts kept at once; more are ignored (a misbehaving backend cannot grow this).
pub const MAX_CONTACTS: usize = 16;

/// Pressed mouse buttons.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Buttons {
    pub left: bool,
    pub middle: bool,
    pub right: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputState {
    width: u32,
    height: u32,
    /// Pointer position, always inside the frame.
    pub pointer: (u32, u32),
    pub buttons: Buttons,
    /// Accumulated wheel steps.
    pub wheel: (i64, i64),
    /// Keys currently held (any code, including buttons).
    pub held: BTreeSet<u16>,
    pub caps_lock: bool,
    /// Typed text (Backspace removes, Enter clears the line, like a prompt submitting it).
    pub text: String,
    /// Live touch contacts by id, positions inside the frame.
    pub touches: BTreeMap<i32, (u32, u32)>,
}

impl InputState {
    /// State for a `width × height` frame; the pointer starts in the middle.
    pub fn new(width: u32, height: u32) -> Self {
        InputState {
            width,
            height,
            pointer: (width / 2, height / 2),
            buttons: Buttons::default(),
            wheel: (0, 0),
            held: BTreeSet::new(),
            caps_lock: false,
            text: String::new(),
            touches: BTreeMap::new(),
        }
    }

    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn clamp(&self, x: i64, y: i64) -> (u32, u32) {
        (
            x.clamp(0, i64::from(self.width.saturating_sub(1))) as u32,
            y.clamp(0, i64::from(self.height.saturating_sub(1))) as u32,
        )
    }

    fn shift(&self) -> bool {
        self.held.contains(&KEY_LEFTSHIFT) || self.held.contains(&KEY_RIGHTSHIFT)
    }

    fn set_button(&mut self, code: u16, pressed: bool) -> bool {
        let slot = match code {
            BTN_LEFT => &mut self.buttons.left,
            BTN_RIGHT => &mut self.buttons.right,
            BTN_MIDDLE => &mut self.buttons.middle,
            _ => return false,
        };
        *slot = pressed;
        true
    }

    /// Applies one event. Out-of-range positions are clamped to the frame; unknown codes only
    /// change `held`.
    pub fn apply(&mut self, ev: InputEvent) {
        match ev {
            InputEvent::Motion { x, y } => self.pointer = self.clamp(x.into(), y.into()),
            InputEvent::RelMotion { dx, dy } => {
                let (x, y) = self.pointer;
                self.pointer =
                    self.clamp(i64::from(x) + i64::from(dx), i64::from(y) + i64::from(dy));
            }
            InputEvent::Button { code, pressed } => {
                self.set_button(code, pressed);
            }
            InputEvent::Wheel { dx, dy } => {
                self.wheel.0 = self.wheel.0.saturating_add(dx.into());
                self.wheel.1 = self.wheel.1.saturating_add(dy.into());
            }
            InputEvent::Key { code, pressed } => self.key(code, pressed),
            InputEvent::TouchDown { id, x, y } | InputEvent::TouchMove { id, x, y } => {
                let p = self.clamp(x.into(), y.into());
                if self.touches.len() < MAX_CONTACTS || self.touches.contains_key(&id) {
                    self.touches.insert(id, p);
                }
            }
            InputEvent::TouchUp { id } => {
                self.touches.remove(&id);
            }
        }
    }

    fn key(&mut self, code: u16, pressed: bool) {
        if self.set_button(code, pressed) {
            return;
        }
        if !pressed {
            self.held.remove(&code);
            return;
        }
        // A press of a key already held is auto-repeat: it types again, as on a console.
        self.held.insert(code);
        match code {
            KEY_BACKSPACE => {
                self.text.pop();
            }
            KEY_ENTER | KEY_KPENTER => self.text.clear(),
            KEY_CAPSLOCK => self.caps_lock = !self.caps_lock,
            _ => {
                if let Some(c) = key_to_char(code, self.shift(), self.caps_lock) {
                    if self.text.len() >= TEXT_CAPACITY {
                        self.text.remove(0);
                    }
                    self.text.push(c);
                }
            }
        }
    }
}

/// Key events (press/release, with Shift where needed) that type `s` on a US keyboard;
/// characters without a key are skipped. For tests and scripts that type into the guest.
pub fn events_for_text(s: &str) -> Vec<InputEvent> {
    let mut out = Vec::new();
    for (code, shift) in s.chars().filter_map(char_to_key) {
        if shift {
            out.push(InputEvent::Key {
                code: KEY_LEFTSHIFT,
                pressed: true,
            });
        }
        out.push(InputEvent::Key {
            code,
            pressed: true,
        });
        out.push(InputEvent::Key {
            code,
            pressed: false,
        });
        if shift {
            out.push(InputEvent::Key {
                code: KEY_LEFTSHIFT,
                pressed: false,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typing_backspace_enter_and_caps() {
        let mut s = InputState::new(640, 360);
        for e in events_for_text("Hello, World!") {
            s.apply(e);
        }
        assert_eq!(s.text, "Hello, World!");
        s.apply(InputEvent::Key {
            code: KEY_BACKSPACE,
            pressed: true,
        });
        s.apply(InputEvent::Key {
            code: KEY_BACKSPACE,
            pressed: true,
        }); // auto-repeat
        s.apply(InputEvent::Key {
            code: KEY_BACKSPACE,
            pressed: false,
        });
        assert_eq!(s.text, "Hello, Worl");
        s.apply(InputEvent::Key {
            code: KEY_CAPSLOCK,
            pressed: true,
        });
        s.apply(InputEvent::Key {
            code: KEY_CAPSLOCK,
            pressed: false,
        });
        for e in events_for_text("ab1") {
            s.apply(e);
        }
        assert_eq!(s.text, "Hello, WorlAB1");
        assert!(s.held.is_empty());
        s.apply(InputEvent::Key {
            code: KEY_ENTER,
            pressed: true,
        });
        assert_eq!(s.text, "");
    }

    #[test]
    fn text_is_bounded() {
        let mut s = InputState::new(640, 360);
        for _ in 0..TEXT_CAPACITY + 50 {
            s.apply(InputEvent::Key {
                code: 30,
                pressed: true,
            });
        }
        assert_eq!(s.text.len(), TEXT_CAPACITY);
    }

    #[test]
    fn pointer_buttons_wheel_and_touch() {
        let mut s = InputState::new(640, 360);
        assert_eq!(s.pointer, (320, 180));
        s.apply(InputEvent::Motion { x: 10, y: 20 });
        s.apply(InputEvent::RelMotion { dx: 5, dy: -30 });
        assert_eq!(s.pointer, (15, 0));
        s.apply(InputEvent::Motion { x: 10_000, y: -5 });
        assert_eq!(s.pointer, (639, 0));
        s.apply(InputEvent::RelMotion {
            dx: i32::MAX,
            dy: i32::MAX,
        });
        assert_eq!(s.pointer, (639, 359));
        s.apply(InputEvent::Key {
            code: BTN_LEFT,
            pressed: true,
        });
        s.apply(InputEvent::Button {
            code: BTN_RIGHT,
            pressed: true,
        });
        assert_eq!(
            s.buttons,
            Buttons {
                left: true,
                middle: false,
                right: true
            }
        );
        s.apply(InputEvent::Button {
            code: BTN_LEFT,
            pressed: false,
        });
        assert!(!s.buttons.left);
        s.apply(InputEvent::Wheel { dx: 0, dy: -3 });
        s.apply(InputEvent::Wheel { dx: 1, dy: 1 });
        assert_eq!(s.wheel, (1, -2));
        s.apply(InputEvent::TouchDown {
            id: 3,
            x: 100,
            y: 100,
        });
        s.apply(InputEvent::TouchDown {
            id: 7,
            x: 200,
            y: 50,
        });
        s.apply(InputEvent::TouchMove {
            id: 3,
            x: 110,
            y: 90,
        });
        assert_eq!(s.touches.get(&3), Some(&(110, 90)));
        s.apply(InputEvent::TouchUp { id: 3 });
        assert_eq!(s.touches.keys().copied().collect::<Vec<_>>(), vec![7]);
        for id in 0..100 {
            s.apply(InputEvent::TouchDown { id, x: 1, y: 1 });
        }
        assert_eq!(s.touches.len(), MAX_CONTACTS);
    }
}
