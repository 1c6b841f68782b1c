//! The xenstore wire format of Xen's `xen/io/xs_wire.h`, shared by our client
//! ([`super::XsStore`]'s supplemental connection) and the simulated xenstored.
//!
//! A message is a 16-byte header `{type, req_id, tx_id, len}` (native-endian
//! `u32`s, as `struct xsd_sockmsg`) followed by `len` payload bytes, at most
//! [`PAYLOAD_MAX`]. Payloads are nul-separated strings; errors travel as an
//! `XS_ERROR` message whose payload is the errno *name* ("ENOENT\0").

use std::fmt;

/// `XENSTORE_PAYLOAD_MAX`: larger messages are a protocol violation.
pub const PAYLOAD_MAX: usize = 4096;
/// `XENSTORE_ABS_PATH_MAX`.
pub const ABS_PATH_MAX: usize = 3072;
/// `XENSTORE_REL_PATH_MAX`.
pub const REL_PATH_MAX: usize = 2048;
/// Size of `struct xsd_sockmsg`.
pub const HEADER_LEN: usize = 16;

/// `enum xsd_sockmsg_type`. Values are the C enum's; 20 (`XS_RESTRICT`) was
/// removed from Xen and stays unused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum MsgType {
    Control = 0,
    Directory = 1,
    Read = 2,
    GetPerms = 3,
    Watch = 4,
    Unwatch = 5,
    TransactionStart = 6,
    TransactionEnd = 7,
    Introduce = 8,
    Release = 9,
    GetDomainPath = 10,
    Write = 11,
    Mkdir = 12,
    Rm = 13,
    SetPerms = 14,
    WatchEvent = 15,
    Error = 16,
    IsDomainIntroduced = 17,
    Resume = 18,
    SetTarget = 19,
    ResetWatches = 21,
    DirectoryPart = 22,
}

impl MsgType {
    pub fn from_u32(v: u32) -> Option<MsgType> {
        use MsgType::*;
        Some(match v {
            0 => Control,
            1 => Directory,
            2 => Read,
            3 => GetPerms,
            4 => Watch,
            5 => Unwatch,
            6 => TransactionStart,
            7 => TransactionEnd,
            8 => Introduce,
            9 => Release,
            10 => GetDomainPath,
            11 => Write,
            12 => Mkdir,
            13 => Rm,
            14 => SetPerms,
            15 => WatchEvent,
            16 => Error,
            17 => IsDomainIntroduced,
            18 => Resume,
            19 => SetTarget,
            21 => ResetWatches,
            22 => DirectoryPart,
            _ => return None,
        })
    }
}

/// The errno values of `xsd_errors`, which travel by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Errno {
    EINVAL,
    EACCES,
    EEXIST,
    EISDIR,
    ENOENT,
    ENOMEM,
    ENOSPC,
    EIO,
    ENOTEMPTY,
    ENOSYS,
    EROFS,
    EBUSY,
    EAGAIN,
    EISCONN,
    E2BIG,
    EPERM,
}

impl Errno {
    const ALL: [Errno; 16] = [
        Errno::EINVAL,
        Errno::EACCES,
        Errno::EEXIST,
        Errno::EISDIR,
        Errno::ENOENT,
        Errno::ENOMEM,
        Errno::ENOSPC,
        Errno::EIO,
        Errno::ENOTEMPTY,
        Errno::ENOSYS,
        Errno::EROFS,
        Errno::EBUSY,
        Errno::EAGAIN,
        Errno::EISCONN,
        Errno::E2BIG,
        Errno::EPERM,
    ];

    /// The name as it travels on the wire (without the nul).
    pub fn name(self) -> &'static str {
        match self {
            Errno::EINVAL => "EINVAL",
            Errno::EACCES => "EACCES",
            Errno::EEXIST => "EEXIST",
            Errno::EISDIR => "EISDIR",
            Errno::ENOENT => "ENOENT",
            Errno::ENOMEM => "ENOMEM",
            Errno::ENOSPC => "ENOSPC",
            Errno::EIO => "EIO",
            Errno::ENOTEMPTY => "ENOTEMPTY",
            Errno::ENOSYS => "ENOSYS",
            Errno::EROFS => "EROFS",
            Errno::EBUSY => "EBUSY",
            Errno::EAGAIN => "EAGAIN",
            Errno::EISCONN => "EISCONN",
            Errno::E2BIG => "E2BIG",
            Errno::EPERM => "EPERM",
        }
    }

    pub fn from_name(name: &str) -> Option<Errno> {
        Errno::ALL.iter().copied().find(|e| e.name() == name)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `struct xsd_sockmsg`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Raw type: a peer may send values that are no [`MsgType`].
    pub kind: u32,
    pub req_id: u32,
    pub tx_id: u32,
    pub len: u32,
}

