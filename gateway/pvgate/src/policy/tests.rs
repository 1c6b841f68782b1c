//! Policy decisions applied for real (sim tier): a simulated Xen, the
//! gateway's device supervisor with a tenant running the `tiers` example
//! plugin, and a simulated guest labelled bronze. What the guest and a
//! viewer get is measured, not the decisions: the encoded video's size
//! and frame times, and the sndif answers on the wire.

#[path = "../../../policy/tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use pvgate_guest_sim::config::{DisplayConfig, GuestConfig, SoundCardConfig};
use pvgate_guest_sim::content::Scene;
use pvgate_guest_sim::display::render::{render_loop, RenderOptions};
use pvgate_guest_sim::guest::{GuestSim, StartOptions};
use pvgate_guest_sim::sim::{connect_guest, connect_toolstack, XsRegistry};
use pvgate_guest_sim::toolstack::Toolstack;
use pvgate_media::decode::new_decoder;
use pvgate_media::{Codec, EncoderParams};
use pvgate_platform::sim::SimXen;
use pvgate_protocol::displif::PixelFormat;
use pvgate_protocol::sndif::{
    HwParams, Interval, PcmFormat, SndRequest, SndRequestOp, SndResponse, SndResponseBody,
};
use tokio::sync::watch;

use crate::access::Access;
use crate::commands::serve::load_policies;
use crate::config::Config;
use crate::gateway::Gateway;
use crate::http::GatewayView;

const WAIT: Duration = Duration::from_secs(20);
const DOMID: u16 = 7;

/// A configuration whose tenant `acme` owns `acme-*` guests, runs
/// `plugin` with `config`, and labels `acme-bronze-*` bronze.
pub fn tenant_config(plugin: &str, policy_config: &str, tokens: &str) -> Config {
    let text = format!(
        r#"
[policy]
cache_dir = "{cache}"
[[tenant]]
name = "acme"
guests = ["acme-*"]
policy = "{plugin}"
[tenant.policy_config]
{policy_config}
[[tenant.labels]]
guests = ["acme-bronze-*"]
labels = ["bronze"]
{tokens}
"#,
        cache = support::test_cache_dir().display(),
        plugin = support::example(plugin).display(),
    );
    Config::parse(&text, "policy-test.toml").expect("test config")
}

pub struct Rig {
    pub gateway: Arc<Gateway>,
    pub guest: GuestSim,
    pub access: Arc<Access>,
    run: tokio::task::JoinHandle<()>,
    _sim: SimXen,
    _dir: tempfile::TempDir,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.gateway.stop_all();
        self.run.abort();
    }
}

