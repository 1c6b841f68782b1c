//! displif, sndif and kbdif codecs: validation errors and round trips.

use proptest::prelude::*;
use pvgate_protocol::displif::*;
use pvgate_protocol::kbdif::*;
use pvgate_protocol::sndif::*;
use std::num::NonZeroU64;

fn nz(v: u64) -> NonZeroU64 {
    NonZeroU64::new(v).unwrap()
}

// ------------------------------------------------------------ displif

fn dbuf_create() -> DbufCreate {
    DbufCreate {
        dbuf_cookie: nz(0x1122_3344_5566_7788),
        width: 1920,
        height: 1080,
        bpp: 32,
        buffer_sz: 1920 * 4 * 1080,
        be_alloc: false,
        gref_directory: 77,
        data_ofs: 0,
    }
}

fn req(op: DisplRequestOp) -> DisplRequest {
    DisplRequest { id: 9, op }
}

#[test]
fn dbuf_create_bytes_follow_the_header_layout() {
    let b = req(DisplRequestOp::DbufCreate(DbufCreate {
        be_alloc: true,
        data_ofs: 16,
        buffer_sz: 1920 * 4 * 1080 + 16,
        ..dbuf_create()
    }))
    .encode();
    assert_eq!(&b[0..2], &9u16.to_le_bytes());
    assert_eq!(b[2], 0x10);
    assert_eq!(
        &b[8..16],
        &0x1122_3344_5566_7788u64.to_le_bytes(),
        "dbuf_cookie at octet 8"
    );
    assert_eq!(&b[16..20], &1920u32.to_le_bytes(), "width");
    assert_eq!(&b[20..24], &1080u32.to_le_bytes(), "height");
    assert_eq!(&b[24..28], &32u32.to_le_bytes(), "bpp");
    assert_eq!(&b[32..36], &1u32.to_le_bytes(), "flags: REQ_ALLOC");
    assert_eq!(&b[36..40], &77u32.to_le_bytes(), "gref_directory");
    assert_eq!(&b[40..44], &16u32.to_le_bytes(), "data_ofs");
    assert!(b[44..].iter().all(|x| *x == 0));
}

fn set(b: &mut [u8; 64], off: usize, bytes: &[u8]) {
    b[off..off + bytes.len()].copy_from_slice(bytes);
}

