//! sndif configuration inheritance (as snd-xen-front applies it), xenstore
//! value parsers and XenBus states.

use pvgate_protocol::keys::*;
use pvgate_protocol::sndif::{mask_of, PcmFormat};
use pvgate_protocol::sndif_config::*;
use pvgate_protocol::xenbus::XenbusState;
use std::collections::BTreeMap;

const CARD: &str = "/local/domain/1/device/vsnd/0";

fn store(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
    entries
        .iter()
        .map(|(k, v)| (format!("{CARD}/{k}"), v.to_string()))
        .collect()
}

/// One device with one playback stream, plus `extra` nodes.
fn one_stream(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut s = store(&[("0/0/type", "p"), ("0/0/unique-id", "pb0")]);
    s.extend(store(extra));
    s
}

fn stream_hw(s: &BTreeMap<String, String>) -> PcmHw {
    read_card(s, CARD).unwrap().devices[0].streams[0]
        .pcm_hw
        .clone()
}

#[test]
fn defaults_when_nothing_is_configured() {
    let card = read_card(&one_stream(&[]), CARD).unwrap();
    let hw = &card.devices[0].streams[0].pcm_hw;
    assert_eq!(hw.formats, mask_of([PcmFormat::U8, PcmFormat::S16Le]));
    assert_eq!(hw.rates, RateSet::Continuous);
    assert_eq!((hw.rate_min, hw.rate_max), (5512, 48000));
    assert_eq!((hw.channels_min, hw.channels_max), (1, 2));
    assert_eq!(hw.buffer_bytes_max, 65536);
    assert_eq!((hw.period_bytes_min, hw.period_bytes_max), (64, 65536));
    assert_eq!((hw.periods_min, hw.periods_max), (2, 1024));
    assert_eq!(card.pcm_hw, *hw);
    assert_eq!(card.devices[0].streams[0].unique_id.as_deref(), Some("pb0"));
    assert_eq!(card.devices[0].streams[0].kind, StreamType::Playback);
}

#[test]
fn card_values_are_inherited_by_devices_and_streams() {
    let s = one_stream(&[
        ("sample-rates", "8000,44100,48000"),
        ("sample-formats", "s16_le,s32_le"),
        ("channels-max", "6"),
    ]);
    let card = read_card(&s, CARD).unwrap();
    for hw in [
        &card.pcm_hw,
        &card.devices[0].pcm_hw,
        &card.devices[0].streams[0].pcm_hw,
    ] {
        assert_eq!(hw.rates, RateSet::List(vec![8000, 44100, 48000]));
        assert_eq!((hw.rate_min, hw.rate_max), (8000, 48000));
        assert_eq!(hw.formats, mask_of([PcmFormat::S16Le, PcmFormat::S32Le]));
        assert_eq!((hw.channels_min, hw.channels_max), (1, 6));
    }
}

#[test]
fn device_overrides_card_and_stream_overrides_device() {
    let mut s = store(&[
        ("sample-rates", "44100,48000"),
        ("0/sample-rates", "96000"),
        ("0/0/type", "p"),
        ("0/0/sample-formats", "s8,u8"),
        ("0/1/type", "c"),
        ("1/0/type", "c"),
    ]);
    s.extend(store(&[("1/name", "HDMI-0")]));
    let card = read_card(&s, CARD).unwrap();
    let d0 = &card.devices[0];
    assert_eq!(d0.pcm_hw.rates, RateSet::List(vec![96000]));
    assert_eq!(
        d0.streams[0].pcm_hw.rates,
        RateSet::List(vec![96000]),
        "stream inherits its device"
    );
    assert_eq!(
        d0.streams[0].pcm_hw.formats,
        mask_of([PcmFormat::S8, PcmFormat::U8])
    );
    assert_eq!(
        d0.streams[1].pcm_hw.formats,
        mask_of([PcmFormat::U8, PcmFormat::S16Le]),
        "sibling keeps the default"
    );
    assert_eq!(
        d0.pcm_hw.formats,
        mask_of([PcmFormat::U8, PcmFormat::S16Le]),
        "a stream does not leak upwards"
    );
    let d1 = &card.devices[1];
    assert_eq!(
        d1.pcm_hw.rates,
        RateSet::List(vec![44100, 48000]),
        "other device inherits the card"
    );
    assert_eq!(d1.name.as_deref(), Some("HDMI-0"));
}