impl Header {
    pub fn parse(bytes: &[u8; HEADER_LEN]) -> Header {
        let word =
            |i: usize| u32::from_ne_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        Header {
            kind: word(0),
            req_id: word(4),
            tx_id: word(8),
            len: word(12),
        }
    }

    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        for (i, word) in [self.kind, self.req_id, self.tx_id, self.len]
            .iter()
            .enumerate()
        {
            out[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
        }
        out
    }
}

/// Header plus payload, ready for the socket. Fails with `E2BIG` if the
/// payload exceeds [`PAYLOAD_MAX`] (xenstored answers such replies with E2BIG).
pub fn encode(kind: MsgType, req_id: u32, tx_id: u32, payload: &[u8]) -> Result<Vec<u8>, Errno> {
    if payload.len() > PAYLOAD_MAX {
        return Err(Errno::E2BIG);
    }
    let header = Header {
        kind: kind as u32,
        req_id,
        tx_id,
        len: payload.len() as u32,
    };
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&header.to_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// `s1\0s2\0...sn\0`.
pub fn join_strings<S: AsRef<str>>(strings: &[S]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in strings {
        out.extend_from_slice(s.as_ref().as_bytes());
        out.push(0);
    }
    out
}

/// Split a payload of nul-terminated UTF-8 strings. `None` if the payload is
/// not exactly a sequence of nul-terminated strings (a missing final nul is
/// a malformed request) or is not UTF-8.
pub fn split_strings(payload: &[u8]) -> Option<Vec<&str>> {
    let body = payload.strip_suffix(&[0])?;
    body.split(|&b| b == 0)
        .map(|s| std::str::from_utf8(s).ok())
        .collect()
}

/// Payload of a reply that carries one string, such as READ's value or an
/// error name: the bytes, with one trailing nul removed if present (READ
/// replies have none, most others have one).
pub fn reply_string(payload: &[u8]) -> &[u8] {
    payload.strip_suffix(&[0]).unwrap_or(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_native_endian() {
        let h = Header {
            kind: 2,
            req_id: 7,
            tx_id: 9,
            len: 4096,
        };
        let b = h.to_bytes();
        assert_eq!(&b[0..4], &2u32.to_ne_bytes());
        assert_eq!(&b[12..16], &4096u32.to_ne_bytes());
        assert_eq!(Header::parse(&b), h);
    }

    #[test]
    fn message_types_match_xs_wire_h() {
        // Spot values from the C enum, including the gap left by XS_RESTRICT.
        assert_eq!(MsgType::from_u32(16), Some(MsgType::Error));
        assert_eq!(MsgType::from_u32(20), None);
        assert_eq!(MsgType::from_u32(21), Some(MsgType::ResetWatches));
        assert_eq!(MsgType::from_u32(22), Some(MsgType::DirectoryPart));
        assert_eq!(MsgType::from_u32(23), None);
        for v in 0..23 {
            if let Some(t) = MsgType::from_u32(v) {
                assert_eq!(t as u32, v);
            }
        }
    }

    #[test]
    fn strings_split_only_when_nul_terminated() {
        assert_eq!(split_strings(b"a\0bc\0"), Some(vec!["a", "bc"]));
        assert_eq!(split_strings(b"\0"), Some(vec![""]));
        assert_eq!(split_strings(b"abc"), None);
        assert_eq!(split_strings(b""), None);
        assert_eq!(split_strings(b"\xff\0"), None);
        assert_eq!(join_strings(&["x", "y"]), b"x\0y\0");
    }

    #[test]
    fn errno_names_round_trip() {
        for e in Errno::ALL {
            assert_eq!(Errno::from_name(e.name()), Some(e));
        }
        assert_eq!(Errno::from_name("EQUOTA"), None);
    }

    #[test]
    fn oversized_payload_is_refused() {
        assert_eq!(
            encode(MsgType::Read, 0, 0, &[0; PAYLOAD_MAX + 1]),
            Err(Errno::E2BIG)
        );
        assert_eq!(
            encode(MsgType::Read, 0, 0, &[0; PAYLOAD_MAX]).map(|m| m.len()),
            Ok(HEADER_LEN + PAYLOAD_MAX)
        );
    }
}
