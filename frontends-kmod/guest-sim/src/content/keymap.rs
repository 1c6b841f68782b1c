//! Linux `KEY_*` codes (linux/input-event-codes.h) to characters, US layout, as a guest's
//! console would type them. Only what the text line needs: printing keys and the modifiers
//! that change them.

pub const KEY_BACKSPACE: u16 = 14;
pub const KEY_TAB: u16 = 15;
pub const KEY_ENTER: u16 = 28;
pub const KEY_LEFTSHIFT: u16 = 42;
pub const KEY_RIGHTSHIFT: u16 = 54;
pub const KEY_SPACE: u16 = 57;
pub const KEY_CAPSLOCK: u16 = 58;
pub const KEY_KPENTER: u16 = 96;
pub const BTN_LEFT: u16 = 0x110;
pub const BTN_RIGHT: u16 = 0x111;
pub const BTN_MIDDLE: u16 = 0x112;

/// (code, unshifted, shifted) for every key that prints.
const PRINTING: &[(u16, char, char)] = &[
    (2, '1', '!'),
    (3, '2', '@'),
    (4, '3', '#'),
    (5, '4', '$'),
    (6, '5', '%'),
    (7, '6', '^'),
    (8, '7', '&'),
    (9, '8', '*'),
    (10, '9', '('),
    (11, '0', ')'),
    (12, '-', '_'),
    (13, '=', '+'),
    (16, 'q', 'Q'),
    (17, 'w', 'W'),
    (18, 'e', 'E'),
    (19, 'r', 'R'),
    (20, 't', 'T'),
    (21, 'y', 'Y'),
    (22, 'u', 'U'),
    (23, 'i', 'I'),
    (24, 'o', 'O'),
    (25, 'p', 'P'),
    (26, '[', '{'),
    (27, ']', '}'),
    (30, 'a', 'A'),
    (31, 's', 'S'),
    (32, 'd', 'D'),
    (33, 'f', 'F'),
    (34, 'g', 'G'),
    (35, 'h', 'H'),
    (36, 'j', 'J'),
    (37, 'k', 'K'),
    (38, 'l', 'L'),
    (39, ';', ':'),
    (40, '\'', '"'),
    (41, '`', '~'),
    (43, '\\', '|'),
    (44, 'z', 'Z'),
    (45, 'x', 'X'),
    (46, 'c', 'C'),
    (47, 'v', 'V'),
    (48, 'b', 'B'),
    (49, 'n', 'N'),
    (50, 'm', 'M'),
    (51, ',', '<'),
    (52, '.', '>'),
    (53, '/', '?'),
    (55, '*', '*'), // KEY_KPASTERISK
    (57, ' ', ' '),
    (71, '7', '7'), // keypad, as with Num Lock on
    (72, '8', '8'),
    (73, '9', '9'),
    (74, '-', '-'),
    (75, '4', '4'),
    (76, '5', '5'),
    (77, '6', '6'),
    (78, '+', '+'),
    (79, '1', '1'),
    (80, '2', '2'),
    (81, '3', '3'),
    (82, '0', '0'),
    (83, '.', '.'),
    (86, '\\', '|'), // KEY_102ND, the extra key of ISO keyboards, US-mapped
    (98, '/', '/'),  // KEY_KPSLASH
];

/// The character a key press types, given the shift and caps-lock state. Caps Lock affects
/// letters only, as on a PC console.
pub fn key_to_char(code: u16, shift: bool, caps_lock: bool) -> Option<char> {
    let &(_, plain, shifted) = PRINTING.iter().find(|(c, _, _)| *c == code)?;
    let upper = if plain.is_ascii_lowercase() {
        shift != caps_lock
    } else {
        shift
    };
    Some(if upper { shifted } else { plain })
}