#[test]
fn only_channels_min_at_a_level_is_clamped_to_the_inherited_max() {
    // Default max is 2: asking for at least 4 gives [2, 2], as the driver's
    // "channels_min > channels_max" fix-up does.
    let hw = stream_hw(&one_stream(&[("0/0/channels-min", "4")]));
    assert_eq!((hw.channels_min, hw.channels_max), (2, 2));
    // With room above, channels-min alone raises only the minimum.
    let hw = stream_hw(&one_stream(&[
        ("channels-max", "8"),
        ("0/0/channels-min", "4"),
    ]));
    assert_eq!((hw.channels_min, hw.channels_max), (4, 8));
}

#[test]
fn lowering_channels_max_below_the_inherited_min_pulls_min_down() {
    let hw = stream_hw(&one_stream(&[
        ("channels-min", "4"),
        ("channels-max", "8"),
        ("0/0/channels-max", "2"),
    ]));
    assert_eq!((hw.channels_min, hw.channels_max), (2, 2));
}

#[test]
fn numbers_are_read_like_kernel_sscanf_and_zero_means_inherit() {
    for (value, expect) in [
        ("0", 2),
        ("garbage", 2),
        ("-1", 2),
        ("", 2),
        (" 6", 6),
        ("6abc", 6),
        ("+6", 2),
    ] {
        let hw = stream_hw(&one_stream(&[("channels-max", value)]));
        assert_eq!(hw.channels_max, expect, "channels-max = {value:?}");
    }
}

#[test]
fn buffer_size_sets_the_period_limits_too() {
    let card = read_card(&one_stream(&[("0/buffer-size", "131072")]), CARD).unwrap();
    let hw = &card.devices[0].streams[0].pcm_hw;
    assert_eq!(hw.buffer_bytes_max, 131072);
    assert_eq!(hw.period_bytes_max, 131072);
    assert_eq!(hw.periods_max, 131072 / 64);
    assert_eq!(
        card.pcm_hw.buffer_bytes_max, 65536,
        "the card keeps its own"
    );
}

#[test]
fn unknown_list_items_are_skipped_and_an_all_unknown_list_inherits() {
    let hw = stream_hw(&one_stream(&[("sample-formats", "S16_LE,bogus,Float_LE")]));
    assert_eq!(
        hw.formats,
        mask_of([PcmFormat::S16Le, PcmFormat::F32Le]),
        "case-insensitive, unknown skipped"
    );
    let hw = stream_hw(&one_stream(&[("sample-formats", "bogus")]));
    assert_eq!(hw.formats, mask_of([PcmFormat::U8, PcmFormat::S16Le]));
    let hw = stream_hw(&one_stream(&[("sample-rates", "12345,48000,48000,8000")]));
    assert_eq!(hw.rates, RateSet::List(vec![8000, 48000]));
    assert_eq!((hw.rate_min, hw.rate_max), (8000, 48000));
    let hw = stream_hw(&one_stream(&[("sample-rates", "12345, 48000")]));
    assert_eq!(
        hw.rates,
        RateSet::Continuous,
        "\" 48000\" is not a known rate"
    );
    assert!(hw.allows_rate(22050));
}

#[test]
fn streams_are_numbered_card_wide_and_counted_to_the_first_gap() {
    let s = store(&[
        ("0/0/type", "p"),
        ("0/1/type", "C"),
        ("0/3/type", "p"),
        ("1/0/type", "P"),
        ("3/0/type", "p"),
    ]);
    let card = read_card(&s, CARD).unwrap();
    assert_eq!(card.devices.len(), 2, "device 3 is after the gap at 2");
    let idx: Vec<(u32, u32, StreamType)> = card
        .streams()
        .map(|s| (s.index, s.card_index, s.kind))
        .collect();
    assert_eq!(
        idx,
        vec![
            (0, 0, StreamType::Playback),
            (1, 1, StreamType::Capture),
            (0, 2, StreamType::Playback)
        ]
    );
    assert_eq!(card.devices[1].streams[0].path, format!("{CARD}/1/0"));
}

#[test]
fn configuration_errors() {
    assert_eq!(
        read_card(&store(&[("short-name", "x")]), CARD),
        Err(SndConfigError::NoDevices { path: CARD.into() })
    );
    assert_eq!(
        read_card(&store(&[("0/0/unique-id", "a")]), CARD),
        Err(SndConfigError::MissingStreamType {
            path: format!("{CARD}/0/0")
        })
    );
    for bad in ["x", "pp", "playback", ""] {
        assert!(
            matches!(
                read_card(&store(&[("0/0/type", bad)]), CARD),
                Err(SndConfigError::BadStreamType { .. })
            ),
            "type {bad:?}"
        );
    }
    // A bad stream fails the card even if an earlier one is fine.
    assert!(read_card(&store(&[("0/0/type", "p"), ("0/1/type", "q")]), CARD).is_err());
}

