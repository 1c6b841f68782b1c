//! One tenant's runaway plugin changes nothing for another tenant: not its
//! decisions, and not its ability to get them while the first is stuck.
//! Proven by ordering (B finishes all its calls while A's one call is still
//! in flight), not by timing thresholds.

mod support;

use std::time::{Duration, Instant};

use pvgate_policy::{CallLimits, Failure, Source, TenantPolicy};
use support::*;

fn wait_in_flight(t: &TenantPolicy) {
    let start = Instant::now();
    while t.metrics().snapshot().in_flight == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "A's call never started"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
fn a_looping_tenant_does_not_affect_another() {
    let e = engine();
    // A loops, with a deadline far beyond the test: it stays blocked until
    // interrupted.
    let a = e
        .load_with_limits(
            "a",
            example("misbehaving"),
            cfg(&[("mode", "loop")]),
            CallLimits {
                fuel: u64::MAX / 2,
                deadline: Duration::from_secs(120),
            },
        )
        .unwrap();
    let b = e.load("b", example("tiers"), cfg(&[])).unwrap();
    let g = guest(7, &["silver"]);
    let c = connector(1920, 1080);

    // B alone: its decisions and latencies.
    let expected = b.video(&g, &c);
    let quiet: Vec<Duration> = (0..200)
        .map(|_| {
            let t = Instant::now();
            assert_eq!(b.video(&g, &c), expected);
            t.elapsed()
        })
        .collect();

    let a2 = a.clone();
    let stuck =
        std::thread::spawn(move || a2.video_with_report(&guest(1, &[]), &connector(800, 600)).1);
    wait_in_flight(&a);

    // B while A is stuck: same decisions, all answered by B's plugin.
    let busy: Vec<Duration> = (0..200)
        .map(|_| {
            let t = Instant::now();
            let (v, r) = b.video_with_report(&g, &c);
            assert_eq!((v, r.source), (expected.clone(), Source::Plugin));
            let took = t.elapsed();
            assert!(took < Duration::from_secs(5), "a B call took {took:?}");
            took
        })
        .collect();
    // The ordering that proves isolation: all of B's calls completed while
    // A's single call was still running.
    assert_eq!(a.metrics().snapshot().in_flight, 1, "A finished early");
    assert_eq!(b.metrics().snapshot().plugin_ok, 401);
    assert_eq!(b.metrics().snapshot().fallbacks, 0);

    a.interrupt();
    let report = stuck.join().unwrap();
    assert_eq!(report.failure, Some(Failure::Interrupted));
    eprintln!(
        "B video call median: {:?} alone, {:?} while A loops on another thread",
        median(quiet),
        median(busy)
    );
}
