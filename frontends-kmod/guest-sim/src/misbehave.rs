//! A guest that breaks the rules, for the gateway's reliability tests. Each
//! mode does one bad thing on a connected device; the backend must refuse it
//! (an error status, or closing that device) and keep serving others.

use std::num::NonZeroU64;
use std::str::FromStr;
use std::time::Duration;

use pvgate_protocol::displif::{DbufCreate, DisplRequest, DisplRequestOp, DisplResponse};
use pvgate_protocol::ring::Slot;
use pvgate_protocol::sndif::{RwRange, SndRequest, SndRequestOp};

use crate::display::DisplaySession;
use crate::io::channel::RequestChannel;
use crate::sound::SoundStream;

/// The misbehaviours the guest simulator knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// DBUF_CREATE whose directory is a grant reference that does not exist.
    InvalidGref,
    /// DBUF_CREATE whose directory lists pages granted to another domain.
    ForeignGref,
    /// DBUF_CREATE with width × height × bpp beyond any buffer; sndif WRITE
    /// whose offset + length wraps around.
    Overflow,
    /// Requests with opcodes no protocol defines.
    GarbageOpcodes,
    /// `req_prod` published a million entries past the backend's consumer.
    RingAhead,
    /// Requests as fast as the ring takes them, never waiting for answers.
    Flood,
    /// Stream for a while, then exit the process without closing anything.
    Vanish,
    /// Stream for a while, then stop reacting (no more requests, events not
    /// consumed), without closing.
    Hang,
}

impl Mode {
    pub const ALL: [Mode; 8] = [
        Mode::InvalidGref,
        Mode::ForeignGref,
        Mode::Overflow,
        Mode::GarbageOpcodes,
        Mode::RingAhead,
        Mode::Flood,
        Mode::Vanish,
        Mode::Hang,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mode::InvalidGref => "invalid-gref",
            Mode::ForeignGref => "foreign-gref",
            Mode::Overflow => "overflow",
            Mode::GarbageOpcodes => "garbage-opcodes",
            Mode::RingAhead => "ring-ahead",
            Mode::Flood => "flood",
            Mode::Vanish => "vanish",
            Mode::Hang => "hang",
        }
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        Mode::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Mode::ALL.iter().map(|m| m.name()).collect();
                format!("unknown misbehaviour '{s}' (one of: {})", names.join(", "))
            })
    }
}

/// What came back from the backend.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Requests put on the ring.
    pub sent: usize,
    /// Statuses of the responses that came back (0 = accepted).
    pub statuses: Vec<i32>,
    /// True if the request channel stopped answering (timeout).
    pub silent: bool,
}

fn status_of(slot: &Slot) -> i32 {
    // `status` sits at offset 4 in both displif and sndif responses.
    i32::from_le_bytes([slot[4], slot[5], slot[6], slot[7]])
}

async fn send_and_collect(ch: &RequestChannel, slots: &[Slot], wait: Duration) -> Outcome {
    let sent = ch.send_raw(slots).await.unwrap_or(0);
    let mut statuses = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while statuses.len() < sent {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        match ch.drain_responses(left).await {
            Ok(r) if r.is_empty() => break,
            Ok(r) => statuses.extend(r.iter().map(status_of)),
            Err(_) => break,
        }
    }
    Outcome {
        silent: statuses.len() < sent,
        sent,
        statuses,
    }
}

fn dbuf_create_slot(
    id: u16,
    cookie: u64,
    (w, h, bpp): (u32, u32, u32),
    size: u32,
    gref_directory: u32,
) -> Slot {
    DisplRequest {
        id,
        op: DisplRequestOp::DbufCreate(DbufCreate {
            dbuf_cookie: NonZeroU64::new(cookie).unwrap_or(NonZeroU64::MIN),
            width: w,
            height: h,
            bpp,
            buffer_sz: size,
            be_alloc: false,
            gref_directory,
            data_ofs: 0,
        }),
    }
    .encode()
}