#[test]
fn card_names_are_read_when_present() {
    let card = read_card(
        &one_stream(&[("short-name", "Virtual"), ("long-name", "Virtual card")]),
        CARD,
    )
    .unwrap();
    assert_eq!(card.short_name.as_deref(), Some("Virtual"));
    assert_eq!(card.long_name.as_deref(), Some("Virtual card"));
}

#[test]
fn resolution_parser() {
    assert_eq!(
        parse_resolution("1920x1080"),
        Ok(Resolution {
            width: 1920,
            height: 1080
        })
    );
    assert_eq!(
        parse_resolution(" 800x600\n"),
        Ok(Resolution {
            width: 800,
            height: 600
        })
    );
    for bad in [
        "1920",
        "x1080",
        "1920x",
        "0x600",
        "800x0",
        "-1x5",
        "800X600",
        "800x600x2",
        "99999999999x1",
        "2147483648x1",
    ] {
        assert!(parse_resolution(bad).is_err(), "{bad:?}");
    }
    assert_eq!(
        Resolution {
            width: 3,
            height: 4
        }
        .to_string(),
        "3x4"
    );
}

#[test]
fn strict_and_linux_number_parsers() {
    assert_eq!(parse_u32("ring-ref", "2832"), Ok(2832));
    assert!(parse_u32("ring-ref", "28a").is_err());
    assert!(parse_u32("ring-ref", "-1").is_err());
    assert!(parse_u32("ring-ref", "4294967296").is_err());
    assert!(matches!(
        parse_grant_ref("ring-ref", "0"),
        Err(KeyError::ZeroGrantRef { .. })
    ));
    assert_eq!(scan_uint_like_linux("  17x"), Some(17));
    assert_eq!(
        scan_uint_like_linux("4294967297"),
        Some(1),
        "64-bit value truncated to 32"
    );
    assert_eq!(scan_uint_like_linux("-3"), None);
    assert_eq!(scan_int_like_linux("-3"), Some(-3));
    assert!(flag_like_linux(Some("1")) && flag_like_linux(Some("2")));
    assert!(!flag_like_linux(Some("0")) && !flag_like_linux(Some("yes")) && !flag_like_linux(None));
    assert_eq!(read_unsigned_like_linux(None, 9), 9);
    assert_eq!(parse_stream_type("c"), Ok(StreamType::Capture));
    assert_eq!(parse_versions("1,2"), vec![1, 2]);
}

#[test]
fn key_names() {
    assert_eq!(displif::REQ_RING_REF, "req-ring-ref");
    assert_eq!(sndif::RING_REF, "ring-ref");
    assert_eq!(sndif::EVENT_CHANNEL, "event-channel");
    assert_eq!(sndif::EVT_RING_REF, "evt-ring-ref");
    assert_eq!(kbdif::PAGE_GREF, "page-gref");
    assert_eq!(sndif::stream_path(CARD, 1, 2), format!("{CARD}/1/2"));
}

#[test]
fn xenbus_states() {
    for (i, s) in XenbusState::ALL.iter().enumerate() {
        assert_eq!(*s as usize, i);
        assert_eq!(XenbusState::parse(&s.to_node_value()), Ok(*s));
    }
    assert_eq!(XenbusState::parse("4"), Ok(XenbusState::Connected));
    assert_eq!(XenbusState::parse(" 2\n"), Ok(XenbusState::InitWait));
    assert!(XenbusState::parse("9").is_err());
    assert!(XenbusState::parse("connected").is_err());
    assert_eq!(
        XenbusState::parse_like_linux(Some("junk")),
        XenbusState::Unknown
    );
    assert_eq!(
        XenbusState::parse_like_linux(Some("3x")),
        XenbusState::Initialised
    );
    assert_eq!(XenbusState::parse_like_linux(None), XenbusState::Unknown);
    assert_eq!("6".parse::<XenbusState>(), Ok(XenbusState::Closed));
}