/// The gateway on a simulated Xen with `config`'s policies, and guest
/// `name` with `guest` devices.
pub async fn rig(config: &Config, name: &str, guest: GuestConfig) -> Rig {
    let dir = tempfile::Builder::new()
        .prefix("pvp")
        .tempdir_in("/tmp")
        .expect("tempdir");
    let sim = SimXen::start(dir.path()).await.expect("sim xen");
    let dom0 = pvgate_platform::sim::connect(dir.path(), 0)
        .await
        .expect("dom0");
    let access = Arc::new(Access::from_config(config));
    let policies = load_policies(Some(config), access.clone()).expect("policies");
    let gateway = Gateway::with_policies(dom0, Arc::new(policies));
    let g = gateway.clone();
    // Watching before the domain exists, as on a real host.
    let run = tokio::spawn(async move {
        let _ = g.run().await;
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let guest = GuestConfig {
        domid: DOMID,
        name: name.into(),
        ..guest
    };
    let ts = connect_toolstack(dir.path()).await.expect("toolstack");
    Toolstack::new(&ts, &XsRegistry(&ts))
        .create_domain(&guest)
        .await
        .expect("create domain");
    let gp = connect_guest(dir.path(), DOMID).await.expect("guest");
    let guest = GuestSim::start(guest, gp.platform, StartOptions::default())
        .await
        .expect("guest sim");
    Rig {
        gateway,
        guest,
        access,
        run,
        _sim: sim,
        _dir: dir,
    }
}

fn iv(min: u32, max: u32) -> Interval {
    Interval { min, max }
}

/// One raw request slot and the raw answer slot.
async fn raw(stream: &pvgate_guest_sim::sound::SoundStream, req: &SndRequest) -> [u8; 64] {
    let ch = stream.request_channel();
    assert_eq!(ch.send_raw(&[req.encode()]).await.expect("send"), 1);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = ch
            .drain_responses(Duration::from_millis(500))
            .await
            .expect("responses");
        if let Some(slot) = got.into_iter().next() {
            return slot;
        }
        assert!(tokio::time::Instant::now() < deadline, "no answer");
    }
}

/// `tiers`, bronze: 48 kHz stereo is refused on the wire; the stream is
/// offered 16 kHz mono only, and OPEN follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_tiers_bronze_sound_refuses_48k_stereo() {
    let config = tenant_config("tiers", "", "");
    let guest = GuestConfig {
        sound_cards: vec![SoundCardConfig::parse(
            "card, sample-formats=s16_le;float_le, sample-rates=16000;44100;48000, channels-max=2 | stream, type=p",
        )
        .unwrap()],
        ..GuestConfig::default()
    };
    let rig = rig(&config, "acme-bronze-1", guest).await;
    let session = rig.guest.sounds[0].connected(WAIT).await.expect("vsnd");
    let stream = session.stream(0).expect("stream");

    let all = HwParams {
        formats: u64::MAX,
        rates: iv(1, 400_000),
        channels: iv(1, 8),
        buffer: iv(1, u32::MAX),
        period: iv(1, u32::MAX),
    };
    // The whole space: 16 kHz, mono, both offered formats (the guest's
    // 44.1 and 48 kHz and its stereo are gone).
    let req = SndRequest {
        id: 0x51,
        op: SndRequestOp::HwParamQuery(all),
    };
    let narrowed = HwParams {
        formats: PcmFormat::S16Le.mask_bit() | PcmFormat::F32Le.mask_bit(),
        rates: iv(16_000, 16_000),
        channels: iv(1, 1),
        buffer: iv(32, 32768),
        period: iv(16, 16384),
    };
    let want = SndResponse {
        id: 0x51,
        status: 0,
        body: SndResponseBody::HwParamQuery(narrowed),
    };
    let got = raw(&stream, &req).await;
    assert_eq!(
        got,
        want.encode(),
        "HW_PARAM_QUERY answer: got {:?}",
        SndResponse::decode(&got)
    );

    // 48 kHz stereo, as a player asks for it: -EINVAL, byte for byte.
    let req = SndRequest {
        id: 0x52,
        op: SndRequestOp::HwParamQuery(HwParams {
            formats: PcmFormat::S16Le.mask_bit(),
            rates: iv(48_000, 48_000),
            channels: iv(2, 2),
            ..all
        }),
    };
    assert_eq!(
        raw(&stream, &req).await,
        SndResponse::for_request(&req, -22).encode()
    );
    // 48 kHz mono too: the rate alone is refused.
    let r = stream
        .hw_param_query(HwParams {
            rates: iv(48_000, 48_000),
            ..all
        })
        .await;
    assert!(r.is_err(), "{r:?}");
    // OPEN: 48 kHz stereo refused, 16 kHz mono accepted.
    assert!(stream
        .open(PcmFormat::S16Le, 48_000, 2, 16384, 4096)
        .await
        .is_err());
    stream
        .open(PcmFormat::S16Le, 16_000, 1, 16384, 4096)
        .await
        .expect("16 kHz mono opens");
    let out = rig
        .gateway
        .sounds
        .list()
        .into_iter()
        .find(|s| s.key.domid == DOMID)
        .expect("output");
    let open = out.open_info().expect("open");
    assert_eq!((open.rate, open.channels), (16_000, 1));
    // The tenant's policy was asked (and counted) for this stream.
    let acme = rig
        .gateway
        .policies()
        .tenant_policies()
        .into_iter()
        .find(|t| t.tenant() == "acme")
        .expect("acme");
    assert!(acme.metrics().snapshot().plugin_ok >= 1);
}

