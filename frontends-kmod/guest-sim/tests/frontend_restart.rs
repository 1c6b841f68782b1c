//! A guest that comes back (its kernel restarted) while the backend still
//! holds the old connection: as Linux's xenbus core does at boot
//! (`xenbus_reset_frontend`), the frontend walks the device through
//! Closing → Closed → Initialising, waiting for the backend to follow, and
//! then does the normal handshake on fresh rings.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use futures::StreamExt;
use pvgate_guest_sim::config::{DisplayConfig, GuestConfig};
use pvgate_guest_sim::sim::connect_guest;
use pvgate_guest_sim::{GuestSim, StartOptions};

const D: u16 = 21;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_guest_resets_its_device_before_publishing_again() {
    let sim = Sim::start().await;
    let dom0 = sim.dom0().await;
    let config = GuestConfig {
        domid: D,
        name: "reboot".into(),
        displays: vec![DisplayConfig::parse("connectors=64x64").expect("vdispl")],
        ..Default::default()
    };
    let be = format!("/local/domain/0/backend/vdispl/{D}/0");
    let fe = format!("/local/domain/{D}/device/vdispl/0");
    let first_life = start_guest(&sim, config.clone()).await;
    let (mut req, _evt) = connect_display(&dom0, D, &be).await;
    let s = first_life.displays[0]
        .connected(WAIT)
        .await
        .expect("connected");
    edid_round_trip(&dom0, D, s, &mut req, &[1, 2, 3]).await;
    // The guest dies without a word: its device still says Connected.
    first_life.vanish();
    drop((req, _evt));
    assert_eq!(read(&*dom0.store, &format!("{fe}/state")).await, "4");

    // A backend that follows the reset: Closing → Closing, Closed → Closed,
    // Initialising → InitWait. It records what the frontend did.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let follower = {
        let store = dom0.store.clone();
        let (fe, be, seen) = (fe.clone(), be.clone(), seen.clone());
        tokio::spawn(async move {
            let mut watch = store.watch(&format!("{fe}/state")).await.expect("watch");
            while watch.next().await.is_some() {
                let Some(state) = store.read_opt(&format!("{fe}/state")).await.expect("read")
                else {
                    continue;
                };
                seen.lock().expect("lock").push(state.clone());
                let answer = match state.as_str() {
                    "5" => "5",
                    "6" => "6",
                    "1" => "2",
                    _ => continue,
                };
                store
                    .write(&format!("{be}/state"), answer)
                    .await
                    .expect("write");
                if answer == "2" {
                    return;
                }
            }
        })
    };

    let guest = connect_guest(sim.path(), D).await.expect("guest");
    let second_life = GuestSim::start(
        config,
        guest.platform.clone(),
        StartOptions {
            report: None,
            frame_lookup: Some(guest.frame_lookup()),
        },
    )
    .await
    .expect("restart");
    tokio::time::timeout(WAIT, follower)
        .await
        .expect("reset finished")
        .expect("join");
    let (mut req, _evt) = connect_display(&dom0, D, &be).await;
    let s = second_life.displays[0]
        .connected(WAIT)
        .await
        .expect("connected again");
    edid_round_trip(&dom0, D, s, &mut req, &[4, 5, 6, 7]).await;
    let seen = seen.lock().expect("lock").clone();
    let walk: Vec<&str> = seen
        .iter()
        .map(String::as_str)
        .skip_while(|s| *s == "4")
        .collect();
    assert!(
        walk.starts_with(&["5", "6", "1"]),
        "frontend states after restart: {seen:?}"
    );
    second_life.shutdown().await;
}