/// Do `mode` on a display. Vanish/Hang are process-level: see the binary.
pub async fn on_display(
    mode: Mode,
    session: &DisplaySession,
    wait: Duration,
) -> Result<Outcome, String> {
    let ch = session.request_channel(0).map_err(|e| e.to_string())?;
    match mode {
        Mode::InvalidGref => {
            // Far beyond anything granted (the sim's table has 32768 entries).
            let slot = dbuf_create_slot(
                0x7001,
                session.new_cookie(),
                (64, 64, 32),
                64 * 64 * 4,
                0x00ff_fff0,
            );
            Ok(send_and_collect(&ch, &[slot], wait).await)
        }
        Mode::ForeignGref => {
            // Grant real pages, but to a domain that is not the backend.
            let other = session.backend().wrapping_add(0x7ff0);
            let dbuf = crate::display::Dbuf::allocate(
                &session_platform(session),
                other,
                session.new_cookie(),
                (64, 64, 32),
                64 * 64 * 4,
                false,
            )
            .map_err(|e| e.to_string())?;
            let slot = dbuf_create_slot(
                0x7002,
                dbuf.cookie,
                (64, 64, 32),
                dbuf.size,
                dbuf.gref_directory,
            );
            let out = send_and_collect(&ch, &[slot], wait).await;
            drop(dbuf);
            Ok(out)
        }
        Mode::Overflow => {
            // width × height × bpp overflows u32 and u64 pitch maths; the
            // buffer size claims one page.
            let slot = dbuf_create_slot(
                0x7003,
                session.new_cookie(),
                (u32::MAX, u32::MAX, 32),
                4096,
                8,
            );
            Ok(send_and_collect(&ch, &[slot], wait).await)
        }
        Mode::GarbageOpcodes => {
            let slots: Vec<Slot> = (0..8u16)
                .map(|i| {
                    let mut s = [0xa5u8; 64];
                    s[0..2].copy_from_slice(&(0x7100 + i).to_le_bytes());
                    s[2] = 0xe0 + i as u8;
                    s
                })
                .collect();
            Ok(send_and_collect(&ch, &slots, wait).await)
        }
        Mode::RingAhead => {
            let shm = ch.shm();
            let prod = shm.0.load_u32_acquire(0).map_err(|e| e.to_string())?;
            shm.0
                .store_u32_release(0, prod.wrapping_add(1_000_000))
                .map_err(|e| e.to_string())?;
            ch.notify();
            tokio::time::sleep(wait).await;
            Ok(Outcome {
                sent: 0,
                statuses: Vec::new(),
                silent: true,
            })
        }
        Mode::Flood => {
            // Valid-looking PG_FLIPs for a framebuffer that does not exist,
            // as fast as the ring takes them.
            let mut total = Outcome::default();
            for round in 0..32u16 {
                let slots: Vec<Slot> = (0..32u16)
                    .map(|i| {
                        DisplRequest {
                            id: round.wrapping_mul(32).wrapping_add(i),
                            op: DisplRequestOp::PgFlip {
                                fb_cookie: NonZeroU64::new(0xf100d).unwrap_or(NonZeroU64::MIN),
                            },
                        }
                        .encode()
                    })
                    .collect();
                let o = send_and_collect(&ch, &slots, Duration::from_millis(200)).await;
                total.sent += o.sent;
                total.statuses.extend(o.statuses);
                total.silent |= o.silent;
            }
            Ok(total)
        }
        Mode::Vanish | Mode::Hang => Err(format!("{} is a process-level mode", mode.name())),
    }
}

/// Do `mode` on a sound stream (Overflow, GarbageOpcodes, RingAhead, Flood).
pub async fn on_sound(mode: Mode, stream: &SoundStream, wait: Duration) -> Result<Outcome, String> {
    let ch = stream.request_channel();
    match mode {
        Mode::Overflow => {
            let slot = SndRequest {
                id: 0x7201,
                op: SndRequestOp::Write(RwRange {
                    offset: u32::MAX - 16,
                    length: 4096,
                }),
            }
            .encode();
            Ok(send_and_collect(&ch, &[slot], wait).await)
        }
        Mode::GarbageOpcodes => {
            let mut s = [0x5au8; 64];
            s[0..2].copy_from_slice(&0x7202u16.to_le_bytes());
            s[2] = 0xfe;
            Ok(send_and_collect(&ch, &[s], wait).await)
        }
        Mode::RingAhead => {
            let shm = ch.shm();
            let prod = shm.0.load_u32_acquire(0).map_err(|e| e.to_string())?;
            shm.0
                .store_u32_release(0, prod.wrapping_add(1_000_000))
                .map_err(|e| e.to_string())?;
            ch.notify();
            tokio::time::sleep(wait).await;
            Ok(Outcome {
                silent: true,
                ..Outcome::default()
            })
        }
        Mode::Flood => {
            let slots: Vec<Slot> = (0..32u16)
                .map(|i| {
                    SndRequest {
                        id: 0x7300 + i,
                        op: SndRequestOp::Write(RwRange {
                            offset: 0,
                            length: 64,
                        }),
                    }
                    .encode()
                })
                .collect();
            Ok(send_and_collect(&ch, &slots, wait).await)
        }
        other => Err(format!("{} does not apply to sound", other.name())),
    }
}

fn session_platform(session: &DisplaySession) -> pvgate_platform::Platform {
    session.platform()
}

/// Decode a displif response's status, for callers checking outcomes.
pub fn displ_status(slot: &Slot) -> Option<i32> {
    DisplResponse::decode(slot).ok().map(|r| r.status)
}