#[test]
fn displif_decode_rejects_what_the_protocol_forbids() {
    let good = req(DisplRequestOp::DbufCreate(dbuf_create())).encode();

    let mut b = good;
    b[2] = 0x0f;
    assert_eq!(
        DisplRequest::decode(&b),
        Err(DisplDecodeError::UnknownOperation(0x0f))
    );

    let mut b = good;
    set(&mut b, 8, &0u64.to_le_bytes());
    assert_eq!(
        DisplRequest::decode(&b),
        Err(DisplDecodeError::ZeroCookie {
            op: "DBUF_CREATE",
            field: "dbuf_cookie"
        })
    );

    let mut b = good;
    set(&mut b, 16, &0u32.to_le_bytes());
    assert_eq!(
        DisplRequest::decode(&b),
        Err(DisplDecodeError::ZeroSize {
            op: "DBUF_CREATE",
            field: "width"
        })
    );

    let mut b = good;
    set(&mut b, 36, &0u32.to_le_bytes());
    assert_eq!(
        DisplRequest::decode(&b),
        Err(DisplDecodeError::ZeroGrantRef {
            op: "DBUF_CREATE",
            field: "gref_directory"
        })
    );

    // width * bpp overflows u32 pitch.
    let mut b = good;
    set(&mut b, 16, &u32::MAX.to_le_bytes());
    assert_eq!(
        DisplRequest::decode(&b),
        Err(DisplDecodeError::Overflow {
            op: "DBUF_CREATE",
            what: "width * height * bpp"
        })
    );

    // One byte short.
    let mut b = good;
    set(&mut b, 28, &(1920u32 * 4 * 1080 - 1).to_le_bytes());
    assert!(matches!(
        DisplRequest::decode(&b),
        Err(DisplDecodeError::BufferTooSmall {
            needed: 8_294_400,
            ..
        })
    ));

    // data_ofs pushes the data past the buffer.
    let mut b = good;
    set(&mut b, 40, &1u32.to_le_bytes());
    assert!(matches!(
        DisplRequest::decode(&b),
        Err(DisplDecodeError::BufferTooSmall { data_ofs: 1, .. })
    ));

    let fb = req(DisplRequestOp::FbAttach(FbAttach {
        dbuf_cookie: nz(1),
        fb_cookie: nz(2),
        width: 64,
        height: 64,
        pixel_format: PixelFormat::Xrgb8888,
    }))
    .encode();
    let mut b = fb;
    set(&mut b, 16, &0u64.to_le_bytes());
    assert_eq!(
        DisplRequest::decode(&b),
        Err(DisplDecodeError::ZeroCookie {
            op: "FB_ATTACH",
            field: "fb_cookie"
        })
    );
    let mut b = fb;
    set(&mut b, 32, &0x3231_5659u32.to_le_bytes()); // 'YV12' is not offered
    assert_eq!(
        DisplRequest::decode(&b),
        Err(DisplDecodeError::UnknownPixelFormat(0x3231_5659))
    );

    for op in [0x11u8, 0x13, 0x15] {
        let mut b = [0u8; 64];
        b[2] = op;
        assert!(
            matches!(
                DisplRequest::decode(&b),
                Err(DisplDecodeError::ZeroCookie { .. })
            ),
            "op {op:#x}"
        );
    }

    // SET_CONFIG: all zeros is a reset; a zero cookie with a mode is not.
    let mut b = [0u8; 64];
    b[2] = 0x14;
    assert_eq!(
        DisplRequest::decode(&b).unwrap().op,
        DisplRequestOp::SetConfig(SetConfig::Reset)
    );
    // set_config: fb_cookie 8, x 16, y 20, width 24, height 28, bpp 32.
    set(&mut b, 24, &800u32.to_le_bytes());
    assert!(matches!(
        DisplRequest::decode(&b),
        Err(DisplDecodeError::PartialReset { width: 800, .. })
    ));
    set(&mut b, 8, &5u64.to_le_bytes());
    set(&mut b, 20, &u32::MAX.to_le_bytes());
    set(&mut b, 28, &600u32.to_le_bytes());
    set(&mut b, 32, &32u32.to_le_bytes());
    assert_eq!(
        DisplRequest::decode(&b),
        Err(DisplDecodeError::Overflow {
            op: "SET_CONFIG",
            what: "y + height"
        })
    );

    let mut b = [0u8; 64];
    b[2] = 0x16;
    set(&mut b, 8, &4096u32.to_le_bytes());
    set(&mut b, 12, &5u32.to_le_bytes());
    assert_eq!(
        DisplRequest::decode(&b),
        Err(DisplDecodeError::EdidBufferTooSmall(4096))
    );
}

#[test]
fn displif_reserved_bytes_are_ignored() {
    let r = req(DisplRequestOp::DbufCreate(dbuf_create()));
    let mut b = r.encode();
    b[3..8].copy_from_slice(&[0xff; 5]);
    b[44..64].copy_from_slice(&[0xee; 20]);
    set(&mut b, 32, &0xffff_fffeu32.to_le_bytes()); // unused flag bits
    assert_eq!(DisplRequest::decode(&b), Ok(r));
}

#[test]
fn set_config_must_fit_the_connector() {
    let c = SetConfig::Set {
        fb_cookie: nz(1),
        x: 0,
        y: 0,
        width: 1920,
        height: 1080,
        bpp: 32,
    };
    assert!(c.fits(1920, 1080));
    assert!(!c.fits(1919, 1080));
    let c = SetConfig::Set {
        fb_cookie: nz(1),
        x: u32::MAX,
        y: 0,
        width: 1,
        height: 1,
        bpp: 32,
    };
    assert!(!c.fits(u32::MAX, 10));
}

