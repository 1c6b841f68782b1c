//! `pvgate demo`: a whole host in one command — a simulated Xen, simulated
//! guests (separate `pvgate-guest-sim` processes, as real guests are separate
//! domains) and the gateway serving them.

use std::path::{Path, PathBuf};

use anyhow::Context;
use tokio::process::{Child, Command};

use crate::cli::DemoArgs;
use crate::commands::serve::serve_until_interrupted;
use crate::gateway::Gateway;
use crate::http;

/// What each demo guest shows, in turn.
const SCENES: [&str; 3] = ["desktop", "pattern", "noise"];

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let guest_sim = match &args.guest_sim {
        Some(p) => p.clone(),
        None => sibling_binary("pvgate-guest-sim")?,
    };
    // Keep the temporary directory alive for the whole demo; it is removed
    // when this guard drops.
    let (dir, _tmp) = match &args.dir {
        Some(d) => (d.clone(), None),
        None => {
            let tmp = tempfile::Builder::new()
                .prefix("pvgate-demo-")
                .tempdir_in("/tmp")
                .context("cannot create a directory for the simulated Xen under /tmp")?;
            (tmp.path().to_path_buf(), Some(tmp))
        }
    };
    let listener = http::bind(args.listen).await?;
    // With port 0 the system picks one: show the one we really have.
    let address = listener
        .local_addr()
        .context("cannot read the web server's address")?;
    let sim = pvgate_platform::sim::SimXen::start(&dir)
        .await
        .with_context(|| format!("cannot start the simulated Xen in {}", dir.display()))?;
    let platform = pvgate_platform::sim::connect(&dir, 0).await?;
    let gateway = Gateway::new(platform);

    let mut guests = Vec::new();
    for i in 0..args.guests {
        let domid = i + 1;
        guests.push(start_guest(
            &guest_sim,
            &dir,
            domid,
            SCENES[usize::from(i) % SCENES.len()],
        )?);
    }
    println!(
        "pvgate demo: {} simulated guest(s) on a simulated Xen in {}\n\n    open http://{}/\n\nCtrl-C stops it.",
        args.guests,
        dir.display(),
        address
    );
    let result = serve_until_interrupted(gateway, listener).await;
    for mut guest in guests {
        let _ = guest.kill().await;
    }
    sim.stop().await;
    result
}

/// A binary installed next to ours (cargo puts both in target/<profile>/).
fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find where pvgate runs from")?;
    let path = exe.with_file_name(name);
    anyhow::ensure!(
        path.exists(),
        "{} is missing: build it with `cargo build --release --bin {name}` (deploy/demo.sh does), or pass --guest-sim PATH",
        path.display()
    );
    Ok(path)
}

fn start_guest(guest_sim: &Path, dir: &Path, domid: u16, scene: &str) -> anyhow::Result<Child> {
    Command::new(guest_sim)
        .arg("--sim-dir")
        .arg(dir)
        .args(["--domid", &domid.to_string()])
        .args(["--name", &format!("demo-{scene}")])
        .args(["--vdispl", "backend=0,be-alloc=0,connectors=1280x720"])
        .args([
            "--vsnd",
            "card, sample-rates=48000, sample-formats=s16_le | pcm, name=dev0 | stream, type=p",
        ])
        .args(["--scene", scene, "--fps", "30"])
        // The guests' own chatter would drown the gateway's log.
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", guest_sim.display()))
}