/// The key that types `c` and whether it needs Shift: the inverse, for tests and for
/// scripts that "type" a string into the guest.
pub fn char_to_key(c: char) -> Option<(u16, bool)> {
    // Main block first: the keypad duplicates digits and a few symbols.
    PRINTING.iter().find_map(|&(code, plain, shifted)| {
        if plain == c {
            Some((code, false))
        } else if shifted == c && plain != shifted {
            Some((code, true))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The codes above must be the kernel's: read them from the installed header when it is
    /// there (linux-libc-dev), as the spec rather than our copy of it.
    #[test]
    fn key_codes_match_linux_header() {
        let Ok(header) = std::fs::read_to_string("/usr/include/linux/input-event-codes.h") else {
            eprintln!("linux/input-event-codes.h not installed; checked by the table test only");
            return;
        };
        let value = |name: &str| -> u16 {
            header
                .lines()
                .find_map(|l| {
                    let mut t = l.split_whitespace();
                    (t.next() == Some("#define") && t.next() == Some(name)).then(|| t.next())?
                })
                .map(|v| {
                    if let Some(hex) = v.strip_prefix("0x") {
                        u16::from_str_radix(hex, 16).unwrap()
                    } else {
                        v.parse().unwrap()
                    }
                })
                .unwrap_or_else(|| panic!("{name} not in header"))
        };
        for c in 'a'..='z' {
            let (code, shift) = char_to_key(c).unwrap();
            assert!(!shift);
            assert_eq!(
                code,
                value(&format!("KEY_{}", c.to_ascii_uppercase())),
                "{c}"
            );
        }
        for d in '0'..='9' {
            assert_eq!(char_to_key(d).unwrap().0, value(&format!("KEY_{d}")));
        }
        for (name, c) in [
            ("KEY_MINUS", '-'),
            ("KEY_EQUAL", '='),
            ("KEY_LEFTBRACE", '['),
            ("KEY_RIGHTBRACE", ']'),
            ("KEY_SEMICOLON", ';'),
            ("KEY_APOSTROPHE", '\''),
            ("KEY_GRAVE", '`'),
            ("KEY_BACKSLASH", '\\'),
            ("KEY_COMMA", ','),
            ("KEY_DOT", '.'),
            ("KEY_SLASH", '/'),
            ("KEY_SPACE", ' '),
        ] {
            assert_eq!(char_to_key(c).unwrap().0, value(name), "{name}");
        }
        for (name, code) in [
            ("KEY_BACKSPACE", KEY_BACKSPACE),
            ("KEY_TAB", KEY_TAB),
            ("KEY_ENTER", KEY_ENTER),
            ("KEY_LEFTSHIFT", KEY_LEFTSHIFT),
            ("KEY_RIGHTSHIFT", KEY_RIGHTSHIFT),
            ("KEY_CAPSLOCK", KEY_CAPSLOCK),
            ("KEY_KPENTER", KEY_KPENTER),
            ("KEY_KPASTERISK", 55),
            ("KEY_KP7", 71),
            ("KEY_KP0", 82),
            ("KEY_KPDOT", 83),
            ("KEY_102ND", 86),
            ("KEY_KPSLASH", 98),
            ("BTN_LEFT", BTN_LEFT),
            ("BTN_RIGHT", BTN_RIGHT),
            ("BTN_MIDDLE", BTN_MIDDLE),
        ] {
            assert_eq!(code, value(name), "{name}");
        }
    }

    #[test]
    fn shift_and_caps_lock() {
        assert_eq!(key_to_char(30, false, false), Some('a'));
        assert_eq!(key_to_char(30, true, false), Some('A'));
        assert_eq!(key_to_char(30, false, true), Some('A'));
        assert_eq!(key_to_char(30, true, true), Some('a'));
        assert_eq!(key_to_char(2, false, true), Some('1'));
        assert_eq!(key_to_char(2, true, false), Some('!'));
        assert_eq!(key_to_char(KEY_LEFTSHIFT, false, false), None);
        assert_eq!(key_to_char(999, false, false), None);
    }

    #[test]
    fn every_printable_ascii_char_has_a_key() {
        for b in 0x20u8..=0x7e {
            let c = b as char;
            let (code, shift) = char_to_key(c).unwrap_or_else(|| panic!("{c:?}"));
            assert_eq!(key_to_char(code, shift, false), Some(c));
        }
    }
}