#[test]
fn pixel_formats_match_drm_fourcc_and_bpp() {
    // DRM_FORMAT_* values from drm_fourcc.h, written out as fourcc strings.
    let expect = [
        (PixelFormat::Rgb565, *b"RG16", 16),
        (PixelFormat::Rgb888, *b"RG24", 24),
        (PixelFormat::Xrgb8888, *b"XR24", 32),
        (PixelFormat::Argb8888, *b"AR24", 32),
        (PixelFormat::Xrgb4444, *b"XR12", 16),
        (PixelFormat::Argb4444, *b"AR12", 16),
        (PixelFormat::Xrgb1555, *b"XR15", 16),
        (PixelFormat::Argb1555, *b"AR15", 16),
        (PixelFormat::Yuyv, *b"YUYV", 16),
    ];
    assert_eq!(PixelFormat::ALL.len(), expect.len());
    for (f, code, bpp) in expect {
        assert_eq!(f.fourcc(), u32::from_le_bytes(code), "{}", f.name());
        assert_eq!(f.bpp(), bpp, "{}", f.name());
        assert_eq!(PixelFormat::from_fourcc(f.fourcc()), Some(f));
    }
    assert_eq!(PixelFormat::Xrgb8888.fourcc(), 0x3432_5258);
}

#[test]
fn dumb_pitch_rounds_up_to_whole_bytes() {
    assert_eq!(dumb_pitch(1920, 32), Some(7680));
    assert_eq!(dumb_pitch(1366, 24), Some(4098));
    assert_eq!(dumb_pitch(3, 1), Some(1));
    assert_eq!(dumb_pitch(9, 1), Some(2));
    assert_eq!(dumb_pitch(u32::MAX, 64), None);
    assert_eq!(dumb_size(1920, 1080, 32), Some(8_294_400));
}

#[test]
fn displif_responses_and_events() {
    let r = DisplResponse::for_request(&req(DisplRequestOp::PgFlip { fb_cookie: nz(3) }), -22);
    let b = r.encode();
    assert_eq!(b[2], 0x15);
    assert_eq!(&b[4..8], &(-22i32).to_le_bytes());
    assert_eq!(DisplResponse::decode(&b), Ok(r));
    let e = DisplEvent {
        id: 7,
        kind: DisplEventKind::PgFlip {
            fb_cookie: nz(0xabc),
        },
    };
    let b = e.encode();
    assert_eq!((b[2], &b[8..16]), (0u8, &0xabcu64.to_le_bytes()[..]));
    assert_eq!(DisplEvent::decode(&b), Ok(e));
    let mut b2 = b;
    b2[2] = 1;
    assert_eq!(
        DisplEvent::decode(&b2),
        Err(DisplDecodeError::UnknownEventType(1))
    );
}

fn nz64() -> impl Strategy<Value = NonZeroU64> {
    (1..=u64::MAX).prop_map(nz)
}

fn displ_request_op() -> impl Strategy<Value = DisplRequestOp> {
    let create = (
        nz64(),
        1u32..8192,
        1u32..8192,
        prop::sample::select(vec![8u32, 16, 24, 32]),
        0u32..8192,
        0u32..65536,
        any::<bool>(),
        1u32..,
    )
        .prop_map(
            |(dbuf_cookie, width, height, bpp, data_ofs, extra, be_alloc, gref_directory)| {
                let size = dumb_size(width, height, bpp).unwrap() as u32;
                DisplRequestOp::DbufCreate(DbufCreate {
                    dbuf_cookie,
                    width,
                    height,
                    bpp,
                    buffer_sz: size + data_ofs + extra,
                    be_alloc,
                    gref_directory,
                    data_ofs,
                })
            },
        );
    let attach = (
        nz64(),
        nz64(),
        1u32..16384,
        1u32..16384,
        prop::sample::select(PixelFormat::ALL.to_vec()),
    )
        .prop_map(|(dbuf_cookie, fb_cookie, width, height, pixel_format)| {
            DisplRequestOp::FbAttach(FbAttach {
                dbuf_cookie,
                fb_cookie,
                width,
                height,
                pixel_format,
            })
        });
    let config = (
        nz64(),
        0u32..10000,
        0u32..10000,
        1u32..10000,
        1u32..10000,
        1u32..64,
    )
        .prop_map(|(fb_cookie, x, y, width, height, bpp)| {
            DisplRequestOp::SetConfig(SetConfig::Set {
                fb_cookie,
                x,
                y,
                width,
                height,
                bpp,
            })
        });
    prop_oneof![
        create,
        nz64().prop_map(|dbuf_cookie| DisplRequestOp::DbufDestroy { dbuf_cookie }),
        attach,
        nz64().prop_map(|fb_cookie| DisplRequestOp::FbDetach { fb_cookie }),
        config,
        Just(DisplRequestOp::SetConfig(SetConfig::Reset)),
        nz64().prop_map(|fb_cookie| DisplRequestOp::PgFlip { fb_cookie }),
        (32768u32.., 1u32..).prop_map(|(buffer_sz, gref_directory)| DisplRequestOp::GetEdid(
            GetEdid {
                buffer_sz,
                gref_directory
            }
        )),
    ]
}

