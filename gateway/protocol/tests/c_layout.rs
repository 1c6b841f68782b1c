//! Layout test against Xen's C headers.
//!
//! The test reads the installed headers (`/usr/include/xen/io/{ring,displif,
//! sndif,kbdif,xenbus}.h`), finds every struct and union (including the ones
//! `DEFINE_RING_TYPES` declares), every member, every object-like macro with
//! a value and every enumerator, and writes a C program that prints the
//! size/offset/value of each. It compiles that with gcc, runs it, and
//! compares the output both ways with `pvgate_protocol::abi::layout_entries()`:
//! an entry missing on either side or a different value fails.
//!
//! It also prints, for chosen indices (including ones near `u32::MAX`), where
//! the headers' own macros put a ring slot (`RING_GET_REQUEST`,
//! `XENDISPL_IN_RING_REF`, …), what `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`
//! decides and what `RING_REQUEST_PROD_OVERFLOW` says, and compares that
//! with the crate's ring code.

use pvgate_protocol::abi::{layout_entries, LayoutValue};
use pvgate_protocol::evtpage::EventRingLayout;
use pvgate_protocol::ring::{need_notify, request_prod_overflow, RingLayout};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const INSTALL_HINT: &str = "apt-get install libxen-dev gcc";
const INCLUDE: &str = "/usr/include/xen";

fn header(name: &str) -> String {
    let path = Path::new(INCLUDE).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the Xen header {} ({e}); the layout test needs it: {INSTALL_HINT}",
            path.display()
        )
    })
}

// ---------------------------------------------------------------- parsing

fn join_continuations(src: &str) -> String {
    src.replace("\\\r\n", " ").replace("\\\n", " ")
}

fn strip_comments(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut rest = src;
    loop {
        let block = rest.find("/*");
        let line = rest.find("//");
        match (block, line) {
            (Some(b), l) if l.is_none_or(|l| b < l) => {
                out.push_str(&rest[..b]);
                out.push(' ');
                rest = match rest[b + 2..].find("*/") {
                    Some(e) => &rest[b + 2 + e + 2..],
                    None => "",
                };
            }
            (_, Some(l)) => {
                out.push_str(&rest[..l]);
                rest = match rest[l..].find('\n') {
                    Some(e) => &rest[l + e..],
                    None => "",
                };
            }
            _ => {
                out.push_str(rest);
                return out;
            }
        }
    }
}

fn clean(src: &str) -> String {
    strip_comments(&join_continuations(src))
}

/// Object-like `#define NAME value` with a non-empty value.
fn defines(src: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in clean(src).lines() {
        let t = line.trim_start();
        let Some(rest) = t.strip_prefix('#') else {
            continue;
        };
        let Some(rest) = rest.trim_start().strip_prefix("define") else {
            continue;
        };
        let rest = rest.trim_start();
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let after = &rest[name.len()..];
        if name.is_empty() || after.starts_with('(') {
            continue; // function-like
        }
        let value = after.trim();
        if value.is_empty() {
            continue; // include guard or flag
        }
        out.push((name, value.to_string()));
    }
    out
}

