//! The shared-encoder hub with real encoder threads.

mod common;

use common::{read_counter, Sequence};
use pvgate_media::decode::new_decoder;
use pvgate_media::hub::{ConnectorId, EncoderHub, FrameUpdate, Subscription};
use pvgate_media::testpattern::Content;
use pvgate_media::{Codec, EncodedFrame, EncoderParams, Frame};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONN: ConnectorId = ConnectorId {
    domid: 7,
    device: 0,
    connector: 0,
};

fn update(frame: Frame, damaged: bool) -> FrameUpdate {
    FrameUpdate {
        frame: Arc::new(frame),
        damaged,
        captured: Instant::now(),
    }
}

async fn next(sub: &mut Subscription) -> Arc<EncodedFrame> {
    tokio::time::timeout(Duration::from_secs(10), sub.recv())
        .await
        .expect("a frame within 10 s")
        .expect("stream still open")
}

/// Publish `n` frames of moving content, `gap` apart.
async fn publish_motion(hub: &EncoderHub, seq: &mut Sequence, n: u32, gap: Duration) {
    for _ in 0..n {
        hub.publish(CONN, update(seq.next_frame(), true));
        tokio::time::sleep(gap).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equal_params_share_one_encoder_and_different_params_get_their_own() {
    let hub = EncoderHub::new();
    let mut seq = Sequence::new(Content::Desktop, 320, 192);
    hub.publish(CONN, update(seq.next_frame(), true));
    let params = EncoderParams::new(Codec::H264, 1_000_000);
    let mut a = hub.subscribe(CONN, params.clone()).unwrap();
    let mut b = hub.subscribe(CONN, params.clone()).unwrap();
    assert!(a.shares_encoder_with(&b));
    assert_eq!(hub.encoder_count(), 1);
    let mut c = hub
        .subscribe(CONN, EncoderParams::new(Codec::Vp8, 1_000_000))
        .unwrap();
    let mut d = hub
        .subscribe(CONN, EncoderParams::new(Codec::H264, 500_000))
        .unwrap();
    assert!(!a.shares_encoder_with(&c) && !a.shares_encoder_with(&d));
    assert_eq!(hub.encoder_count(), 3);

    // Everyone starts with a keyframe of the current picture.
    for sub in [&mut a, &mut b, &mut c, &mut d] {
        assert!(next(sub).await.keyframe);
    }
    publish_motion(&hub, &mut seq, 3, Duration::from_millis(40)).await;
    // The two H.264 subscribers at 1 Mbit/s receive the very same frames.
    for _ in 0..3 {
        let fa = next(&mut a).await;
        let fb = next(&mut b).await;
        assert!(Arc::ptr_eq(&fa, &fb), "one encoder, one output");
    }
    let stats = hub.stats();
    assert_eq!(stats.len(), 3);
    let shared = stats.iter().find(|s| s.params == params).unwrap();
    assert_eq!(shared.subscribers, 2);
    assert!(shared.encoded >= 4 && shared.bytes > 0 && shared.keyframes >= 1);

    drop(c);
    drop(d);
    assert_eq!(hub.encoder_count(), 1);
    drop(a);
    assert_eq!(hub.encoder_count(), 1, "b still watches");
    drop(b);
    assert_eq!(
        hub.encoder_count(),
        0,
        "the last subscriber stops the encoder"
    );
    assert!(hub.stats().is_empty());
    // Publishing with no encoders is fine.
    hub.publish(CONN, update(seq.next_frame(), true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_gets_a_decodable_keyframe_first() {
    for codec in [Codec::H264, Codec::Vp8] {
        let hub = EncoderHub::new();
        let params = EncoderParams::new(codec, 1_500_000);
        let mut seq = Sequence::new(Content::Desktop, 320, 192);
        hub.publish(CONN, update(seq.next_frame(), true));
        let mut first = hub.subscribe(CONN, params.clone()).unwrap();
        publish_motion(&hub, &mut seq, 6, Duration::from_millis(40)).await;
        let mut joiner = hub.subscribe(CONN, params.clone()).unwrap();
        publish_motion(&hub, &mut seq, 3, Duration::from_millis(40)).await;

        let got = next(&mut joiner).await;
        assert!(got.keyframe, "{codec}: joiner's first frame");
        // A decoder that starts there shows the picture the guest flipped.
        let mut dec = new_decoder(codec).unwrap();
        let pic = dec.decode(&got.data).unwrap().expect("picture");
        let n = read_counter(&pic).expect("counter readable");
        assert!((5..=9).contains(&n), "{codec}: joiner sees frame {n}");
        // The first subscriber was not disturbed: it still gets frames.
        while first.try_recv().is_ok() {}
        publish_motion(&hub, &mut seq, 2, Duration::from_millis(40)).await;
        next(&mut first).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joiner_on_a_static_screen_still_gets_a_picture_and_unchanged_flips_encode_nothing() {
    let hub = EncoderHub::new();
    let mut seq = Sequence::new(Content::Static, 320, 192);
    let picture = seq.next_frame();
    hub.publish(CONN, update(picture.clone(), true));
    let mut params = EncoderParams::new(Codec::Vp8, 1_000_000);
    // Keep the refresh out of this test's window.
    params.refresh_after = Duration::from_secs(3600);
    let mut sub = hub.subscribe(CONN, params).unwrap();
    let key = next(&mut sub).await;
    assert!(key.keyframe);
    // The guest keeps flipping the same picture.
    for _ in 0..10 {
        hub.publish(CONN, update(picture.clone(), false));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        sub.try_recv().err(),
        Some(pvgate_media::hub::RecvError::Empty)
    );
    let stats = sub.stats();
    assert_eq!(stats.encoded, 1);
    assert_eq!(stats.unchanged, 10);
    // A keyframe request (a viewer's PLI) re-encodes the static picture.
    sub.request_keyframe();
    assert!(next(&mut sub).await.keyframe);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_loses_frames_then_resumes_at_a_keyframe() {
    let hub = EncoderHub::new();
    let mut params = EncoderParams::new(Codec::H264, 500_000);
    params.max_fps = 200;
    let mut seq = Sequence::new(Content::FullMotion, 160, 96);
    hub.publish(CONN, update(seq.next_frame(), true));
    let mut fast = hub.subscribe(CONN, params.clone()).unwrap();
    let mut slow = hub.subscribe(CONN, params).unwrap();
    // More frames than the broadcast keeps, while `slow` reads nothing.
    let mut fast_got = 0;
    for _ in 0..80 {
        hub.publish(CONN, update(seq.next_frame(), true));
        tokio::time::sleep(Duration::from_millis(8)).await;
        while fast.try_recv().is_ok() {
            fast_got += 1;
        }
    }
    assert!(fast_got >= 40, "fast subscriber got {fast_got}");
    let encoded_before = slow.stats().encoded;
    assert!(encoded_before > 40, "encoder kept going: {encoded_before}");
    // The slow one lost frames: its next frame must be a keyframe made for it.
    let publisher = {
        let hub = hub.clone();
        let mut seq = Sequence::new(Content::FullMotion, 160, 96);
        tokio::spawn(
            async move { publish_motion(&hub, &mut seq, 30, Duration::from_millis(10)).await },
        )
    };
    let resumed = next(&mut slow).await;
    assert!(resumed.keyframe);
    assert!(slow.stats().lagged_subscribers >= 1);
    publisher.await.unwrap();
}

#[test]
fn publishing_does_not_wait_for_a_slow_encoder() {
    // 1080p VP8 with no subscriber reading: the flip path's publish must stay
    // a slot swap whatever the encoder is doing; frames it could not get to
    // are counted as dropped, not queued.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let hub = EncoderHub::new();
    let mut seq = Sequence::new(Content::FullMotion, 1920, 1080);
    let frames: Vec<Frame> = (0..3).map(|_| seq.next_frame()).collect();
    hub.publish(CONN, update(frames[0].clone(), true));
    let _sub = rt
        .block_on(async { hub.subscribe(CONN, EncoderParams::new(Codec::Vp8, 4_000_000)) })
        .unwrap();
    let feed = hub.feed(CONN);
    for i in 0..300 {
        feed.publish(update(frames[i % 3].clone(), true));
    }
    let stats = hub.stats();
    let s = &stats[0];
    assert!(s.frames_in >= 300);
    assert!(s.dropped >= 250, "dropped {} of {}", s.dropped, s.frames_in);
    assert!(s.encoded < 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_connector_ends_its_streams() {
    let hub = EncoderHub::new();
    let mut seq = Sequence::new(Content::Desktop, 160, 96);
    hub.publish(CONN, update(seq.next_frame(), true));
    let mut sub = hub
        .subscribe(CONN, EncoderParams::new(Codec::H264, 500_000))
        .unwrap();
    assert!(next(&mut sub).await.keyframe);
    hub.remove_connector(CONN);
    let end = tokio::time::timeout(Duration::from_secs(10), sub.recv())
        .await
        .expect("stream ends");
    assert!(end.is_none());
    assert_eq!(hub.encoder_count(), 0);
}