// ------------------------------------------------------------ sndif

fn snd(op: SndRequestOp) -> SndRequest {
    SndRequest { id: 0x1234, op }
}

fn open() -> Open {
    Open {
        pcm_rate: 48000,
        pcm_format: PcmFormat::S16Le,
        pcm_channels: 2,
        buffer_sz: 65536,
        gref_directory: 12,
        period_sz: 4096,
    }
}

#[test]
fn sndif_open_bytes_follow_the_header_layout() {
    let b = snd(SndRequestOp::Open(open())).encode();
    assert_eq!(b[2], 0);
    assert_eq!(&b[8..12], &48000u32.to_le_bytes(), "pcm_rate at octet 8");
    assert_eq!((b[12], b[13]), (2, 2), "pcm_format S16_LE, 2 channels");
    assert_eq!(&b[16..20], &65536u32.to_le_bytes(), "buffer_sz");
    assert_eq!(&b[20..24], &12u32.to_le_bytes(), "gref_directory");
    assert_eq!(&b[24..28], &4096u32.to_le_bytes(), "period_sz");
}

#[test]
fn sndif_decode_rejects_what_the_protocol_forbids() {
    let good = snd(SndRequestOp::Open(open())).encode();
    let mut b = good;
    b[2] = 10;
    assert_eq!(
        SndRequest::decode(&b),
        Err(SndDecodeError::UnknownOperation(10))
    );
    let mut b = good;
    b[12] = 25;
    assert_eq!(
        SndRequest::decode(&b),
        Err(SndDecodeError::UnknownFormat(25))
    );
    let mut b = good;
    b[13] = 0;
    assert_eq!(
        SndRequest::decode(&b),
        Err(SndDecodeError::Zero {
            op: "OPEN",
            field: "pcm_channels"
        })
    );
    let mut b = good;
    set(&mut b, 8, &0u32.to_le_bytes());
    assert_eq!(
        SndRequest::decode(&b),
        Err(SndDecodeError::Zero {
            op: "OPEN",
            field: "pcm_rate"
        })
    );
    let mut b = good;
    set(&mut b, 20, &0u32.to_le_bytes());
    assert_eq!(
        SndRequest::decode(&b),
        Err(SndDecodeError::ZeroGrantRef {
            op: "OPEN",
            field: "gref_directory"
        })
    );
    let mut b = good;
    set(&mut b, 24, &65537u32.to_le_bytes());
    assert_eq!(
        SndRequest::decode(&b),
        Err(SndDecodeError::PeriodLargerThanBuffer {
            period_sz: 65537,
            buffer_sz: 65536
        })
    );

    let w = snd(SndRequestOp::Write(RwRange {
        offset: 0,
        length: 4096,
    }))
    .encode();
    let mut b = w;
    set(&mut b, 8, &u32::MAX.to_le_bytes());
    assert_eq!(
        SndRequest::decode(&b),
        Err(SndDecodeError::RangeOverflow {
            op: "WRITE",
            offset: u32::MAX,
            length: 4096
        })
    );
    let mut b = w;
    set(&mut b, 12, &0u32.to_le_bytes());
    assert_eq!(
        SndRequest::decode(&b),
        Err(SndDecodeError::Zero {
            op: "WRITE",
            field: "length"
        })
    );

    let mut b = snd(SndRequestOp::Trigger(TriggerType::Start)).encode();
    b[8] = 4;
    assert_eq!(
        SndRequest::decode(&b),
        Err(SndDecodeError::UnknownTrigger(4))
    );

    let mut b = snd(SndRequestOp::HwParamQuery(HwParams::default())).encode();
    set(&mut b, 24, &2u32.to_le_bytes()); // channels.min
    set(&mut b, 28, &1u32.to_le_bytes()); // channels.max
    assert_eq!(
        SndRequest::decode(&b),
        Err(SndDecodeError::InvertedInterval {
            what: "channels",
            min: 2,
            max: 1
        })
    );

    let mut e = SndEvent {
        id: 0,
        kind: SndEventKind::CurPos { position: 1 },
    }
    .encode();
    e[2] = 1;
    assert_eq!(
        SndEvent::decode(&e),
        Err(SndDecodeError::UnknownEventType(1))
    );
}

