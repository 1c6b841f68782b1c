//! Binary frames of the WebSocket transport (PROTOCOL.md "Binary frames"):
//! a 12-byte big-endian header — kind, flags, reserved, µs timestamp —
//! then one access unit or Opus packet.

use super::protocol::MAX_BINARY_FRAME;

pub const HEADER_LEN: usize = 12;
/// Largest Opus packet (RFC 6716 §3.4: 1275 bytes of frame data per frame,
/// at most a few frames); anything longer is not a microphone packet.
pub const MAX_OPUS_PACKET: usize = 1500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Video = 1,
    Audio = 2,
    Microphone = 3,
}

pub const FLAG_KEYFRAME: u8 = 1;

/// A parsed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    pub flags: u8,
    pub timestamp_us: u64,
}

/// Header then payload, as one frame.
pub fn encode(kind: Kind, flags: u8, timestamp_us: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.push(kind as u8);
    out.push(flags);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&timestamp_us.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("binary frame of {0} bytes is shorter than its 12-byte header")]
    Short(usize),
    #[error("binary frame of {0} bytes is too large")]
    TooLarge(usize),
    #[error("unknown binary frame kind {0}")]
    UnknownKind(u8),
    #[error("the reserved header bytes must be 0")]
    Reserved,
}

/// Split a frame into header and payload.
pub fn decode(frame: &[u8]) -> Result<(Header, &[u8]), FrameError> {
    if frame.len() > MAX_BINARY_FRAME {
        return Err(FrameError::TooLarge(frame.len()));
    }
    let Some((head, payload)) = frame.split_first_chunk::<HEADER_LEN>() else {
        return Err(FrameError::Short(frame.len()));
    };
    let kind = match head[0] {
        1 => Kind::Video,
        2 => Kind::Audio,
        3 => Kind::Microphone,
        k => return Err(FrameError::UnknownKind(k)),
    };
    if head[2] != 0 || head[3] != 0 {
        return Err(FrameError::Reserved);
    }
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&head[4..12]);
    Ok((
        Header {
            kind,
            flags: head[1],
            timestamp_us: u64::from_be_bytes(ts),
        },
        payload,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_is_big_endian_kind_flags_reserved_timestamp() {
        let f = encode(Kind::Video, FLAG_KEYFRAME, 0x0102_0304_0506_0708, b"AU");
        assert_eq!(f, [1, 1, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, b'A', b'U'].to_vec());
        let (h, p) = decode(&f).unwrap();
        assert_eq!(
            h,
            Header {
                kind: Kind::Video,
                flags: 1,
                timestamp_us: 0x0102_0304_0506_0708
            }
        );
        assert_eq!(p, b"AU");
        let f = encode(Kind::Microphone, 0, 20_000, &[]);
        let (h, p) = decode(&f).unwrap();
        assert_eq!(
            (h.kind, h.timestamp_us, p.len()),
            (Kind::Microphone, 20_000, 0)
        );
    }

    #[test]
    fn malformed_frames_are_refused() {
        assert_eq!(decode(&[3, 0, 0]), Err(FrameError::Short(3)));
        assert_eq!(
            decode(&[9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(FrameError::UnknownKind(9))
        );
        assert_eq!(
            decode(&[3, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(FrameError::Reserved)
        );
        let big = vec![3u8; MAX_BINARY_FRAME + 1];
        assert!(matches!(decode(&big), Err(FrameError::TooLarge(_))));
    }
}