fn tokens(src: &str) -> Vec<String> {
    let no_pp: String = src
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in no_pp.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            cur.push(c);
        } else {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            if !c.is_whitespace() {
                out.push(c.to_string());
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[derive(Debug)]
struct Member {
    name: String,
    children: Vec<Member>,
}

/// Index of the `}` matching the `{` at `open`.
fn matching_brace(t: &[String], open: usize) -> usize {
    let mut depth = 0;
    for (i, tok) in t.iter().enumerate().skip(open) {
        match tok.as_str() {
            "{" => depth += 1,
            "}" => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced braces in a Xen header");
}

fn declarator_names(t: &[String]) -> Vec<String> {
    // Split at top-level commas; each declarator's name is its last
    // identifier before any '['.
    let mut names = Vec::new();
    let mut depth = 0;
    let mut last_ident: Option<String> = None;
    let mut in_brackets_done = false;
    for tok in t {
        match tok.as_str() {
            "[" => {
                depth += 1;
                in_brackets_done = true;
            }
            "]" => depth -= 1,
            "," if depth == 0 => {
                names.extend(last_ident.take());
                in_brackets_done = false;
            }
            s if depth == 0
                && !in_brackets_done
                && (s
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')) =>
            {
                last_ident = Some(s.to_string());
            }
            _ => {}
        }
    }
    names.extend(last_ident);
    names
}

fn parse_members(t: &[String]) -> Vec<Member> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < t.len() {
        // One member runs to the next top-level ';'.
        let start = i;
        let mut depth = 0;
        while i < t.len() {
            match t[i].as_str() {
                "{" => depth += 1,
                "}" => depth -= 1,
                ";" if depth == 0 => break,
                _ => {}
            }
            i += 1;
        }
        let m = &t[start..i];
        i += 1;
        if m.is_empty() {
            continue;
        }
        if let Some(open) = m.iter().position(|x| x == "{") {
            // Anonymous aggregate member: `struct|union { ... } name;`.
            let close = open + matching_brace(&m[open..], 0);
            for name in declarator_names(&m[close + 1..]) {
                out.push(Member {
                    name,
                    children: parse_members(&m[open + 1..close]),
                });
            }
        } else {
            // `type name[, name2]`: each declarator's last identifier (before
            // any `[`) is the member name.
            for name in declarator_names(m) {
                out.push(Member {
                    name,
                    children: Vec::new(),
                });
            }
        }
    }
    out
}

/// `(kind name, members)` for every top-level `struct|union NAME { ... };`.
fn aggregates(src: &str) -> Vec<(String, Vec<Member>)> {
    let t = tokens(&clean(src));
    let mut out = Vec::new();
    let mut i = 0;
    while i + 2 < t.len() {
        if (t[i] == "struct" || t[i] == "union") && t[i + 2] == "{" {
            let close = matching_brace(&t, i + 2);
            out.push((
                format!("{} {}", t[i], t[i + 1]),
                parse_members(&t[i + 3..close]),
            ));
            i = close + 1;
        } else {
            i += 1;
        }
    }
    out
}

fn member_paths(members: &[Member], prefix: &str, out: &mut Vec<String>) {
    for m in members {
        let path = format!("{prefix}{}", m.name);
        out.push(path.clone());
        member_paths(&m.children, &format!("{path}."), out);
    }
}

/// `enum NAME { A = 1, ... }` enumerators.
fn enumerators(src: &str) -> Vec<String> {
    let t = tokens(&clean(src));
    let mut out = Vec::new();
    let mut i = 0;
    while i + 2 < t.len() {
        if t[i] == "enum" && t[i + 2] == "{" {
            let close = matching_brace(&t, i + 2);
            let mut expect_name = true;
            for tok in &t[i + 3..close] {
                if expect_name
                    && tok
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                {
                    out.push(tok.clone());
                    expect_name = false;
                } else if tok == "," {
                    expect_name = true;
                }
            }
            i = close + 1;
        } else {
            i += 1;
        }
    }
    out
}

/// The aggregates `DEFINE_RING_TYPES(name, req, rsp)` declares, for each
/// invocation in `protocol_src`, by expanding ring.h's macro body.
fn ring_type_aggregates(
    ring_h: &str,
    protocol_src: &str,
) -> (Vec<String>, Vec<(String, Vec<Member>)>) {
    let ring = clean(ring_h);
    let def = ring
        .lines()
        .find(|l| l.trim_start().starts_with("#define DEFINE_RING_TYPES("))
        .expect("ring.h has no DEFINE_RING_TYPES");
    let body = &def[def.find(')').expect("macro parameter list") + 1..];
    let mut names = Vec::new();
    let mut out = Vec::new();
    let src = clean(protocol_src);
    for line in src.lines() {
        let l = line.trim();
        let Some(args) = l.strip_prefix("DEFINE_RING_TYPES(") else {
            continue;
        };
        let args = args.trim_end_matches(';').trim_end_matches(')');
        let parts: Vec<&str> = args.split(',').map(str::trim).collect();
        let [name, req, rsp] = parts[..] else {
            panic!("unexpected DEFINE_RING_TYPES({args})")
        };
        let expanded = body
            .replace("__name##", name)
            .replace("__req_t", req)
            .replace("__rsp_t", rsp);
        names.push(name.to_string());
        out.extend(aggregates(&expanded));
    }
    (names, out)
}

// ---------------------------------------------------------------- C program

const WRAP_INDICES: [u32; 10] = [
    0,
    1,
    31,
    32,
    62,
    63,
    64,
    0x7fff_ffff,
    0xffff_fffe,
    0xffff_ffff,
];

struct Probe {
    name: String,
    c_expr: String,
    rust: i128,
}

fn probes(ring_names: &[String]) -> Vec<Probe> {
    let mut out = Vec::new();
    for ring in ring_names {
        let layout = match ring.as_str() {
            "xen_displif" => RingLayout::DISPLIF,
            "xen_sndif" => RingLayout::SNDIF,
            other => panic!("ring {other} has no Rust layout"),
        };
        for idx in WRAP_INDICES {
            out.push(Probe {
                name: format!("probe RING_GET_REQUEST {ring} {idx}"),
                c_expr: format!(
                    "({{ struct {ring}_back_ring br; struct {ring}_sring *s = (struct {ring}_sring *)page; \
                     BACK_RING_INIT(&br, s, 4096); (long long)((char *)RING_GET_REQUEST(&br, {idx}u) - (char *)page); }})"
                ),
                rust: layout.slot_offset(idx) as i128,
            });
        }
    }
    let evt_rings: [(&str, &str, EventRingLayout<64>); 2] = [
        (
            "XENDISPL_IN_RING_REF",
            "XENDISPL_IN_RING_REF",
            EventRingLayout::DISPLIF,
        ),
        (
            "XENSND_IN_RING_REF",
            "XENSND_IN_RING_REF",
            EventRingLayout::SNDIF,
        ),
    ];
    for (name, mac, layout) in evt_rings {
        for idx in WRAP_INDICES {
            out.push(Probe {
                name: format!("probe {name} {idx}"),
                c_expr: format!("(long long)((char *)&{mac}(page, {idx}u) - (char *)page)"),
                rust: layout.slot_offset(idx) as i128,
            });
        }
    }
    let kbd_rings: [(&str, EventRingLayout<40>); 2] = [
        ("XENKBD_IN_RING_REF", EventRingLayout::KBDIF_IN),
        ("XENKBD_OUT_RING_REF", EventRingLayout::KBDIF_OUT),
    ];
    for (mac, layout) in kbd_rings {
        for idx in WRAP_INDICES {
            out.push(Probe {
                name: format!("probe {mac} {idx}"),
                c_expr: format!("(long long)((char *)&{mac}(page, {idx}u) - (char *)page)"),
                rust: layout.slot_offset(idx) as i128,
            });
        }
    }
    // (old rsp_prod, new rsp_prod_pvt, rsp_event) triples around the wrap.
    let notify_cases: [(u32, u32, u32); 8] = [
        (0, 1, 1),
        (0, 1, 2),
        (5, 9, 7),
        (5, 9, 10),
        (5, 9, 5),
        (0xffff_fffe, 2, 0xffff_ffff),
        (0xffff_fffe, 2, 3),
        (0xffff_ffff, 0, 0),
    ];
    for (old, new, event) in notify_cases {
        out.push(Probe {
            name: format!("probe RING_PUSH_RESPONSES_AND_CHECK_NOTIFY {old} {new} {event}"),
            c_expr: format!(
                "({{ struct xen_displif_back_ring br; struct xen_displif_sring *s = (struct xen_displif_sring *)page; \
                 BACK_RING_INIT(&br, s, 4096); s->rsp_prod = {old}u; br.rsp_prod_pvt = {new}u; s->rsp_event = {event}u; \
                 int notify; RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(&br, notify); (long long)notify; }})"
            ),
            rust: i128::from(need_notify(old, new, event)),
        });
    }
    let overflow_cases: [(u32, u32); 6] = [
        (0, 32),
        (0, 33),
        (0xffff_fff0, 0x10),
        (0xffff_fff0, 0x11),
        (7, 7),
        (7, 6),
    ];
    for (rsp_prod_pvt, prod) in overflow_cases {
        out.push(Probe {
            name: format!("probe RING_REQUEST_PROD_OVERFLOW {rsp_prod_pvt} {prod}"),
            c_expr: format!(
                "({{ struct xen_displif_back_ring br; struct xen_displif_sring *s = (struct xen_displif_sring *)page; \
                 BACK_RING_INIT(&br, s, 4096); br.rsp_prod_pvt = {rsp_prod_pvt}u; (long long)RING_REQUEST_PROD_OVERFLOW(&br, {prod}u); }})"
            ),
            rust: i128::from(request_prod_overflow(prod, rsp_prod_pvt, RingLayout::DISPLIF.nr_ents())),
        });
    }
    out
}

fn c_program(
    types: &[(String, Vec<Member>)],
    defs: &[(String, String)],
    enums: &[String],
    ring_names: &[String],
    probes: &[Probe],
) -> String {
    let mut c = String::from(
        "#include <stdint.h>\n#include <stddef.h>\n#include <stdio.h>\n#include <string.h>\n\
         /* ring.h's push macros use the OS barriers; give them gcc's. */\n\
         #define mb() __sync_synchronize()\n#define rmb() __sync_synchronize()\n#define wmb() __sync_synchronize()\n\
         #include <xen/grant_table.h>\n#include <xen/io/ring.h>\n#include <xen/io/displif.h>\n\
         #include <xen/io/sndif.h>\n#include <xen/io/kbdif.h>\n#include <xen/io/xenbus.h>\n\
         static unsigned char page[4096] __attribute__((aligned(4096)));\n\
         #define N(name, v) printf(\"%s\\tN\\t%lld\\n\", name, (long long)(v))\n\
         #define S(name, v) printf(\"%s\\tS\\t%s\\n\", name, v)\n\
         int main(void) {\n",
    );
    for (ty, members) in types {
        c.push_str(&format!("N(\"sizeof {ty}\", sizeof({ty}));\n"));
        let mut paths = Vec::new();
        member_paths(members, "", &mut paths);
        for p in paths {
            c.push_str(&format!("N(\"offsetof {ty} {p}\", offsetof({ty}, {p}));\n"));
            c.push_str(&format!(
                "N(\"sizeof {ty} {p}\", sizeof((({ty} *)0)->{p}));\n"
            ));
        }
    }
    for (name, value) in defs {
        if value.starts_with('"') {
            c.push_str(&format!("S(\"define {name}\", {name});\n"));
        } else {
            c.push_str(&format!("N(\"define {name}\", {name});\n"));
        }
    }
    for e in enums {
        c.push_str(&format!("N(\"enum {e}\", {e});\n"));
    }
    for r in ring_names {
        c.push_str(&format!(
            "N(\"ring_size {r}\", __CONST_RING_SIZE({r}, 4096));\n"
        ));
    }
    for p in probes {
        c.push_str(&format!("N(\"{}\", {});\n", p.name, p.c_expr));
    }
    c.push_str("memset(page, 0, sizeof page);\nreturn 0;\n}\n");
    c
}

fn work_dir() -> PathBuf {
    let base = option_env!("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("pvgate-c-layout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a directory for the C layout program");
    dir
}

fn run_c(program: &str) -> BTreeMap<String, LayoutValue> {
    let dir = work_dir();
    let src = dir.join("layout.c");
    let exe = dir.join("layout");
    std::fs::write(&src, program).expect("write the C layout program");
    let out = Command::new("gcc")
        .args([
            "-std=gnu11",
            "-Wall",
            "-Werror",
            "-Wno-unused-variable",
            "-o",
        ])
        .arg(&exe)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run gcc ({e}); the layout test needs it: {INSTALL_HINT}")
        });
    assert!(
        out.status.success(),
        "gcc failed to compile the layout program {} (are the Xen headers installed? {INSTALL_HINT}):\n{}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(&exe)
        .output()
        .expect("run the C layout program");
    assert!(
        run.status.success(),
        "the C layout program failed: {:?}",
        run.status
    );
    let text = String::from_utf8(run.stdout).expect("C layout output is UTF-8");
    let _ = std::fs::remove_dir_all(&dir);
    let mut map = BTreeMap::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, '\t');
        let (Some(name), Some(kind), Some(value)) = (parts.next(), parts.next(), parts.next())
        else {
            panic!("malformed C layout line {line:?}");
        };
        let v = match kind {
            "N" => LayoutValue::Num(
                value
                    .parse()
                    .unwrap_or_else(|_| panic!("bad number in {line:?}")),
            ),
            _ => LayoutValue::Str(value.to_string()),
        };
        assert!(
            map.insert(name.to_string(), v).is_none(),
            "C printed {name} twice"
        );
    }
    map
}

#[test]
fn rust_layout_matches_c_headers() {
    let ring_h = header("io/ring.h");
    let displif_h = header("io/displif.h");
    let sndif_h = header("io/sndif.h");
    let kbdif_h = header("io/kbdif.h");
    let xenbus_h = header("io/xenbus.h");
    let _ = header("grant_table.h");

    let mut types = Vec::new();
    let mut ring_names = Vec::new();
    for src in [&displif_h, &sndif_h, &kbdif_h] {
        types.extend(aggregates(src));
        let (names, ring_types) = ring_type_aggregates(&ring_h, src);
        ring_names.extend(names);
        types.extend(ring_types);
    }
    let mut defs = Vec::new();
    for src in [&ring_h, &displif_h, &sndif_h, &kbdif_h, &xenbus_h] {
        defs.extend(defines(src));
    }
    let enums = enumerators(&xenbus_h);

    // The parser must have found what we know is there, or the comparison
    // below would be vacuous.
    assert!(types
        .iter()
        .any(|(t, _)| t == "struct xendispl_dbuf_create_req"));
    assert!(types.iter().any(|(t, _)| t == "struct xen_sndif_sring"));
    assert!(types.iter().any(|(t, _)| t == "union xenkbd_in_event"));
    assert!(defs.iter().any(|(d, _)| d == "XENSND_PCM_FORMAT_GSM"));
    assert_eq!(ring_names, ["xen_displif", "xen_sndif"]);
    assert_eq!(enums.len(), 9);

    let probes = probes(&ring_names);
    let c = run_c(&c_program(&types, &defs, &enums, &ring_names, &probes));

    let mut rust: BTreeMap<String, LayoutValue> = BTreeMap::new();
    for (name, value) in layout_entries() {
        assert!(
            rust.insert(name.clone(), value).is_none(),
            "Rust reports {name} twice"
        );
    }
    for p in &probes {
        rust.insert(p.name.clone(), LayoutValue::Num(p.rust));
    }

    let mut problems = Vec::new();
    for (name, cv) in &c {
        match rust.get(name) {
            None => problems.push(format!("missing in Rust: {name} (C: {cv})")),
            Some(rv) if rv != cv => problems.push(format!("differs: {name}: C {cv}, Rust {rv}")),
            Some(_) => {}
        }
    }
    for name in rust.keys() {
        if !c.contains_key(name) {
            problems.push(format!("missing in C headers: {name}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{} layout mismatches between the Rust mirrors and the C headers:\n{}",
        problems.len(),
        problems.join("\n")
    );
    eprintln!("compared {} entries with the C headers", c.len());
    // Sanity: the comparison covered a meaningful number of entries.
    assert!(c.len() > 500, "only {} entries compared", c.len());
}