#[test]
fn rw_range_must_lie_in_the_buffer() {
    let r = RwRange {
        offset: 4096,
        length: 4096,
    };
    assert_eq!(r.within(8192), Some(4096..8192));
    assert_eq!(r.within(8191), None);
    assert_eq!(
        RwRange {
            offset: u32::MAX,
            length: 2
        }
        .within(u32::MAX),
        None
    );
}

#[test]
fn pcm_format_properties() {
    assert_eq!(PcmFormat::ALL.len(), 25);
    for (i, f) in PcmFormat::ALL.iter().enumerate() {
        assert_eq!(*f as usize, i, "values run 0..=24");
        assert_eq!(PcmFormat::from_xenstore_name(f.xenstore_name()), Some(*f));
        assert_eq!(
            PcmFormat::from_xenstore_name(&f.xenstore_name().to_uppercase()),
            Some(*f)
        );
    }
    assert!(PcmFormat::S16Le.is_linear());
    assert_eq!(PcmFormat::S16Le.bytes_per_sample(), Some(2));
    assert_eq!(PcmFormat::S16Be.endian(), Some(Endian::Big));
    assert_eq!(PcmFormat::U8.is_signed(), Some(false));
    assert_eq!(PcmFormat::U8.endian(), None);
    assert_eq!(PcmFormat::S24Le.sample_bits(), Some(24));
    assert_eq!(PcmFormat::S24Le.physical_bits(), Some(32));
    assert!(PcmFormat::F32Le.is_float());
    assert_eq!(PcmFormat::F64Be.bytes_per_sample(), Some(8));
    assert!(PcmFormat::MuLaw.is_companded() && PcmFormat::ALaw.is_companded());
    for f in [PcmFormat::ImaAdpcm, PcmFormat::Mpeg, PcmFormat::Gsm] {
        assert!(f.is_compressed(), "{f:?}");
    }
    assert_eq!(PcmFormat::Mpeg.bytes_per_sample(), None);
    assert_eq!(PcmFormat::ImaAdpcm.bytes_per_sample(), None);
    assert_eq!(
        PcmFormat::Iec958SubframeLe.encoding(),
        PcmEncoding::Iec958Subframe
    );
    assert_eq!(
        formats_in_mask(mask_of([PcmFormat::U8, PcmFormat::S16Le]) | 1 << 40),
        vec![PcmFormat::U8, PcmFormat::S16Le]
    );
    assert_eq!(
        PcmFormat::from_xenstore_name("s16_le "),
        None,
        "whole-string match"
    );
}

fn rw() -> impl Strategy<Value = RwRange> {
    (0u32..=u32::MAX / 2, 1u32..=u32::MAX / 2)
        .prop_map(|(offset, length)| RwRange { offset, length })
}

fn interval() -> impl Strategy<Value = Interval> {
    (any::<u32>(), any::<u32>()).prop_map(|(a, b)| Interval {
        min: a.min(b),
        max: a.max(b),
    })
}