/// `tiers`, bronze: a viewer's video is 480p at no more than 15 fps, as
/// encoded (decoded size and frame times), whatever the session asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_tiers_bronze_video_is_480p_at_15_fps() {
    let config = tenant_config("tiers", "", "");
    let guest = GuestConfig {
        displays: vec![DisplayConfig::parse("backend=0,be-alloc=0,connectors=1280x720").unwrap()],
        ..GuestConfig::default()
    };
    let rig = rig(&config, "acme-bronze-2", guest).await;
    let session = rig.guest.displays[0].connected(WAIT).await.expect("vdispl");
    let (stop, stop_rx) = watch::channel(false);
    let render = tokio::spawn(render_loop(
        session,
        RenderOptions {
            connector: 0,
            format: PixelFormat::Xrgb8888,
            fps: 30,
            scene: Scene::Pattern,
            frames: None,
        },
        None,
        None,
        stop_rx,
    ));
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut sub = loop {
        // A viewer asking for far more than bronze allows.
        let mut params = EncoderParams::new(Codec::H264, 8_000_000);
        params.max_fps = 60;
        if let Some(s) = rig.gateway.subscribe_video(DOMID, 0, params) {
            break s.expect("subscribe");
        }
        assert!(tokio::time::Instant::now() < deadline, "no display");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let p = sub.params().clone();
    assert_eq!((p.max_fps, p.bitrate_bps), (15, 500_000));
    assert_eq!(p.output_size, Some((852, 480)));

    let mut decoder = new_decoder(Codec::H264).unwrap();
    let mut pts = Vec::new();
    let started = tokio::time::Instant::now();
    while pts.len() < 16 {
        let f = tokio::time::timeout_at(deadline, sub.recv())
            .await
            .expect("frames keep coming")
            .expect("stream open");
        assert_eq!((f.width, f.height), (852, 480));
        if let Some(pic) = decoder.decode(&f.data).expect("decodes") {
            assert_eq!((pic.width(), pic.height()), (852, 480));
        }
        if !f.refresh {
            pts.push(f.pts);
        }
    }
    let wall = started.elapsed();
    let _ = stop.send(true);
    let _ = render.await;
    // Frame times at least 1/15 s apart (the encoder's 10 % jitter slack),
    // and no more than 15 per second of wall time.
    for w in pts.windows(2) {
        let gap = w[1].saturating_sub(w[0]);
        assert!(
            gap >= Duration::from_millis(60),
            "frames {:?} apart: above 15 fps ({pts:?})",
            gap
        );
    }
    let span = pts[pts.len() - 1] - pts[0];
    let fps = (pts.len() - 1) as f64 / span.as_secs_f64();
    assert!(fps <= 15.5, "{fps:.1} fps over {span:?}");
    assert!(wall >= Duration::from_millis(900), "16 frames in {wall:?}");
}

/// `office-hours` with `hours`: a control token's viewer, over the real
/// session WebSocket, presses a key. Returns the role the welcome gave and
/// whether the guest's keyboard saw the key.
async fn office_hours_session(hours: &str) -> (String, bool) {
    use futures::{SinkExt, StreamExt};
    use pvgate_guest_sim::config::InputConfig;
    use pvgate_protocol::kbdif::KbdInEvent;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;

    let tokens = format!(
        "[[tenant.token]]\nuser = \"alice\"\nrole = \"control\"\nsha256 = \"{}\"\n",
        crate::config::sha256_hex("alice-token")
    );
    let config = tenant_config(
        "office_hours",
        &format!("hours = \"{hours}\"\nutc-offset-minutes = 0"),
        &tokens,
    );
    let guest = GuestConfig {
        displays: vec![DisplayConfig::parse("backend=0,be-alloc=0,connectors=320x240").unwrap()],
        inputs: vec![InputConfig::parse("feature-abs-pointer=1,width=320,height=240").unwrap()],
        ..GuestConfig::default()
    };
    let rig = rig(&config, "acme-desk", guest).await;
    let display = rig.guest.displays[0].connected(WAIT).await.expect("vdispl");
    rig.guest.inputs[0]
        .device
        .connected(WAIT)
        .await
        .expect("vkbd");
    let mut keys = rig.guest.inputs[0].subscribe();
    let (stop, stop_rx) = watch::channel(false);
    let render = tokio::spawn(render_loop(
        display,
        RenderOptions {
            connector: 0,
            format: PixelFormat::Xrgb8888,
            fps: 10,
            scene: Scene::Desktop,
            frames: None,
        },
        None,
        None,
        stop_rx,
    ));
    let deadline = tokio::time::Instant::now() + WAIT;
    while !rig
        .gateway
        .guests()
        .iter()
        .any(|g| g.domid == DOMID && !g.displays.is_empty() && g.input)
    {
        assert!(tokio::time::Instant::now() < deadline, "guest not served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let view: Arc<dyn GatewayView> = rig.gateway.clone();
    let mut state = crate::http::AppState::new(view);
    state.access = rig.access.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(crate::http::serve(listener, state));

    let mut req = format!("ws://127.0.0.1:{port}/api/guests/{DOMID}/session")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", "Bearer alice-token".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("upgrade");
    let hello = r#"{"type":"hello","transport":"websocket","display":0,"codecs":["h264","vp8"],"audio":false,"mic":false}"#;
    ws.send(Message::Text(hello.into())).await.unwrap();
    let role = loop {
        let m = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("welcome in time")
            .expect("socket open")
            .unwrap();
        if let Message::Text(t) = m {
            let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
            assert_ne!(v["type"], "error", "{v}");
            if v["type"] == "welcome" {
                break v["role"].as_str().unwrap_or("").to_string();
            }
        }
    };
    for down in [true, false] {
        let key = format!(r#"{{"type":"key","code":30,"down":{down}}}"#);
        ws.send(Message::Text(key.into())).await.unwrap();
    }
    // A delivered key reaches the guest within milliseconds; a second is
    // a wide margin on a loaded machine for the refused case.
    let saw = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            match keys.recv().await {
                Ok(KbdInEvent::Key { keycode: 30, .. }) => return true,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return false,
            }
        }
    })
    .await
    .unwrap_or(false);
    let _ = stop.send(true);
    let _ = render.await;
    server.abort();
    (role, saw)
}

