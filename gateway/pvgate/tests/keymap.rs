//! The web client's key map (web/static/keymap.js) against the kernel's
//! `linux/input-event-codes.h`: every entry's number is what the header gives
//! its name, and every key of a 105-key ISO keyboard is mapped.

use std::collections::{HashMap, HashSet};
use std::path::Path;

const HEADER: &str = "/usr/include/linux/input-event-codes.h";

/// `#define NAME VALUE` lines of the header, aliases (`#define KEY_HANGUEL
/// KEY_HANGEUL`) resolved.
fn header_codes() -> HashMap<String, u32> {
    let text = std::fs::read_to_string(HEADER).unwrap_or_else(|e| {
        panic!("cannot read {HEADER} ({e}); install the Debian package linux-libc-dev")
    });
    let mut raw: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("#define") {
            continue;
        }
        let (Some(name), Some(value)) = (words.next(), words.next()) else {
            continue;
        };
        raw.push((name.to_string(), value.to_string()));
    }
    let mut codes = HashMap::new();
    // Aliases refer to names defined earlier; a few passes resolve chains.
    for _ in 0..4 {
        for (name, value) in &raw {
            let parsed = if let Some(hex) = value.strip_prefix("0x") {
                u32::from_str_radix(hex, 16).ok()
            } else if let Ok(n) = value.parse::<u32>() {
                Some(n)
            } else {
                codes.get(value).copied()
            };
            if let Some(n) = parsed {
                codes.insert(name.clone(), n);
            }
        }
    }
    codes
}

fn keymap_js() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web/static/keymap.js");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The `Code: [number, "KEY_NAME"],` entries of KEYMAP.
fn keymap_entries(js: &str) -> Vec<(String, u32, String)> {
    let start = js.find("export const KEYMAP").expect("KEYMAP in keymap.js");
    let body = &js[start..];
    let end = body.find("});").expect("end of KEYMAP");
    let mut entries = Vec::new();
    for line in body[..end].lines().skip(1) {
        let line = line.trim();
        if line.is_empty() || line.starts_with("//") {
            continue;
        }
        let (code, rest) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("unexpected line in KEYMAP: {line}"));
        let rest = rest
            .trim()
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix("],"))
            .unwrap_or_else(|| panic!("entry not of the form Code: [n, \"KEY_X\"],: {line}"));
        let (num, name) = rest.split_once(',').expect("number, name");
        let num: u32 = num.trim().parse().expect("a decimal key number");
        let name = name.trim().trim_matches('"').to_string();
        entries.push((code.trim().to_string(), num, name));
    }
    entries
}

/// The codes listed in ISO_105.
fn iso_105(js: &str) -> Vec<String> {
    let start = js
        .find("export const ISO_105")
        .expect("ISO_105 in keymap.js");
    let body = &js[start..];
    let open = body.find('[').unwrap();
    let close = body.find("]);").unwrap();
    body[open + 1..close]
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[test]
fn every_keymap_entry_matches_the_kernel_header() {
    let header = header_codes();
    assert_eq!(header.get("KEY_A"), Some(&30), "header parsed");
    let js = keymap_js();
    let entries = keymap_entries(&js);
    assert!(entries.len() > 150, "only {} entries parsed", entries.len());
    let mut wrong = Vec::new();
    let mut seen = HashSet::new();
    for (code, num, name) in &entries {
        assert!(seen.insert(code.clone()), "{code} is mapped twice");
        assert!(
            name.starts_with("KEY_"),
            "{code}: {name} is not a KEY_ name"
        );
        match header.get(name) {
            Some(n) if n == num => {}
            Some(n) => wrong.push(format!("{code}: {name} is {n} in the header, not {num}")),
            None => wrong.push(format!("{code}: {name} is not in {HEADER}")),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_key_of_a_105_key_iso_keyboard_is_mapped() {
    let js = keymap_js();
    let mapped: HashSet<String> = keymap_entries(&js).into_iter().map(|e| e.0).collect();
    let iso = iso_105(&js);
    assert_eq!(iso.len(), 105, "ISO_105 lists {} keys", iso.len());
    let unique: HashSet<&String> = iso.iter().collect();
    assert_eq!(unique.len(), 105, "ISO_105 lists a key twice");
    let missing: Vec<&String> = iso.iter().filter(|c| !mapped.contains(*c)).collect();
    assert!(missing.is_empty(), "not mapped: {missing:?}");
    // The extras the client promises.
    for code in [
        "F13",
        "F24",
        "IntlRo",
        "IntlYen",
        "Lang1",
        "Lang2",
        "Lang3",
        "Lang4",
        "Lang5",
        "NumpadEqual",
        "AudioVolumeMute",
        "MediaPlayPause",
    ] {
        assert!(mapped.contains(code), "{code} not mapped");
    }
}