fn hw_params() -> impl Strategy<Value = HwParams> {
    (any::<u64>(), interval(), interval(), interval(), interval()).prop_map(
        |(formats, rates, channels, buffer, period)| HwParams {
            formats,
            rates,
            channels,
            buffer,
            period,
        },
    )
}

fn snd_request_op() -> impl Strategy<Value = SndRequestOp> {
    let open = (
        1u32..,
        prop::sample::select(PcmFormat::ALL.to_vec()),
        1u8..,
        1u32..,
        1u32..,
        any::<u32>(),
    )
        .prop_map(
            |(pcm_rate, pcm_format, pcm_channels, buffer_sz, gref_directory, p)| {
                SndRequestOp::Open(Open {
                    pcm_rate,
                    pcm_format,
                    pcm_channels,
                    buffer_sz,
                    gref_directory,
                    period_sz: p % (buffer_sz + 1).max(1),
                })
            },
        );
    prop_oneof![
        open,
        Just(SndRequestOp::Close),
        rw().prop_map(SndRequestOp::Read),
        rw().prop_map(SndRequestOp::Write),
        rw().prop_map(SndRequestOp::SetVolume),
        rw().prop_map(SndRequestOp::GetVolume),
        rw().prop_map(SndRequestOp::Mute),
        rw().prop_map(SndRequestOp::Unmute),
        prop::sample::select(TriggerType::ALL.to_vec()).prop_map(SndRequestOp::Trigger),
        hw_params().prop_map(SndRequestOp::HwParamQuery),
    ]
}

// ------------------------------------------------------------ kbdif

#[test]
fn kbdif_event_bytes_and_errors() {
    let b = KbdInEvent::Key {
        pressed: true,
        keycode: 0x110,
    }
    .encode();
    assert_eq!((b[0], b[1]), (3, 1));
    assert_eq!(&b[4..8], &0x110u32.to_le_bytes(), "keycode at octet 4");
    let b = KbdInEvent::Motion {
        rel_x: -3,
        rel_y: 4,
        rel_z: 1,
    }
    .encode();
    assert_eq!(&b[4..8], &(-3i32).to_le_bytes(), "rel_x at octet 4");
    let b = KbdInEvent::MultiTouch {
        contact_id: 2,
        event: MtEvent::Down {
            abs_x: 10,
            abs_y: 20,
        },
    }
    .encode();
    assert_eq!((b[0], b[1], b[2]), (5, 0, 2));
    assert_eq!(&b[8..12], &10i32.to_le_bytes(), "abs_x at octet 8");
    let b = KbdInEvent::MultiTouch {
        contact_id: 2,
        event: MtEvent::Orient { orientation: -90 },
    }
    .encode();
    assert_eq!(&b[8..10], &(-90i16).to_le_bytes());
    let mut raw = [0u8; 40];
    raw[0] = 2;
    assert_eq!(
        KbdInEvent::decode(&raw),
        Err(KbdDecodeError::UnknownType(2)),
        "TYPE_RESERVED"
    );
    raw[0] = 5;
    raw[1] = 6;
    assert_eq!(
        KbdInEvent::decode(&raw),
        Err(KbdDecodeError::UnknownMtEventType(6))
    );
    // Any non-zero `pressed` byte is a press, as in xen-kbdfront.
    let mut raw = KbdInEvent::Key {
        pressed: true,
        keycode: 30,
    }
    .encode();
    raw[1] = 7;
    assert_eq!(
        KbdInEvent::decode(&raw),
        Ok(KbdInEvent::Key {
            pressed: true,
            keycode: 30
        })
    );
}

fn mt_event() -> impl Strategy<Value = MtEvent> {
    prop_oneof![
        (any::<i32>(), any::<i32>()).prop_map(|(abs_x, abs_y)| MtEvent::Down { abs_x, abs_y }),
        Just(MtEvent::Up),
        (any::<i32>(), any::<i32>()).prop_map(|(abs_x, abs_y)| MtEvent::Motion { abs_x, abs_y }),
        Just(MtEvent::Syn),
        (any::<u32>(), any::<u32>()).prop_map(|(major, minor)| MtEvent::Shape { major, minor }),
        any::<i16>().prop_map(|orientation| MtEvent::Orient { orientation }),
    ]
}