/// `HH:MM` of UTC now plus `minutes`, wrapped to the day.
fn utc_plus(minutes: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 60;
    let m = (now + minutes) % (24 * 60);
    format!("{:02}:{:02}", m / 60, m % 60)
}

/// `office-hours`: outside the hours a control token only watches, and
/// its key presses never reach the guest; inside them they do (the same
/// path, so the refusal is the policy's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_office_hours_denies_control_and_the_guest_sees_no_input() {
    let closed = format!("{}-{}", utc_plus(60), utc_plus(120));
    let (role, saw) = office_hours_session(&closed).await;
    assert_eq!(role, "view");
    assert!(!saw, "the guest received a key from a view-only session");

    let (role, saw) = office_hours_session("00:00-24:00").await;
    assert_eq!(role, "control");
    assert!(saw, "the guest did not receive the key in office hours");
}

/// A live session's re-check follows the tenant's plugin as it changes
/// (hot reload here; the clock in production): control kept, withdrawn,
/// then the session denied when the plugin fails (admission fails closed).
#[test]
fn policy_recheck_follows_the_plugin() {
    use crate::access::{Role, Viewer};
    use crate::session::admission::{Recheck, RecheckOutcome};

    let (_dir, file) = support::copy_to_temp(&support::example("default"));
    let closed = format!("{}-{}", utc_plus(60), utc_plus(120));
    let text = format!(
        r#"
[policy]
cache_dir = "{cache}"
[[tenant]]
name = "acme"
guests = [9]
policy = "{file}"
[tenant.policy_config]
hours = "{closed}"
mode = "panic"
"#,
        cache = support::test_cache_dir().display(),
        file = file.display(),
    );
    let config = Config::parse(&text, "recheck.toml").unwrap();
    let access = Arc::new(Access::from_config(&config));
    let policies = Arc::new(load_policies(Some(&config), access).unwrap());
    let acme = policies
        .tenant_policies()
        .into_iter()
        .find(|t| t.tenant() == "acme")
        .unwrap();
    let guest = policies.guest(9, "desk");
    let viewer = Viewer {
        tenant: "acme".into(),
        user: "alice".into(),
        role: Role::Control,
    };
    let mut recheck = Recheck::new(policies.clone(), guest, viewer, None);
    assert_eq!(recheck.ask(), RecheckOutcome::Same);

    support::replace_file(&file, &support::example("office_hours"));
    assert!(acme.reload().unwrap(), "reloaded");
    assert_eq!(recheck.ask(), RecheckOutcome::Role(Role::View));
    assert_eq!(recheck.ask(), RecheckOutcome::Same);

    support::replace_file(&file, &support::example("misbehaving"));
    assert!(acme.reload().unwrap(), "reloaded");
    match recheck.ask() {
        RecheckOutcome::Denied(m) => assert!(m.contains("ended this session"), "{m}"),
        other => panic!("{other:?}"),
    }
}