#[test]
fn displif_connectors_are_read_like_xen_drm_front() {
    let fe = "/local/domain/1/device/vdispl/0";
    let s: BTreeMap<String, String> = [
        ("be-alloc", "1"),
        ("0/resolution", "1920x1080"),
        ("0/unique-id", "mon0"),
        ("1/resolution", "800x600"),
        ("2/resolution", "bogus"),
        ("3/resolution", "640x480"),
    ]
    .iter()
    .map(|(k, v)| (format!("{fe}/{k}"), v.to_string()))
    .collect();
    let cfg = displif::read_config(&s, fe).unwrap();
    assert!(cfg.be_alloc);
    assert_eq!(
        cfg.connectors.len(),
        2,
        "stops at the first invalid resolution"
    );
    assert_eq!(
        cfg.connectors[0].resolution,
        Resolution {
            width: 1920,
            height: 1080
        }
    );
    assert_eq!(cfg.connectors[0].unique_id.as_deref(), Some("mon0"));
    assert_eq!(cfg.connectors[1].path, format!("{fe}/1"));
    let none: BTreeMap<String, String> = BTreeMap::new();
    assert_eq!(
        displif::read_config(&none, fe),
        Err(displif::NoConnectors { path: fe.into() })
    );
    let mut five = BTreeMap::new();
    for i in 0..5 {
        five.insert(format!("{fe}/{i}/resolution"), "10x10".to_string());
    }
    let cfg = displif::read_config(&five, fe).unwrap();
    assert!(!cfg.be_alloc);
    assert_eq!(cfg.connectors.len(), 4, "xen-drm-front reads at most 4");
}

fn tree(base: &str, entries: &[(&str, &str)]) -> BTreeMap<String, String> {
    entries
        .iter()
        .map(|(k, v)| (format!("{base}/{k}"), v.to_string()))
        .collect()
}

#[test]
fn transport_keys_per_protocol() {
    let conn = "/local/domain/1/device/vdispl/0/0";
    let s = tree(
        conn,
        &[
            ("req-ring-ref", "2832"),
            ("req-event-channel", "15"),
            ("evt-ring-ref", "387"),
            ("evt-event-channel", "16"),
        ],
    );
    assert_eq!(
        displif::read_transport(&s, conn),
        Ok(RingPair {
            req_ring_ref: 2832,
            req_event_channel: 15,
            evt_ring_ref: 387,
            evt_event_channel: 16
        })
    );
    // sndif's request ring keys have no req- prefix: displif's names are not found.
    assert_eq!(
        sndif::read_transport(&s, conn),
        Err(TransportError::Missing {
            path: format!("{conn}/ring-ref")
        })
    );
    let stream = "/local/domain/1/device/vsnd/0/0/0";
    let s = tree(
        stream,
        &[
            ("ring-ref", "386"),
            ("event-channel", "15"),
            ("evt-ring-ref", "1386"),
            ("evt-event-channel", "x"),
        ],
    );
    assert!(matches!(
        sndif::read_transport(&s, stream),
        Err(TransportError::Bad {
            source: KeyError::NotANumber {
                key: "evt-event-channel",
                ..
            },
            ..
        })
    ));
    let s = tree(
        stream,
        &[
            ("ring-ref", "0"),
            ("event-channel", "15"),
            ("evt-ring-ref", "1386"),
            ("evt-event-channel", "7"),
        ],
    );
    assert!(matches!(
        sndif::read_transport(&s, stream),
        Err(TransportError::Bad {
            source: KeyError::ZeroGrantRef { .. },
            ..
        })
    ));

    let fe = "/local/domain/1/device/vkbd/0";
    let s = tree(
        fe,
        &[
            ("page-ref", "123456"),
            ("page-gref", "9"),
            ("event-channel", "4"),
            ("request-abs-pointer", "1"),
        ],
    );
    assert_eq!(
        kbdif::read_frontend(&s, fe),
        Ok(kbdif::FrontendRequest {
            page_gref: 9,
            event_channel: 4,
            abs_pointer: true,
            multi_touch: false,
            raw_pointer: false
        })
    );
}

#[test]
fn kbdif_backend_feature_nodes() {
    let f = kbdif::BackendFeatures {
        abs_pointer: true,
        size: Some((1920, 1080)),
        ..Default::default()
    };
    let nodes: BTreeMap<&str, String> = f.nodes().into_iter().collect();
    assert_eq!(nodes["feature-abs-pointer"], "1");
    assert_eq!(nodes["feature-multi-touch"], "0");
    assert_eq!(
        (nodes["width"].as_str(), nodes["height"].as_str()),
        ("1920", "1080")
    );
    assert!(!nodes.contains_key("multi-touch-width"));
}