fn kbd_event() -> impl Strategy<Value = KbdInEvent> {
    prop_oneof![
        (any::<i32>(), any::<i32>(), any::<i32>()).prop_map(|(rel_x, rel_y, rel_z)| {
            KbdInEvent::Motion {
                rel_x,
                rel_y,
                rel_z,
            }
        }),
        (any::<bool>(), any::<u32>())
            .prop_map(|(pressed, keycode)| KbdInEvent::Key { pressed, keycode }),
        (any::<i32>(), any::<i32>(), any::<i32>()).prop_map(|(abs_x, abs_y, rel_z)| {
            KbdInEvent::Position {
                abs_x,
                abs_y,
                rel_z,
            }
        }),
        (any::<u8>(), mt_event())
            .prop_map(|(contact_id, event)| KbdInEvent::MultiTouch { contact_id, event }),
    ]
}

proptest! {
    #[test]
    fn displif_request_roundtrip(id in any::<u16>(), op in displ_request_op()) {
        let r = DisplRequest { id, op };
        prop_assert_eq!(DisplRequest::decode(&r.encode()), Ok(r));
    }

    #[test]
    fn displif_response_roundtrip(id in any::<u16>(), status in any::<i32>(), op in prop::sample::select(DisplOp::ALL.to_vec()), edid_sz in any::<u32>()) {
        let body = if op == DisplOp::GetEdid { DisplResponseBody::GetEdid { edid_sz } } else { DisplResponseBody::Status(op) };
        let r = DisplResponse { id, status, body };
        prop_assert_eq!(DisplResponse::decode(&r.encode()), Ok(r));
    }

    #[test]
    fn displif_event_roundtrip(id in any::<u16>(), fb_cookie in nz64()) {
        let e = DisplEvent { id, kind: DisplEventKind::PgFlip { fb_cookie } };
        prop_assert_eq!(DisplEvent::decode(&e.encode()), Ok(e));
    }

    #[test]
    fn sndif_request_roundtrip(id in any::<u16>(), op in snd_request_op()) {
        let r = SndRequest { id, op };
        prop_assert_eq!(SndRequest::decode(&r.encode()), Ok(r));
    }

    #[test]
    fn sndif_response_roundtrip(id in any::<u16>(), status in any::<i32>(), op in prop::sample::select(SndOp::ALL.to_vec()), p in hw_params()) {
        let body = if op == SndOp::HwParamQuery { SndResponseBody::HwParamQuery(p) } else { SndResponseBody::Status(op) };
        let r = SndResponse { id, status, body };
        prop_assert_eq!(SndResponse::decode(&r.encode()), Ok(r));
    }

    #[test]
    fn sndif_event_roundtrip(id in any::<u16>(), position in any::<u64>()) {
        let e = SndEvent { id, kind: SndEventKind::CurPos { position } };
        prop_assert_eq!(SndEvent::decode(&e.encode()), Ok(e));
    }

    #[test]
    fn kbdif_event_roundtrip(e in kbd_event()) {
        prop_assert_eq!(KbdInEvent::decode(&e.encode()), Ok(e));
    }

    /// Garbage never panics a decoder.
    #[test]
    fn decoders_survive_garbage(b in prop::array::uniform32(any::<u8>()), c in prop::array::uniform32(any::<u8>()), k in prop::array::uniform32(any::<u8>())) {
        let mut s = [0u8; 64];
        s[..32].copy_from_slice(&b);
        s[32..].copy_from_slice(&c);
        let _ = DisplRequest::decode(&s);
        let _ = DisplResponse::decode(&s);
        let _ = DisplEvent::decode(&s);
        let _ = SndRequest::decode(&s);
        let _ = SndResponse::decode(&s);
        let _ = SndEvent::decode(&s);
        let mut e = [0u8; 40];
        e[..32].copy_from_slice(&k);
        let _ = KbdInEvent::decode(&e);
    }
}