/// `/metrics`' policy families: per tenant, filtered to what the caller may
/// see, counting the calls made.
#[test]
fn policy_counters_render_per_tenant() {
    let mut config = tenant_config("tiers", "", "");
    config.tenants.push(crate::config::Tenant {
        name: "beta".into(),
        guests: vec![crate::config::GuestRef::Domid(3)],
        tokens: Vec::new(),
        policy: Default::default(),
    });
    let access = Arc::new(Access::from_config(&config));
    let policies = load_policies(Some(&config), access).unwrap();
    let g = policies.guest(DOMID, "acme-bronze-9");
    assert_eq!(
        (g.tenant.as_str(), g.labels.as_slice()),
        ("acme", &["bronze".to_string()][..])
    );
    let v = policies.video(&g, 0, (1920, 1080));
    assert_eq!(v.max_fps, 15);
    let all = super::metrics::render(&policies.tenant_policies(), |_| true);
    let plugin = support::example("tiers").display().to_string();
    assert!(
        all.contains(&format!(
            "pvgate_policy_calls_total{{tenant=\"acme\",plugin=\"{plugin}\"}} 1\n"
        )),
        "{all}"
    );
    assert!(all.contains("pvgate_policy_traps_total{tenant=\"beta\",plugin=\"builtin\"} 0"));
    assert!(all.contains("# TYPE pvgate_policy_fuel_used_total counter"));
    let beta_only = super::metrics::render(&policies.tenant_policies(), |t| t == "beta");
    assert!(!beta_only.contains("acme"), "{beta_only}");
}

/// `--record-policy-trace`: every question the gateway asks lands in the
/// file as a JSON line that `pvgate plugin test --events` reads back.
#[test]
fn policy_trace_recording_replays() {
    let config = tenant_config("tiers", "", "");
    let access = Arc::new(Access::from_config(&config));
    let policies = load_policies(Some(&config), access).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("trace.jsonl");
    crate::commands::serve::record_policy_trace(&policies, &file).unwrap();
    let g = policies.guest(DOMID, "acme-bronze-3");
    let v = policies.video(&g, 0, (1280, 720));
    let viewer = crate::access::Viewer {
        tenant: "acme".into(),
        user: "bob".into(),
        role: crate::access::Role::View,
    };
    policies.admit(&g, &viewer, Some("192.0.2.7:4000".parse().unwrap()));
    let trace = pvgate_policy::PolicyTrace::load(&file).unwrap();
    assert_eq!(trace.events.len(), 2, "{trace:?}");
    let acme = policies
        .tenant_policies()
        .into_iter()
        .find(|t| t.tenant() == "acme")
        .unwrap();
    let replayed = pvgate_policy::replay(&acme, &trace);
    assert_eq!(replayed[0].decision, pvgate_policy::Decision::Video(v));
    match &trace.events[1] {
        pvgate_policy::PolicyEvent::Admit { viewer, .. } => {
            assert_eq!(viewer.remote_address, "192.0.2.7:4000")
        }
        e => panic!("{e:?}"),
    }
    // A path that cannot be opened is an error naming it.
    let e = crate::commands::serve::record_policy_trace(
        &policies,
        std::path::Path::new("/nonexistent/t.jsonl"),
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("/nonexistent/t.jsonl"), "{e:#}");
}

/// `adjust`, as the WebRTC video task asks it: the tenant's plugin answers
/// (here `misbehaving` in `absurd` mode: 0 bit/s, 0 fps) and the answer
/// reaches the session clamped to the gateway's floor; the built-in policy
/// and an unclaimed guest get no adjustment.
#[test]
fn policy_adjust_reaches_the_plugin_and_comes_back_clamped() {
    let config = tenant_config("misbehaving", "mode = \"absurd\"", "");
    let access = Arc::new(Access::from_config(&config));
    let policies = load_policies(Some(&config), access.clone()).unwrap();
    let guest = policies.guest(DOMID, "acme-desk");
    let viewer = pvgate_policy::types::Viewer {
        tenant: "acme".into(),
        user: "alice".into(),
        role: pvgate_policy::types::Role::Control,
        remote_address: "192.0.2.7:4000".into(),
    };
    let stats = pvgate_policy::types::LinkStats {
        rtt_ms: 40,
        loss_permille: 20,
        estimated_bps: 2_000_000,
        fps_achieved: 30,
    };
    let a = policies
        .adjust(&guest, 0, (1280, 720), &viewer, &stats)
        .expect("the plugin adjusts");
    let bounds = pvgate_policy::Bounds::default();
    assert_eq!(
        (a.max_bitrate_bps, a.max_fps),
        (bounds.bitrate_floor_bps, bounds.fps_min)
    );
    let builtin = crate::policy::Policies::builtin_only(access);
    assert_eq!(
        builtin.adjust(&guest, 0, (1280, 720), &viewer, &stats),
        None
    );
}
